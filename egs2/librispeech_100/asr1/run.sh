#!/usr/bin/env bash
# LibriSpeech 100 h, ASR: a Transformer CTC/attention model, then the same model fine-tuned
# with input-dependent dynamic depth (I3D, arXiv 2303.07624: per-layer attention/FFN gates,
# global or local gate predictor, straight-through Gumbel, sparsity target), decoded and
# scored (WER on test-clean / test-other) -> RESULTS.md. ESPnet egs2/librispeech_100/asr1
# conventions (data/, dump-free raw audio, BPE 5000, ESPnet's training/decoding settings);
# the recipe drives python -m espnet_ext.bin.asr_train (ESPnet's asr_train, our task) itself
# (no asr.sh) and decodes with
# python -m espnet_ext.asr.inference (ESPnet's Speech2Text + gate/GFLOPs records).
#
# Usage:
#   ./run.sh --librispeech_root /data          # /data/LibriSpeech/<part>; or set db.sh
#   ./run.sh                                   # downloads the 5 parts (~6.3 GB) first
#   ./run.sh --stage 5 --stop_stage 6 --ngpu 1
#   ./run.sh --preset tiny --nbpe 30 --librispeech_root /tmp/mini --datadir /tmp/x/data --expdir /tmp/x/exp
#
# Stages: 1 data prep (Kaldi dirs), 2 BPE token list, 3 collect stats (shapes, global MVN),
#   4 training (4a base Transformer, 4b gated fine-tune global predictor, 4c local predictor),
#   5 decoding (test sets; per utterance: text, encoder gate decisions, encoder GFLOPs),
#   6 scoring (jiwer WER, mean GFLOPs and gate sparsity) + RESULTS.md.
# Finished units leave a .done file and are skipped on a rerun; training resumes (--resume true).
set -euo pipefail

stage=1
stop_stage=6
preset=full              # full: conf/*.yaml | tiny: conf/tiny/*.yaml (fixture test)
librispeech_root=""      # dir holding LibriSpeech/<part> (default: db.sh, else download)
download_dir=downloads
nbpe=5000
ngpu=0
datadir=data
expdir=exp
results=RESULTS.md
models="base gated gated_local"
test_sets="test_clean test_other"
train_set=train_clean_100
valid_set=dev
decode_config=conf/decode_asr.yaml
__options="stage stop_stage preset librispeech_root download_dir nbpe ngpu datadir expdir results models test_sets train_set valid_set decode_config"

cd "$(dirname "$0")"
. ./path.sh
. "${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh"  # + the pipeline's options (--s2t_args, --inference_args, ...)
. scripts/parse_options.sh
pipeline_init

case ${preset} in full) conf=conf ;; tiny) conf=conf/tiny ;;
    *) die "unknown --preset ${preset} (full, tiny)" ;; esac
make_dirs datadir expdir
token_dir=${datadir}/token_list/bpe_unigram${nbpe}; stats_dir=${expdir}/asr_stats_raw_en_bpe${nbpe}
data_kind=asr  # data_opts: wav.scp and text (asr_train)

if stage_in 1; then
    stage_start 1 "Data preparation -> ${datadir}"
    if ! is_done "${datadir}/.done"; then
        # prepare.py checks the tree itself (transcript vs audio, 16 kHz) and sorts the tables
        run local/data.sh --out "${datadir}" --librispeech_root "${librispeech_root}" \
            --download_dir "${download_dir}"
        mark_done "${datadir}/.done"
    fi
    stage_end 1
fi

if stage_in 2; then
    stage_start 2 "BPE (unigram, ${nbpe}) on ${train_set} -> ${token_dir}"
    if ! is_done "${token_dir}/.done"; then
        run ${python} "${MAIN_ROOT}/local/librispeech/bpe.py" --vocab_size "${nbpe}" \
            --out "${token_dir}" "${datadir}/${train_set}/text"
        mark_done "${token_dir}/.done"
    fi
    stage_end 2
fi

common_opts="--use_preprocessor true --token_type bpe --bpemodel ${token_dir}/bpe.model
    --token_list ${token_dir}/tokens.txt --ngpu ${ngpu}"

