#!/usr/bin/env bash
# Your own corpus, S2T: context-aware dynamic pruning of a pre-trained OWSM model on Kaldi data
# dirs you provide. Copy this directory to egs2/<corpus>/s2t1, replace local/data.sh with your
# data preparation (or point --data_root at dirs made elsewhere), and run it; every stage after
# the first is egs2/TEMPLATE/pipeline.sh, shared with the Europarl-ST and mini recipes.
#
# Usage (paths on the command line: absolute, or relative to where you run it):
#   ./run.sh --data_root /data/mycorpus --owsm_model ../../mini_europarl/s2t1/pretrained/mini_owsm
#   ./run.sh --data_root /data/mycorpus --owsm_model whisper:base    # Whisper base, offline
#   ./run.sh --data_root /data/mycorpus --ngpu 1        # OWSM v3.1 ebf from the hub, on a GPU
#   ./run.sh --data_root /data/mycorpus --owsm_model /models/owsm_v3.1_ebf --models "full gated gated_spk"
#   ./run.sh --stage 7 --stop_stage 8                    # decode and score again
#   ./run.sh --stage 8 --stop_stage 9 --wer_norm whisper_english   # WER as Whisper/OWSM papers
#
# Each of <data_root>/{train,dev,test} is a Kaldi dir (README.md, "Your own corpus"):
#   wav.scp     <rec> <audio file>        any format ffmpeg reads, any rate, mono or stereo
#   segments    <utt> <rec> <start> <end> optional (none: one utterance per recording)
#   text        <utt> <lang><task><notimestamps> <target text>   e.g. <deu><st_eng><notimestamps> ...
#   text.ctc    <utt> <source transcript> text.prev <utt> <na>   utt2spk  <utt> <speaker>
#
# Stages: 1 data (local/data.sh), 2 audio (16 kHz mono segments, length filter of train, test
#   split by language and task), 3 context embeddings (gated_spk, gated_event), 4 pre-trained model,
#   5 stats, 6 training (6a, 6b, ... per model; --baselines true: L0 and layer pruning at the
#   gated model's budget), 7 decoding, 8 scoring, 9 efficiency + gate patterns + RESULTS.md.
set -euo pipefail

# Options (--name value).
stage=1
stop_stage=9
data_root=""                 # Kaldi dirs train, dev, test (local/data.sh checks and copies them)
owsm_model=espnet/owsm_v3.1_ebf   # pre-trained model: hub tag, local dir (hub layout), whisper:base
conf_dir=auto                # training YAMLs (train_s2t_ebf_* or train_*{full,gated,l0,layerprune}.yaml);
                             # auto: the set of conf/ or conf/<name>/ that fits --owsm_model
models="full gated"          # + gated_lang gated_frame gated_spk gated_event
baselines=false              # + l0 and layerprune at the gated model's measured GFLOPs
spk_model=resemblyzer        # gated_spk: resemblyzer | ecapa | ecapa:<local dir>
event_model=""               # gated_event: beats:<BEATs .pt> | tagger:<event tagger .pt>
ngpu=0
num_nodes=1
nj=4                         # audio processes
train_nj=1                   # models trained side by side (CPU)
inference_nj=1               # decoding jobs per test set
inference_batch_size=1
profile_num_utts=20
profile_repeats=3
profile_opts=""
wer_norm=ours                # WER/CER text: ours (lower case, no punctuation) | raw (ESPnet's
                             # s2t.sh: as is) | whisper_basic | whisper_english (Whisper's
                             # normalisers; non-English sets: basic); named beside every WER
datadir=data
dumpdir=dump
expdir=exp
results=RESULTS.md
cmd_backend=${cmd_backend:-local}  # job backend (cmd.sh): local (local/run.pl) | slurm (local/slurm.pl)
__options="stage stop_stage data_root owsm_model conf_dir models baselines spk_model event_model ngpu num_nodes nj train_nj inference_nj inference_batch_size profile_num_utts profile_repeats profile_opts wer_norm datadir dumpdir expdir results cmd_backend"

