#!/usr/bin/env bash
# LibriSpeech 100 h, ASR: a Transformer CTC/attention model, then the same model fine-tuned
# with input-dependent dynamic depth (I3D, arXiv 2303.07624: per-layer attention/FFN gates,
# global or local gate predictor, straight-through Gumbel, sparsity target), decoded and
# scored (WER on test-clean / test-other) -> RESULTS.md. ESPnet egs2/librispeech_100/asr1
# conventions (BPE 5000, ESPnet's training/decoding settings); the stages are the shared
# pipeline's with --task asr (egs2/TEMPLATE/pipeline.sh: asr_train, the gated ASR decoder).
#
# Usage:
#   ./run.sh --librispeech_root /data          # /data/LibriSpeech/<part>; or set db.sh
#   ./run.sh                                   # downloads the 5 parts (~6.3 GB) first
#   ./run.sh --stage 6 --stop_stage 7 --ngpu 1
#   ./run.sh --preset tiny --nbpe 30 --librispeech_root /tmp/mini --datadir /tmp/x/data --expdir /tmp/x/exp
#
# Stages: 1 data prep (Kaldi dirs), 2 audio check (16 kHz mono) and length filter -> dump/raw,
#   4 BPE token list, 5 collect stats (shapes, global MVN), 6 training (6a base Transformer,
#   6b gated fine-tune with the global predictor, 6c the local predictor), 7 decoding (test sets;
#   per utterance: text, encoder gate decisions, GFLOPs), 8 scoring (jiwer WER), 9 RESULTS.md
#   (paired bootstrap vs base). Stage 3 (speaker embeddings) only for --models ... gated_spk.
# Finished units leave a .done file and are skipped on a rerun; training resumes (--resume true).
# Options this file does not declare go to the pipeline (./run.sh --help; pipeline.sh --help).
set -euo pipefail

stage=1
stop_stage=9
preset=full              # full: conf/*.yaml | tiny: conf/tiny/*.yaml (fixture test)
librispeech_root=""      # dir holding LibriSpeech/<part> (default: db.sh, else download)
download_dir=downloads   # where stage 1 downloads the parts to (no --librispeech_root, db.sh unset)
nbpe=5000                # BPE vocabulary size (stage 4)
datadir=data             # Kaldi dirs from stage 1, token list
expdir=exp               # models, stats, decodings, scores
__options="stage stop_stage preset librispeech_root download_dir nbpe datadir expdir"

invocation="cd $(printf %q "${PWD}") &&$(printf ' %q' "$0" "$@")"  # exp/commands.sh records it
__caller=${PWD}  # paths on the command line are the caller's (parse_options.sh)
__paths="librispeech_root download_dir datadir expdir dumpdir results"
cd "$(dirname "$0")"
. ./path.sh
pipeline_args=()  # the options this file does not declare: the pipeline's
. scripts/parse_options.sh

case ${preset} in full) conf=conf ;; tiny) conf=conf/tiny ;;
    *) echo "$0: unknown --preset ${preset} (full, tiny)" >&2; exit 1 ;; esac
token_dir=${datadir}/token_list/bpe_unigram${nbpe}; stats_dir=${expdir}/asr_stats_raw_en_bpe${nbpe}
data_opts="--download_dir ${download_dir}${librispeech_root:+ --librispeech_root ${librispeech_root}}"

"${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh" --task asr --invocation "${invocation}" \
    --stage "${stage}" --stop_stage "${stop_stage}" --datadir "${datadir}" --expdir "${expdir}" \
    --local_data_opts "${data_opts}" --audio_format 16k --format_opts "--max_wav_duration 35" \
    --train_sets train_clean_100 --sets "train_clean_100 dev test_clean test_other" --split_sets "" \
    --owsm_model scratch --models "base gated gated_local" --reference base --first_label b \
    --config_prefix "${conf}/train_asr_transformer_" --base_config "${conf}/train_asr_transformer.yaml" \
    --base_set train_clean_100 --finetune_set train_clean_100 \
    --base_dir "${expdir}/base" --base_model "${expdir}/base/valid.acc.ave.pth" \
    --token_dir "${token_dir}" --stats_dir "${stats_dir}" --nbpe "${nbpe}" \
    --train_opts "--use_preprocessor true --token_type bpe --bpemodel ${token_dir}/bpe.model --token_list ${token_dir}/tokens.txt" \
    --norm_opts "--normalize global_mvn --normalize_conf stats_file=${stats_dir}/train_clean_100/train/feats_stats.npz" \
    --test_sets "test_clean test_other" --decode_config conf/decode_asr.yaml --wer_norm raw \
    --report_args "$(printf '%s\n' --title "LibriSpeech 100 h: Transformer, base vs gated (I3D-style dynamic depth)" \
        --stage_names "4=token list" "9=report")" \
    "${pipeline_args[@]}"
