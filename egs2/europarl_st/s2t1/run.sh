#!/usr/bin/env bash
# Europarl-ST v1.1, S2T: context-aware dynamic pruning of OWSM v3.1 ebf (Someki et al.,
# ICLR 2025 / Interspeech 2025). ASR of de/fr/it and ST de/fr/it -> en; the pre-trained
# OWSM v3.1 ebf (1.02B) is fine-tuned fully (baseline) and with gates (lang/task context),
# then both are decoded (beam 5), scored (BLEU per direction, WER per language) and profiled.
#
# Usage (GPU machine; see README.md for what a full run needs):
#   ./run.sh --europarl_st_root /data/europarl-st/v1.1 --ngpu 4
#   ./run.sh --ngpu 4                                    # downloads v1.1.tar.gz (~20 GB) first
#   ./run.sh --use_voxforge true --voxforge_root /data/voxforge   # + Voxforge de/fr/it
#   ./run.sh --stage 7 --stop_stage 8                    # decode and score again
#   ./run.sh --stage 8 --stop_stage 9 --wer_norm whisper_basic   # WER as the OWSM papers
#   ./run.sh --ngpu 4 --num_nodes 2 --cmd_backend slurm   # Slurm (local/slurm.pl, conf/slurm.conf)
#   ./run.sh --ngpu 4 --baselines true   # + static L0 / layer pruning at the gated model's GFLOPs
#   ./run.sh --ngpu 4 --gated_config conf/train_s2t_ebf_gated_paper.yaml --expdir exp_paper
#                                        # the papers' gated settings exactly (default: tuned)
#
# Stages: 1 data prep (Kaldi dirs), 2 audio (m4a -> 16 kHz mono segments; training sets drop
#   utterances longer than speech_length, dev/test keep them, decoded on their first
#   speech_length seconds as ESPnet's Speech2Text does; counts in dump/raw/<set>/utt_counts.json),
#   3 context embeddings (speaker for gated_spk, acoustic event for gated_event), 4 pre-trained
#   model (OWSM BPE, token list, stats, weights), 5 stats (shapes), 6 training (one sub-stage
#   per model of --models; with --baselines true 6f-6h: L0 and layer pruning at the gated
#   model's measured budget), 7 decoding, 8 scoring, 9 efficiency + gate patterns + RESULTS.md.
# Every unit of work leaves a .done file; a rerun skips what is finished, and training
# resumes from its last checkpoint (--resume true).
set -euo pipefail

# Options (--name value).
stage=1
stop_stage=9
# data
europarl_st_root=""          # unpacked Europarl-ST (the v1.1 dir); empty: download
download_dir=downloads
src_langs=de,fr,it           # Europarl-ST source languages: ASR of each, ST into tgt_lang
tgt_lang=en
asr_pairs=tgt                # tgt: ASR on the ST segments; all: every <src>/* dir (more ASR data)
text_prev=na                 # na | previous (the previous segment's text as OWSM prompt)
use_voxforge=false           # + Voxforge de/fr/it (ASR), corpus label in utt2corpus
voxforge_root=""
voxforge_max_sessions=0
voxforge_test_speakers=10
voxforge_dev_speakers=10
# model and training
owsm_model=espnet/owsm_v3.1_ebf   # hub tag or local directory (hub layout)
conf_dir=conf                # train_s2t_ebf_{full,gated,l0,layerprune}.yaml (conf/tiny: tests only)
gated_config=""              # the gated models' YAML; empty: ${conf_dir}/train_s2t_ebf_gated.yaml
                             # (tuned); conf/train_s2t_ebf_gated_paper.yaml: the papers' settings
models="full gated"          # + gated_lang (language only), gated_frame (lang+task, attention
                             # pooling over frames), gated_spk (+ speaker), gated_event (+ event)
baselines=false              # + l0 and layerprune at the gated model's measured GFLOPs (6f-6h)
spk_model=resemblyzer        # gated_spk's speaker encoder: resemblyzer | ecapa | ecapa:<local dir>
event_model=""               # gated_event's: beats:<local BEATs .pt> | tagger:<.pt of
                             # espnet_ext.bin.train_event_tagger> (no default: nothing to download)
ngpu=0                       # GPUs per node (0: CPU)
num_nodes=1                  # > 1: multi-node through espnet2.bin.launch (cmd.sh)
nj=4                         # parallel processes: audio decoding
train_nj=1                   # models fine-tuned side by side (CPU runs; 1 with GPUs)
inference_nj=1               # decoding jobs per test set (split, then merged; as s2t.sh)
inference_batch_size=1       # utterances per decoding pass (batched beam search; e.g. 16 on a GPU)
# evaluation
profile_num_utts=20          # test_<src>_st_<tgt> utterances profiled in stage 9
profile_repeats=3
profile_opts=""              # e.g. --no_memory
wer_norm=ours                # WER/CER text: ours (lower case, no punctuation) | raw (ESPnet's
                             # s2t.sh: as is) | whisper_basic | whisper_english (Whisper's
                             # normalisers; non-English sets: basic); named beside every WER
datadir=data
dumpdir=dump
expdir=exp
results=RESULTS.md
cmd_backend=${cmd_backend:-local}  # job backend (cmd.sh): local (local/run.pl) | slurm (local/slurm.pl)
__options="stage stop_stage europarl_st_root download_dir src_langs tgt_lang asr_pairs text_prev use_voxforge voxforge_root voxforge_max_sessions voxforge_test_speakers voxforge_dev_speakers owsm_model conf_dir gated_config models baselines spk_model event_model ngpu num_nodes nj train_nj inference_nj inference_batch_size profile_num_utts profile_repeats profile_opts wer_norm datadir dumpdir expdir results cmd_backend"

