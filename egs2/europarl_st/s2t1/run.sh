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
#   ./run.sh --ngpu 4 --num_nodes 2 (with cmd_backend=slurm, cmd.sh)   # multi-node
#
# Stages: 1 data prep (Kaldi dirs), 2 audio (m4a -> 16 kHz mono segments, length filter),
#   3 context embeddings (speaker for gated_spk, acoustic event for gated_event), 4 pre-trained
#   model (OWSM BPE, token list, stats, weights), 5 stats (shapes), 6 training (one sub-stage
#   per model of --models), 7 decoding, 8 scoring, 9 efficiency + gate patterns + RESULTS.md.
# Every unit of work leaves a .done file; a rerun skips what is finished, and training
# resumes from its last checkpoint (--resume true).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

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
conf_dir=conf                # train_s2t_ebf_{full,gated}.yaml (conf/tiny: tests only)
models="full gated"          # + gated_lang (language only), gated_frame (lang+task, attention
                             # pooling over frames), gated_spk (+ speaker), gated_event (+ event)
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
datadir=data
dumpdir=dump
expdir=exp
results=RESULTS.md
__options="stage stop_stage europarl_st_root download_dir src_langs tgt_lang asr_pairs text_prev use_voxforge voxforge_root voxforge_max_sessions voxforge_test_speakers voxforge_dev_speakers owsm_model conf_dir models spk_model event_model ngpu num_nodes nj train_nj inference_nj inference_batch_size profile_num_utts profile_repeats profile_opts datadir dumpdir expdir results"

cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh
. scripts/parse_options.sh

# Options are checked before anything is written.
for model in ${models}; do
    case ${model} in full|gated|gated_lang|gated_frame|gated_spk|gated_event) ;;
        *) log "--models: unknown ${model} (full gated gated_lang gated_frame gated_spk gated_event)"; exit 1 ;; esac
done
case " ${models} " in *" full "*) ;; *) log "--models must include full (the reference)"; exit 1 ;; esac
if [[ " ${models} " = *" gated_event "* ]] && [ -z "${event_model}" ]; then
    log "gated_event needs --event_model (beats:<BEATs checkpoint> or tagger:<event tagger .pt>)"; exit 1
fi

mkdir -p "${datadir}" "${dumpdir}" "${expdir}"
datadir=$(cd "${datadir}" && pwd); dumpdir=$(cd "${dumpdir}" && pwd); expdir=$(cd "${expdir}" && pwd)
raw=${dumpdir}/raw
owsm_dir=${expdir}/owsm
stats_dir=${expdir}/s2t_stats
python=python3
full_config=${conf_dir}/train_s2t_ebf_full.yaml
gated_config=${conf_dir}/train_s2t_ebf_gated.yaml
for f in "${full_config}" "${gated_config}"; do
    [ -f "${f}" ] || { log "missing ${f} (--conf_dir)"; exit 1; }
done