if stage_in 3; then
    stage_start 3 "Collect stats (shapes, feats_stats.npz) -> ${stats_dir}"
    if ! is_done "${stats_dir}/.done"; then
        # shellcheck disable=SC2046,SC2086
        run ${python} -m espnet_ext.bin.asr_train --collect_stats true --config "${conf}/train_asr_transformer.yaml" \
            ${common_opts} --output_dir "${stats_dir}" \
            $(data_opts train "${datadir}/${train_set}") $(data_opts valid "${datadir}/${valid_set}") \
            > "${stats_dir}.log" 2>&1 || { tail -n 30 "${stats_dir}.log"; exit 1; }
        ntok=$(wc -l < "${token_dir}/tokens.txt")
        for mode in train valid; do  # as asr.sh stage 10: token shapes get the vocab size
            awk -v N="${ntok}" '{ print $0 "," N }' "${stats_dir}/${mode}/text_shape" \
                > "${stats_dir}/${mode}/text_shape.bpe"
        done
        mark_done "${stats_dir}/.done"
    fi
    stage_end 3
fi

train_asr_model() {  # train_asr_model <model> <label>: asr_train (not pipeline.sh's s2t train_model)
    local model=$1 out=${expdir}/$1 config=${conf}/train_asr_transformer_gated.yaml extra=""
    is_done "${out}/.done" && { log "Stage $2: ${model} trained before"; return 0; }
    stage_did_work=true
    case ${model} in
        base) config=${conf}/train_asr_transformer.yaml ;;
        gated) extra="--init_param ${expdir}/base/valid.acc.ave.pth" ;;
        gated_local) extra="--init_param ${expdir}/base/valid.acc.ave.pth --encoder_conf gate_predictor=local" ;;
        *) die "unknown model ${model} (base, gated, gated_local)" ;;
    esac
    mkdir -p "${out}"
    log "Stage $2: training ${model} (${config}; log: ${out}/train.log)"
    # shellcheck disable=SC2046,SC2086
    run ${python} -m espnet_ext.bin.asr_train --config "${config}" ${common_opts} ${extra} \
        --normalize global_mvn --normalize_conf "stats_file=${stats_dir}/train/feats_stats.npz" \
        --resume true --output_dir "${out}" \
        $(data_opts train "${datadir}/${train_set}" "${stats_dir}/train") \
        $(data_opts valid "${datadir}/${valid_set}" "${stats_dir}/valid") ${s2t_args} > "${out}/train.log" 2>&1 \
        || { tail -n 30 "${out}/train.log"; log "training ${model} failed"; return 1; }
    [ -e "${out}/valid.acc.ave.pth" ] || { log "no ${out}/valid.acc.ave.pth"; return 1; }
    mark_done "${out}/.done"
}

if stage_in 4; then
    stage_start 4 "Training (4a base, 4b gated/global, 4c gated/local)"
    label=a
    for model in ${models}; do
        train_asr_model ${model} 4${label}
        label=$(next_letter ${label})
    done
    stage_end 4
fi

if stage_in 5; then
    stage_start 5 "Decoding (${decode_config}) ${test_sets}: text, gates, encoder GFLOPs"
    for model in ${models}; do
        wavs=(); outs=()
        for tset in ${test_sets}; do
            is_done "${expdir}/${model}/decode_${tset}/.done" && continue
            wavs+=("${datadir}/${tset}/wav.scp"); outs+=("${expdir}/${model}/decode_${tset}")
        done
        [ ${#wavs[@]} -gt 0 ] || continue
        log "decoding ${outs[*]##*/} with ${model} (log: ${expdir}/${model}/decode.log)"
        run ${python} -m espnet_ext.asr.inference --ngpu "${ngpu}" --config "${decode_config}" \
            --asr_train_config "${expdir}/${model}/config.yaml" \
            --asr_model_file "${expdir}/${model}/valid.acc.ave.pth" \
            --wav_scp "${wavs[@]}" --output_dir "${outs[@]}" ${inference_args} > "${expdir}/${model}/decode.log" 2>&1 \
            || { tail -n 30 "${expdir}/${model}/decode.log"; log "decoding ${model} failed"; exit 1; }
        grep -h "decoded " "${expdir}/${model}/decode.log" | sed 's/^.*INFO: /  /'
        for out in "${outs[@]}"; do mark_done "${out}/.done"; done
    done
    stage_end 5
fi

if stage_in 6; then
    stage_start 6 "Scoring (jiwer WER) -> ${results}"
    # shellcheck disable=SC2086
    run ${python} "${MAIN_ROOT}/local/librispeech/score.py" --exp "${expdir}" --data "${datadir}" \
        --models ${models} --sets ${test_sets} --out "${results}"
    stage_end 6
fi
log "Finished stages ${stage}-${stop_stage} (preset ${preset})"
