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
#   ./run.sh --ngpu 4 --inference_batch_size 16 --s2t_args "--seed 1"   # pipeline options
#
# Stages: 1 data prep (Kaldi dirs), 2 audio (m4a -> 16 kHz mono segments; training sets drop
#   utterances longer than speech_length, dev/test keep them, decoded on their first
#   speech_length seconds as ESPnet's Speech2Text does; counts in dump/raw/<set>/utt_counts.json),
#   3 context embeddings (speaker for gated_spk, acoustic event for gated_event), 4 pre-trained
#   model (OWSM BPE, token list, stats, weights), 5 stats (shapes), 6 training (one sub-stage
#   per model of --models; with --baselines true 6f-6h: L0 and layer pruning at the gated
#   model's measured budget), 7 decoding, 8 scoring, 9 efficiency + gate patterns + RESULTS.md.
# The stages are egs2/TEMPLATE/pipeline.sh (its --help: the options it takes from here). Every
# unit of work leaves a .done file; a rerun skips what is finished, and training resumes from
# its last checkpoint (--resume true).
set -euo pipefail

# Options (--name value); the pipeline's (egs2/TEMPLATE/pipeline.sh --help) are passed on.
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
gated_config=""              # the gated model's YAML (its variants follow); empty: ${conf_dir}/train_s2t_ebf_gated.yaml
                             # (tuned); conf/train_s2t_ebf_gated_paper.yaml: the papers' settings
models="full gated"          # + gated_lang (language only), gated_frame (lang+task, attention
                             # pooling over frames), gated_spk (+ speaker), gated_event (+ event)
__options="stage stop_stage europarl_st_root download_dir src_langs tgt_lang asr_pairs text_prev use_voxforge voxforge_root voxforge_max_sessions voxforge_test_speakers voxforge_dev_speakers owsm_model conf_dir gated_config models"

invocation="cd $(printf %q "${PWD}") &&$(printf ' %q' "$0" "$@")"  # exp/commands.sh records it
cd "$(dirname "$0")"
. ./path.sh
pipeline_args=()  # the options this file does not declare: the pipeline's
. scripts/parse_options.sh

iso3() {  # Europarl-ST language code -> OWSM v3.1 token (ISO 639-3)
    case $1 in de) echo deu ;; en) echo eng ;; es) echo spa ;; fr) echo fra ;; it) echo ita ;;
        nl) echo nld ;; pl) echo pol ;; pt) echo por ;; ro) echo ron ;;
        *) echo "$0: unknown language $1" >&2; exit 1 ;; esac
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

# Stages 1-9 (egs2/TEMPLATE/pipeline.sh): 1 local/data.sh, 2 audio (m4a -> 16 kHz mono segments;
# dev and test keep every utterance, one longer than speech_length decoded on its first
# speech_length seconds as ESPnet's Speech2Text does; the full model's YAML: speech_length is
# the same for every model), 3-9 as every recipe; BLEU cased and punctuated (--st_normalise none).
"${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh" --invocation "${invocation}" --stage "${stage}" --stop_stage "${stop_stage}" \
    --local_data_opts "${europarl_st_root:+--europarl_st_root ${europarl_st_root}} --download_dir ${download_dir}
        --src_langs ${src_langs} --tgt_lang ${tgt_lang} --asr_pairs ${asr_pairs} --text_prev ${text_prev}
        --use_voxforge ${use_voxforge} ${voxforge_root:+--voxforge_root ${voxforge_root}}
        --voxforge_max_sessions ${voxforge_max_sessions} --voxforge_test_speakers ${voxforge_test_speakers}
        --voxforge_dev_speakers ${voxforge_dev_speakers}" \
    --langs "${langs3}" --sets "${sets}" --split_sets "test vftest" --test_sets "${test_sets}" \
    --owsm_model "${owsm_model}" --models "${models}" --config_prefix "${conf_dir}/train_s2t_ebf_" \
    --gated_config "${gated_config}" --specials "${specials}" --st_normalise none "${pipeline_args[@]}"
