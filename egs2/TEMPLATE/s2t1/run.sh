#!/usr/bin/env bash
# Your own corpus, S2T: context-aware dynamic pruning of a pre-trained OWSM model on Kaldi data
# dirs you provide. Copy this directory to egs2/<corpus>/s2t1, replace local/data.sh with your
# data preparation (or point --data_root at dirs made elsewhere), and run it; the stages are
# egs2/TEMPLATE/pipeline.sh (stage 1 runs local/data.sh), shared with the Europarl-ST and mini recipes.
#
# Usage (paths on the command line: absolute, or relative to where you run it):
#   ./run.sh --data_root /data/mycorpus --owsm_model ../../mini_europarl/s2t1/pretrained/mini_owsm
#   ./run.sh --data_root /data/mycorpus --owsm_model whisper:base    # Whisper base, offline
#   ./run.sh --data_root /data/mycorpus --ngpu 1        # OWSM v3.1 ebf from the hub, on a GPU
#   ./run.sh --data_root /data/mycorpus --owsm_model /models/owsm_v3.1_ebf --models "full gated gated_spk"
#   ./run.sh --stage 7 --stop_stage 8                    # decode and score again
#   ./run.sh --stage 8 --stop_stage 9 --wer_norm whisper_english   # WER as Whisper/OWSM papers
#   ./run.sh --data_root /data/mycorpus --s2t_args "--seed 1" --inference_nj 4   # pipeline options
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
#   `egs2/TEMPLATE/pipeline.sh --help` lists the options run.sh passes on (--baselines, --nj, ...).
set -euo pipefail

# Options (--name value); the pipeline's (egs2/TEMPLATE/pipeline.sh --help) are passed on.
stage=1
stop_stage=9
data_root=""                 # Kaldi dirs train, dev, test (local/data.sh checks and copies them)
owsm_model=espnet/owsm_v3.1_ebf   # pre-trained model: hub tag, local dir (hub layout), whisper:base
conf_dir=auto                # training YAMLs (train_s2t_ebf_* or train_*{full,gated,l0,layerprune}.yaml);
                             # auto: the set of conf/ or conf/<name>/ that fits --owsm_model
models="full gated"          # + gated_lang gated_frame gated_spk gated_event
ngpu=0                       # GPUs per node (0: CPU)
datadir=data
decode_config=conf/decode_s2t.yaml
cmd_backend=${cmd_backend:-local}  # job backend (cmd.sh): local (local/run.pl) | slurm (local/slurm.pl)
__options="stage stop_stage data_root owsm_model conf_dir models ngpu datadir decode_config cmd_backend"

invocation="cd $(printf %q "${PWD}") &&$(printf ' %q' "$0" "$@")"  # exp/commands.sh records it
__caller=${PWD}  # paths on the command line are the caller's (parse_options.sh)
__paths="data_root datadir dumpdir expdir results"
__maybe_paths="owsm_model conf_dir spk_model event_model decode_config"
cd "$(dirname "$0")"
. ./path.sh
pipeline_args=()  # the options this file does not declare: the pipeline's
. scripts/parse_options.sh

# Every option checked before stage 1, each error one line naming the fix: the configs that
# fit the pre-trained model, the --ngpu GPUs (local runs), the <lang>/<task> tokens of the
# data in the model's token list (local/check_setup.py); the pipeline checks the others.
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    [ -n "${data_root}" ] || { echo "$0: --data_root is empty: the dir holding your train, dev, test Kaldi dirs" >&2; exit 1; }
    texts=("${data_root}"/{train,dev,test}/text)
else
    texts=("${datadir}"/{train,dev,test}/text)
fi
check_gpu=false  # local runs of stage 6, 7 or 9
for k in 6 7 9; do [ "${cmd_backend}" = local ] && [ "${stage}" -le ${k} ] && [ "${stop_stage}" -ge ${k} ] && check_gpu=true; done
setup=$(python3 local/check_setup.py --owsm_model "${owsm_model}" --conf_dir "${conf_dir}" \
    --models "${models}" --texts "${texts[@]}" --ngpu "${ngpu}" --check_gpu ${check_gpu} \
    --decode_config "${decode_config}") || exit 1
config_prefix=${setup%%$'\t'*}
echo "Training configs: ${setup#*$'\t'}"

# Stages 1-9 (egs2/TEMPLATE/pipeline.sh): 1 local/data.sh (redone when the tables of
# <data_root>/{train,dev,test} change), 2 audio (16 kHz mono segments, length filter of train;
# dev and test keep every utterance, one longer than speech_length decoded on its first
# speech_length seconds as ESPnet's Speech2Text does), test split by language and task (the
# test sets), 3-9 as every recipe; BLEU cased and punctuated (--st_normalise none), as sacrebleu's default.
"${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh" --invocation "${invocation}" --stage "${stage}" --stop_stage "${stop_stage}" \
    --datadir "${datadir}" --local_data_opts "--data_root ${data_root}" \
    --data_inputs "${data_root:+${data_root}/train ${data_root}/dev ${data_root}/test}" \
    --owsm_model "${owsm_model}" --models "${models}" --config_prefix "${config_prefix}" \
    --length_config "${config_prefix}gated.yaml" --ngpu "${ngpu}" --decode_config "${decode_config}" \
    --cmd_backend "${cmd_backend}" --st_normalise none \
    --report_args "$(printf '%s\n' --data "${datadir}" \
        --title "$(basename "$(cd .. && pwd)") S2T, context-aware dynamic pruning of ${owsm_model##*/}")" \
    "${pipeline_args[@]}"