caller=$(pwd); cli_args=("$@")  # exp/commands.sh records the invocation
cd "$(dirname "$0")"
. ./path.sh
. "${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh"  # + the pipeline's options (--s2t_args, --decode_config, ...)
. scripts/parse_options.sh
. ./cmd.sh  # the job backend (--cmd_backend)
pipeline_init

# Options are checked before anything is written.
config_prefix=${conf_dir}/train_s2t_ebf_
gated_config=${gated_config:-${config_prefix}gated.yaml}
[ -f "${gated_config}" ] || die "--gated_config ${gated_config}: no such file"
# The gated model trains with --gated_config, and so do its variants (gated_lang, ...: their
# YAMLs are variant_of: gated); the others with pipeline.sh's model_config (${config_prefix}<model>.yaml).
eval "pipeline_$(declare -f model_config)"
model_config() { if [ "$1" = gated ]; then echo "${gated_config}"; else pipeline_model_config "$1"; fi; }
check_wer_norm
add_baselines
check_models  # each has its YAML in ${conf_dir}
check_event_model
iso3() {  # Europarl-ST language code -> OWSM v3.1 token (ISO 639-3)
    case $1 in de) echo deu ;; en) echo eng ;; es) echo spa ;; fr) echo fra ;; it) echo ita ;;
        nl) echo nld ;; pl) echo pol ;; pt) echo por ;; ro) echo ron ;;
        *) die "unknown language $1" ;; esac
}
tgt3=$(iso3 "${tgt_lang}")
ep_sets=""; vf_sets=""; specials="<asr> <st_${tgt3}>"; langs3=""
for l in ${src_langs//,/ }; do
    l3=$(iso3 "${l}")
    langs3="${langs3:+${langs3},}${l3}"
    ep_sets="${ep_sets} test_${l3}_asr test_${l3}_st_${tgt3}"
    vf_sets="${vf_sets} vftest_${l3}_asr"
    specials="${specials} <${l3}>"
done
test_sets=${ep_sets# }; sets="train dev test"
if ${use_voxforge}; then test_sets="${test_sets}${vf_sets}"; sets="${sets} vftest"; fi

make_dirs datadir dumpdir expdir
begin_commands "${caller}" "$0" ${cli_args[@]+"${cli_args[@]}"}  # a block of exp/commands.sh per invocation
# A gated model already in ${expdir} was trained with the YAML its config.yaml names (ESPnet
# records --config there); resumed or skipped with another, it would be reported as this one.
for m in ${models}; do
    [[ ${m} = gated* ]] && [ -f "${expdir}/${m}/config.yaml" ] || continue
    c=$(sed -n 's/^config: //p' "${expdir}/${m}/config.yaml")
    [ "$(realpath -m "${c}")" = "$(realpath -m "${gated_config}")" ] \
        || die "${expdir}/${m} was trained with ${c}, not --gated_config ${gated_config}; use another --expdir"
done
raw=${dumpdir}/raw
share_threads "${train_nj}"
score_opts="--st_normalise none --wer_norm ${wer_norm}${score_opts:+ ${score_opts}}"  # BLEU cased and punctuated

if stage_in 1; then
    stage_start 1 "Data preparation: Europarl-ST v1.1 (${src_langs} -> ${tgt_lang})$(${use_voxforge} && echo ' + Voxforge') -> ${datadir}"
    if ! is_done "${datadir}/.done"; then
        run local/data.sh --out "${datadir}" --europarl_st_root "${europarl_st_root}" \
            --download_dir "${download_dir}" --src_langs "${src_langs}" --tgt_lang "${tgt_lang}" \
            --asr_pairs "${asr_pairs}" --text_prev "${text_prev}" --use_voxforge "${use_voxforge}" \
            --voxforge_root "${voxforge_root}" --voxforge_max_sessions "${voxforge_max_sessions}" \
            --voxforge_test_speakers "${voxforge_test_speakers}" \
            --voxforge_dev_speakers "${voxforge_dev_speakers}"
        for dset in ${sets}; do
            run ${python} scripts/validate_data_dir.py --langs "${langs3}" "${datadir}/${dset}"
        done
        mark_done "${datadir}/.done"
    fi
    stage_end 1
fi

if stage_in 2; then
    stage_start 2 "Audio: decode, resample to 16 kHz mono, cut segments; length filter (train only) -> ${raw}"
    for dset in ${sets}; do
        # Dev and test keep every utterance (--eval_set, implied by --split_by_lang_task): one
        # longer than speech_length is decoded on its first speech_length seconds, as ESPnet's
        # Speech2Text does. The full model's YAML: speech_length is the same for every model.
        # shellcheck disable=SC2046
        prepare_audio "${datadir}/${dset}" ${dset} "$(model_config full)" \
            $(case ${dset} in test|vftest) echo --split_by_lang_task ;; dev) echo --eval_set ;; esac)
    done
    stage_end 2
fi

owsm_stages  # 3 contexts, 4 pre-trained model, 5 stats, 6 training, 7 decoding, 8 scoring, 9 report
log "Finished stages ${stage}-${stop_stage}"