caller=$(pwd); cli_args=("$@")
cd "$(dirname "$0")"
. ./path.sh
. "${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh"  # + the pipeline's options (--s2t_args, --decode_config, ...)
. scripts/parse_options.sh
. ./cmd.sh  # the job backend (--cmd_backend)
pipeline_init
resolve_cli_paths "${caller}" "data_root datadir dumpdir expdir results" "owsm_model conf_dir spk_model event_model decode_config" \
    ${cli_args[@]+"${cli_args[@]}"}

# Every option checked before stage 1, each error one line naming the fix.
check_wer_norm
add_baselines
if stage_in 1 && [ -z "${data_root}" ]; then
    die "--data_root is empty: the dir holding your train, dev, test Kaldi dirs"
fi
# the configs that fit the pre-trained model, the --ngpu GPUs (local runs), the <lang>/<task>
# tokens of the data in the model's token list (local/check_setup.py)
texts=$(for d in train dev test; do
    if [ -n "${data_root}" ] && stage_in 1; then echo "${data_root}/${d}/text"; else echo "${datadir}/${d}/text"; fi
done)
check_gpu=false; [ "${cmd_backend}" = local ] && { stage_in 6 || stage_in 7 || stage_in 9; } && check_gpu=true
# shellcheck disable=SC2086
setup=$(${python} local/check_setup.py --owsm_model "${owsm_model}" --conf_dir "${conf_dir}" \
    --models "${models}" --texts ${texts} --ngpu "${ngpu}" --check_gpu ${check_gpu} \
    --decode_config "${decode_config}") || exit 1
config_prefix=${setup%%$'\t'*}
check_models  # each has its YAML in the conf set
check_event_model
make_dirs datadir dumpdir expdir
begin_commands "${caller}" "$0" ${cli_args[@]+"${cli_args[@]}"}
log "Training configs: ${setup#*$'\t'}"
raw=${dumpdir}/raw
share_threads "${train_nj}"
sets="train dev test"
# The test subsets (test_<lang>_<task>, from stage 2) and the <lang>/<task> tokens of the data.
test_sets() { (cd "${raw}" 2>/dev/null && ls -d test_*_* 2>/dev/null || true) | tr '\n' ' '; }
specials() { { cut -d' ' -f2 "${datadir}"/{train,dev,test}/text 2>/dev/null | grep -o '^<[a-z_]*><[a-z_]*>' || true; } | sed 's/></> </' | tr ' ' '\n' | sort -u | tr '\n' ' '; }

if stage_in 1; then
    stage_start 1 "Data: local/data.sh --data_root ${data_root} -> ${datadir}"
    hash=$(inputs_hash local/data.sh "${data_root}" "${data_root}"/{train,dev,test}/{wav.scp,segments,text,text.ctc,text.prev,utt2spk})
    if ! is_done "${datadir}/.done" "${hash}"; then
        run local/data.sh --data_root "${data_root}" --out "${datadir}"
        mark_done "${datadir}/.done" "${hash}"
    fi
    stage_end 1
fi

if stage_in 2; then
    stage_start 2 "Audio: 16 kHz mono segments, length filter (train only), test split by language and task -> ${raw}"
    for dset in ${sets}; do
        # dev and test keep every utterance (--eval_set; --split_by_lang_task implies it): one
        # longer than speech_length is decoded on its first speech_length seconds, as ESPnet's
        # Speech2Text does (counts: dump/raw/<set>/utt_counts.json)
        # shellcheck disable=SC2046
        prepare_audio "${datadir}/${dset}" ${dset} "$(model_config gated)" \
            $(case ${dset} in test) echo --split_by_lang_task ;; dev) echo --eval_set ;; esac)
    done
    stage_end 2
fi
test_sets=$(test_sets)

specials=$(specials)
score_opts="--st_normalise none --wer_norm ${wer_norm}${score_opts:+ ${score_opts}}"  # BLEU cased and punctuated, as sacrebleu's default
report_title="$(basename "$(cd .. && pwd)") S2T, context-aware dynamic pruning of ${owsm_model##*/}"
owsm_stages  # 3 contexts, 4 pre-trained model, 5 stats, 6 training, 7 decoding, 8 scoring, 9 report
log "Finished stages ${stage}-${stop_stage}"