iso3() {  # Europarl-ST language code -> OWSM v3.1 token (ISO 639-3)
    case $1 in de) echo deu ;; en) echo eng ;; es) echo spa ;; fr) echo fra ;; it) echo ita ;;
        nl) echo nld ;; pl) echo pol ;; pt) echo por ;; ro) echo ron ;;
        *) log "unknown language $1"; exit 1 ;; esac
}
tgt3=$(iso3 "${tgt_lang}")
test_sets=""; vf_test_sets=""; specials="<asr> <st_${tgt3}>"; langs3=""
for l in ${src_langs//,/ }; do
    l3=$(iso3 "${l}")
    langs3="${langs3:+${langs3},}${l3}"
    test_sets="${test_sets} test_${l3}_asr test_${l3}_st_${tgt3}"
    vf_test_sets="${vf_test_sets} vftest_${l3}_asr"
    specials="${specials} <${l3}>"
done
test_sets=${test_sets# }; vf_test_sets=${vf_test_sets# }
eval_sets=${test_sets}
sets="train dev test"
if ${use_voxforge}; then eval_sets="${test_sets} ${vf_test_sets}"; sets="${sets} vftest"; fi
first_st=$(echo ${test_sets} | tr ' ' '\n' | grep _st_ | head -n 1)

# Every python command goes through run, which records it in ${expdir}/commands.sh.
stage_did_work=false
run() {
    printf '%q ' "$@" | sed 's/ $/\n/' >> "${expdir}/commands.sh"
    stage_did_work=true
    "$@"
}
stage_start() { log "Stage $1: $2"; stage_t0=$(date +%s); stage_did_work=false; }
stage_end() {
    local secs=$(( $(date +%s) - stage_t0 ))
    if ${stage_did_work}; then
        mkdir -p "${expdir}/stage_times"; echo "${secs}" > "${expdir}/stage_times/$1"
        log "Stage $1 done in ${secs} s"
    else
        log "Stage $1: nothing to do (finished before)"
    fi
}
wait_all() {
    local pid rc=0
    for pid in $(jobs -p); do wait "${pid}" || rc=1; done
    [ ${rc} -eq 0 ] || { log "a background job failed"; exit 1; }
}

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    stage_start 1 "Data preparation: Europarl-ST v1.1 (${src_langs} -> ${tgt_lang})$(${use_voxforge} && echo ' + Voxforge') -> ${datadir}"
    if [ ! -f "${datadir}/.done" ]; then
        run local/data.sh --out "${datadir}" --europarl_st_root "${europarl_st_root}" \
            --download_dir "${download_dir}" --src_langs "${src_langs}" --tgt_lang "${tgt_lang}" \
            --asr_pairs "${asr_pairs}" --text_prev "${text_prev}" --use_voxforge "${use_voxforge}" \
            --voxforge_root "${voxforge_root}" --voxforge_max_sessions "${voxforge_max_sessions}" \
            --voxforge_test_speakers "${voxforge_test_speakers}" \
            --voxforge_dev_speakers "${voxforge_dev_speakers}"
        for dset in ${sets}; do
            run ${python} scripts/validate_data_dir.py --langs "${langs3}" "${datadir}/${dset}"
        done
        touch "${datadir}/.done"
    fi
    stage_end 1
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    stage_start 2 "Audio: decode, resample to 16 kHz mono, cut segments; length filter -> ${raw}"
    for dset in ${sets}; do
        [ -f "${raw}/${dset}/.done" ] && continue
        run ${python} scripts/segment_audio.py --data_dir "${datadir}/${dset}" \
            --out "${raw}/org/${dset}" --audio_dir "${dumpdir}/audio/${dset}" --nj "${nj}"
        split_opt=""; case ${dset} in test|vftest) split_opt=--split_by_lang_task ;; esac
        run ${python} scripts/format_data.py --data_dir "${raw}/org/${dset}" \
            --out "${raw}/${dset}" --config "${gated_config}" ${split_opt}
        touch "${raw}/${dset}/.done"
    done
    stage_end 2
fi

# Context embeddings each gated model reads (npy per utterance, stage 3)
context_names() {
    case $1 in gated_spk) echo spk_embed ;; gated_event) echo event_embed ;; *) echo ;; esac
}
if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    stage_start 3 "Context embeddings: speaker (${spk_model}) for gated_spk, event (${event_model:-none}) for gated_event"
    kinds=""
    [[ " ${models} " = *" gated_spk "* ]] && kinds="speaker"
    [[ " ${models} " = *" gated_event "* ]] && kinds="${kinds} event"
    [ -n "${kinds}" ] || log "Stage 3: no model in --models uses speaker or event context: skipped"
    for kind in ${kinds}; do
        extractor=${spk_model}; [ "${kind}" = event ] && extractor=${event_model}
        # one .done per kind and extractor: another --spk_model extracts again
        done_file=${raw}/.done_${kind}_$(echo "${extractor}" | md5sum | cut -c1-8)
        [ -f "${done_file}" ] && continue
        # shellcheck disable=SC2046
        run ${python} scripts/context.py extract --kind "${kind}" --model "${extractor}" \
            --num_threads 1 $(for d in ${sets}; do echo "${raw}/${d}"; done) \
            --subsets $(for t in ${eval_sets}; do echo "${raw}/${t}"; done)
        rm -f "${raw}"/.done_"${kind}"_*; touch "${done_file}"
    done
    stage_end 3
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    stage_start 4 "Pre-trained model ${owsm_model}: BPE, token list, stats, weights -> ${owsm_dir}"
    if [ ! -f "${owsm_dir}/.done" ]; then
        run ${python} "${MAIN_ROOT}/local/europarl_st/owsm_model.py" --model "${owsm_model}" \
            --out "${owsm_dir}" --config "${gated_config}" --specials "${specials}"
        touch "${owsm_dir}/.done"
    fi
    stage_end 4
fi

# shellcheck disable=SC2046
common_opts="--use_preprocessor true $( [ -f "${owsm_dir}/train_opts" ] && cat "${owsm_dir}/train_opts")
    --preprocessor_conf time_apply_prob=1.0 --use_tensorboard true --use_matplotlib false"
# time_apply_prob=1.0: our texts carry <notimestamps> already (see conf/train_s2t_ebf_gated.yaml).

data_opts() {  # data_opts <train|valid> <dir> [<shape dir>] [npy names...]
    local mode=$1 dir=$2 shapes=${3:-} name
    echo "--${mode}_data_path_and_name_and_type ${dir}/wav.scp,speech,sound"
    echo "--${mode}_data_path_and_name_and_type ${dir}/text.prev,text_prev,text"
    echo "--${mode}_data_path_and_name_and_type ${dir}/text.ctc,text_ctc,text"
    echo "--${mode}_data_path_and_name_and_type ${dir}/text,text,text"
    if [ -n "${shapes}" ]; then
        for name in speech_shape text_shape.bpe text_prev_shape.bpe text_ctc_shape.bpe; do
            echo "--${mode}_shape_file ${shapes}/${name}"
        done
    else
        echo "--${mode}_shape_file ${dir}/speech_shape"
    fi
    for name in "${@:4}"; do
        echo "--${mode}_data_path_and_name_and_type ${dir}/${name}.scp,${name},npy"
    done
}

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    stage_start 5 "Collect stats (shapes; normalisation: the pre-trained model's global MVN)"
    if [ ! -f "${stats_dir}/.done" ]; then
        ntok=$(wc -l < "${owsm_dir}/tokens.txt")
        # shellcheck disable=SC2046,SC2086
        run ${python} -m espnet_ext.bin.s2t_train --collect_stats true --ngpu 0 \
            --config "${full_config}" ${common_opts} --output_dir "${stats_dir}" \
            $(data_opts train "${raw}/train") $(data_opts valid "${raw}/dev") \
            > "${stats_dir}.log" 2>&1 || { tail -n 30 "${stats_dir}.log"; exit 1; }
        for mode in train valid; do  # as s2t.sh stage 10: token shapes get the vocab size
            for f in text text_prev text_ctc; do
                awk -v N="${ntok}" '{ print $0 "," N }' "${stats_dir}/${mode}/${f}_shape" \
                    > "${stats_dir}/${mode}/${f}_shape.bpe"
            done
        done
        # batch_type unsorted batches consecutive keys (one talk, one speaker): mix them
        run ${python} scripts/shuffle_keys.py "${stats_dir}/train/speech_shape"
        touch "${stats_dir}/.done"
    fi
    stage_end 5
fi

context_opts() {  # gate context overrides of conf's gated model, per model of --models
    local ctx="" dim
    case $1 in
        gated_lang) ctx="gate_context=[lang]" ;;
        gated_frame) ctx="gate_pooling=attention" ;;
        gated_spk)
            dim=$(${python} scripts/context.py dim "${raw}/train/spk_embed.scp")
            ctx="gate_context=[lang,task,spk] spk_embed_dim=${dim}" ;;
        gated_event)
            dim=$(${python} scripts/context.py dim "${raw}/train/event_embed.scp")
            ctx="gate_context=[lang,task,event] event_embed_dim=${dim}" ;;
    esac
    local side kv
    for side in encoder decoder; do
        for kv in ${ctx}; do echo "--${side}_conf ${kv}"; done
    done
}
model_config() { [ "$1" = full ] && echo "${full_config}" || echo "${gated_config}"; }

train_model() {  # train_model <model> <stage label>
    local model=$1 label=$2 out=${expdir}/$1 names var_opts="" t0; t0=$(date +%s)
    names=$(context_names "${model}")
    [ -n "${names}" ] && var_opts="--allow_variable_data_keys true"
    # shellcheck disable=SC2046,SC2086
    local opts="--config $(model_config ${model}) ${common_opts}
        --init_param ${owsm_dir}/model.pth $(context_opts ${model}) ${var_opts}
        --output_dir ${out} --resume true
        $(data_opts train "${raw}/train" "${stats_dir}/train" ${names})
        $(data_opts valid "${raw}/dev" "${stats_dir}/valid" ${names})"
    mkdir -p "${out}"
    log "Stage ${label}: checking that ${owsm_model} initialises ${model} (only gate parameters new)"
    # shellcheck disable=SC2086
    run ${python} scripts/check_init.py --init "${owsm_dir}/model.pth" -- ${opts} \
        > "${out}/check_init.log" 2>&1 || { cat "${out}/check_init.log"; return 1; }
    grep "(check_init)" "${out}/check_init.log" | sed 's/^.*INFO: /  /'
    log "Stage ${label}: training ${model} (ngpu ${ngpu}, num_nodes ${num_nodes}; log: ${out}/train.log)"
    local launcher=()
    if [ "${ngpu}" -gt 1 ] || [ "${num_nodes}" -gt 1 ]; then
        # ESPnet's launcher: one DDP worker per GPU, or a multi-node job through ${cuda_cmd}.
        launcher=(${python} -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${model}"
                  --log "${out}/train.log" --ngpu "${ngpu}" --num_nodes "${num_nodes}"
                  --init_file_prefix "${out}/.dist_init_" --multiprocessing_distributed true --)
    fi
    # shellcheck disable=SC2086
    if [ ${#launcher[@]} -gt 0 ]; then
        run "${launcher[@]}" ${python} -m espnet_ext.bin.s2t_train ${opts} \
            || { tail -n 30 "${out}/train.log"; log "training ${model} failed"; return 1; }
        grep "epoch results" "${out}/train.log" | sed -E "s/^.*INFO: (.{0,200}).*$/  ${model} \1/" || true
    elif ! run ${python} -m espnet_ext.bin.s2t_train ${opts} --ngpu "${ngpu}" 2>&1 \
            | tee "${out}/train.log" \
            | { grep --line-buffered "epoch results" \
                | sed -u -E "s/^.*INFO: (.{0,200}).*$/  ${model} \1/" || true; }; then
        tail -n 30 "${out}/train.log"; log "training ${model} failed"; return 1
    fi
    [ -e "${out}/valid.acc.ave.pth" ] || { tail -n 30 "${out}/train.log"; log "no ${out}/valid.acc.ave.pth"; return 1; }
    echo $(( $(date +%s) - t0 )) > "${out}/train_seconds"
    touch "${out}/.done"
}

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    stage_start 6 "Training from ${owsm_model}: ${models}"
    label=a; running=0
    for model in ${models}; do
        if [ ! -f "${expdir}/${model}/.done" ]; then
            stage_did_work=true
            train_model "${model}" "6${label}" &
            running=$(( running + 1 ))
            if [ ${running} -ge ${train_nj} ]; then wait_all; running=0; fi
        fi
        label=$(echo ${label} | tr 'a-d' 'b-e')
    done
    wait_all
    stage_end 6
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    stage_start 7 "Decoding: beam 5, maxlenratio 0.0, every model x ${eval_sets}, ${inference_nj} job(s) per set"
    # The lean search (the CLI's default) computes the source K/V once per utterance for every
    # model, stock or gated. --src_kv_cache false matters only with --search espnet: the gated
    # decoders then recompute them at every step, as the stock one does (like for like).
    # Each set is split into --inference_nj jobs (with GPUs: job j on GPU (j-1) mod #GPUs),
    # each resumable, then merged (scripts/decode.py --nj).
    for model in ${models}; do
        todo=""
        for tset in ${eval_sets}; do
            [ -f "${expdir}/${model}/decode_${tset}/.done" ] || todo="${todo} ${tset}"
        done
        [ -n "${todo}" ] || continue
        stage_did_work=true
        log "Decoding ${model} on${todo} (log: ${expdir}/${model}/decode.log)"
        # shellcheck disable=SC2046,SC2086
        run ${python} scripts/decode.py --model_dir "${expdir}/${model}" --dump "${raw}" \
            --nj "${inference_nj}" $(context_names ${model} | sed 's/^./--npy &/') ${todo} -- \
            --config conf/decode_s2t.yaml --ngpu "$(( ngpu > 0 ? 1 : 0 ))" --beam_size 5 \
            --maxlenratio 0.0 --batch_size "${inference_batch_size}" --src_kv_cache false \
            > "${expdir}/${model}/decode.log" 2>&1 || {
            tail -n 30 "${expdir}/${model}/decode.log"; log "decoding ${model} failed"; exit 1; }
        grep -h "^decoded " "${expdir}/${model}/decode.log" | sed 's/^/  /'
    done
    stage_end 7
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    stage_start 8 "Scoring: BLEU/chrF (sacrebleu, cased, punctuated) per direction, WER/CER (jiwer) per language"
    for model in ${models}; do
        scores=${expdir}/${model}/scores.json
        # up to date: newer than every decoding (a re-decoded set is scored again)
        if [ -f "${scores}" ] && [ -z "$(find "${expdir}/${model}" -path '*/decode_*/.done' -newer "${scores}")" ]; then
            continue
        fi
        # shellcheck disable=SC2086
        run ${python} scripts/score.py --exp "${expdir}/${model}" --dump "${raw}" \
            --st_normalise none ${eval_sets}
    done
    stage_end 8
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    stage_start 9 "Efficiency (GFLOPs, wall-clock; gated vs full), gate patterns, ${results}"
    eff=${expdir}/efficiency/${first_st}.json
    # a profile of another --models list is redone (rows NAME@espnet: --espnet_reference)
    if [ -f "${eff}" ] && ! ${python} -c 'import json, sys; sys.exit({m for m in json.load(open(sys.argv[1]))["models"] if "@" not in m} != set(sys.argv[2:]))' "${eff}" ${models}; then
        log "Stage 9: ${eff} profiled other models than '${models}': profiling again"
        rm "${eff}"
    fi
    if [ ! -f "${eff}" ]; then
        mkdir -p "${expdir}/efficiency"
        model_opts=""
        for model in ${models}; do
            model_opts="${model_opts} --model ${model}=${expdir}/${model}/config.yaml:${expdir}/${model}/valid.acc.ave.pth"
        done
        device=cpu; [ "${ngpu}" -gt 0 ] && device=cuda
        l3=${first_st#test_}; l3=${l3%%_*}
        # --espnet_reference: the full model once more with ESPnet's BatchBeamSearch (row full@espnet)
        # shellcheck disable=SC2086
        run ${python} -m espnet_ext.bin.profile ${model_opts} --reference full --espnet_reference \
            --data_dir "${raw}/${first_st}" --lang_sym "${l3}" --task_sym "st_${tgt3}" \
            --num_utts "${profile_num_utts}" --threads "${OMP_NUM_THREADS}" --warmup 1 \
            --repeats "${profile_repeats}" --beam_size 5 --device "${device}" ${profile_opts} \
            --out "${eff}"
    fi
    # Gate patterns of each gated model per language, task and speaker (PNGs and
    # gate_factors_<model>.json in ${expdir}/plots; RESULTS.md shows them)
    for model in ${models}; do
        [ "${model}" = full ] && continue
        # shellcheck disable=SC2086
        run ${python} scripts/plot_gates.py --exp "${expdir}" --model "${model}" --dump "${raw}" \
            --test_sets ${eval_sets} --out_dir "${expdir}/plots" | sed 's/^/  /'
    done
    stage_end 9
    # shellcheck disable=SC2086
    run ${python} "${MAIN_ROOT}/local/europarl_st/report.py" --exp "${expdir}" \
        --data "${datadir}" --models ${models} --test_sets ${eval_sets} \
        --efficiency "${eff}" --out "${results}"
    log "Wrote ${results}"
fi
log "Finished stages ${stage}-${stop_stage}"
