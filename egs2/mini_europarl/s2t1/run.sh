#!/usr/bin/env bash
# Mini Europarl, S2T (OWSM-style ASR + ST): context-aware dynamic pruning end to end, offline,
# on CPUs. Synthesises the corpus, fine-tunes the pre-trained mini OWSM that ships in
# pretrained/mini_owsm fully (baseline) and with gates (lang/task context; bench and tiny
# also + speaker, + event), decodes, scores and writes RESULTS.md.
#
# Usage:
#   ./run.sh --preset demo                      # everything (< 20 min on a 2-core machine)
#   ./run.sh --preset demo --stage 7 --stop_stage 8
#   ./run.sh --preset demo --base scratch       # pre-train the base model too (stage 6a)
#   ./run.sh --preset base --datadir base/data --dumpdir base/dump --expdir base/exp
#                                               # re-make pretrained/mini_owsm (see README.md)
#   ./run.sh --preset tiny --datadir /tmp/x/data --dumpdir /tmp/x/dump --expdir /tmp/x/exp
#
# Stages: 1 data prep, 2 audio format, 3 context embeddings, 4 token list (from the base
#   model, or a new BPE with --base scratch), 5 stats,
#   6 training (6a base (--base scratch), 6b full fine-tune, 6c gated, 6d gated+spk,
#   6e gated+event), 7 decoding, 8 scoring, 9 efficiency + RESULTS.md,
#   10 (--preset base) pack the base model in the OWSM hub layout into --base_out.
# Every unit of work leaves a .done file; a rerun skips what is finished, and training
# resumes from its last checkpoint (--resume true).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

# Options (--name value).
stage=1
stop_stage=10
preset=demo          # tiny | demo | bench | base: conf/<preset>/{preset.sh,train_*.yaml}
base=                # pre-trained model dir (OWSM hub layout) | scratch; empty: the preset's
base_out=pretrained/mini_owsm  # stage 10 of --preset base writes the packed base model here
base_init=           # --base scratch: start 6a from these weights, e.g. --preset base
                     # --base_init pretrained/mini_owsm/exp/s2t_train_mini_owsm/valid.acc.ave.pth
                     # (same pretrain data, so the same BPE and stats: more steps for the base)
nj=2                 # parallel jobs for corpus synthesis
ngpu=0               # passed to ESPnet (0: CPU)
datadir=data         # Kaldi dirs from stage 1, token list
dumpdir=dump         # formatted data, embeddings
expdir=exp           # models, decoding, scores, RESULTS.md inputs
results=RESULTS.md
baselines=auto       # static pruning baselines l0 + layerprune (6f-6h): true | false | auto (bench)
skip_bad_utts=false  # stage 2: leave bad utterances out (listed in dump/raw/<set>/bad_utts)
gated_models=        # gate contexts to fine-tune (6c-6e) from gated gated_spk gated_event; empty: the preset's
__options="stage stop_stage preset base base_out base_init nj ngpu datadir dumpdir expdir results baselines skip_bad_utts gated_models"

cd "$(dirname "$0")"
. ./path.sh
. scripts/parse_options.sh

[ -f "conf/${preset}/preset.sh" ] || { log "unknown --preset ${preset} (tiny, demo, bench, base)"; exit 1; }
. "conf/${preset}/preset.sh"
base=${base:-${preset_base:-scratch}}
gated_models=${gated_models:-${preset_gated_models:-gated gated_spk gated_event}}
[ "${preset}" = base ] && [ "${base}" != scratch ] && { log "--preset base pre-trains: --base scratch"; exit 1; }
if [ "${base}" != scratch ]; then
    [ -d "${base}" ] || { log "--base ${base}: no such model directory (or: --base scratch)"; exit 1; }
    [ -z "${base_init}" ] || { log "--base_init starts a pre-training: use it with --base scratch"; exit 1; }
    base=$(cd "${base}" && pwd)
fi
conf=conf/${preset}
# The base model's config (stage 6a, and the audio length limits of stage 2): the preset's
# own (tiny), else the one that made pretrained/mini_owsm.
base_config=${conf}/train_base.yaml; [ -f "${base_config}" ] || base_config=conf/base/train_base.yaml
mkdir -p "${datadir}" "${dumpdir}" "${expdir}"
datadir=$(cd "${datadir}" && pwd); dumpdir=$(cd "${dumpdir}" && pwd); expdir=$(cd "${expdir}" && pwd)
raw=${dumpdir}/raw
token_dir=${datadir}/token_list/bpe_unigram${nbpe}
stats_dir=${expdir}/s2t_stats_bpe${nbpe}; [ "${base}" = scratch ] || stats_dir=${expdir}/s2t_stats_base
python=python3
# Options are checked before anything is written to ${expdir}.
for model in ${gated_models}; do
    case ${model} in gated|gated_spk|gated_event) ;;
        *) log "--gated_models: unknown ${model} (gated, gated_spk, gated_event)"; exit 1 ;; esac
done
case " ${gated_models} " in *" gated "*) ;;
    *) log "--gated_models must include gated (the baselines' budget, the gate plots)"; exit 1 ;; esac
# An exp dir holds one preset's models, fine-tuned from one base model (its weights' md5).
# base_md5: the content of every file of the base model dir (stage 4 redoes its work when it
# changes).
made_with="--preset ${preset} --base scratch${base_init:+ --base_init ${base_init}}"
if [ "${base}" != scratch ]; then
    base_md5=$(find "${base}" -type f -printf '%P\n' | LC_ALL=C sort \
        | (cd "${base}" && xargs -d '\n' md5sum) | md5sum | cut -d' ' -f1)
    made_with="--preset ${preset} --base ${base} (${base_md5:0:8})"
fi
if [ -f "${expdir}/.preset" ] && [ "$(cat "${expdir}/.preset")" != "${made_with}" ]; then
    log "${expdir} was made with $(cat "${expdir}/.preset"), not ${made_with}; use another --expdir"
    exit 1
fi
echo "${made_with}" > "${expdir}/.preset"

# Models fine-tuned in stage 6 and evaluated in stages 7-9 (name: gate context); --preset base
# trains and evaluates the base model alone.
models="full ${gated_models}"
[ "${preset}" = base ] && { models=base; baselines=false; }
# Splits to synthesise: `pretrain` only to pre-train the base model here.
train_sets=train  # what the event tagger and stage 5 see
[ "${base}" = scratch ] && train_sets="pretrain train"
dsets="${train_sets} dev test"
# torch threads of each of the --nj jobs that run side by side
threads=$(( OMP_NUM_THREADS / nj )); [ ${threads} -ge 1 ] || threads=1
# Static pruning baselines at the gated model's measured FLOPs (docs/baselines.md): trained in
# stages 6f-6h after full and gated, then decoded, scored and reported like the others.
[ "${baselines}" = auto ] && { baselines=false; [ "${preset}" = bench ] && baselines=true; }
case ${baselines} in true) models="${models} l0 layerprune" ;; false) ;;
    *) log "--baselines must be true, false or auto, got ${baselines}"; exit 1 ;; esac
test_sets="test_eng_asr test_deu_asr test_fra_asr test_ita_asr test_deu_st_eng test_fra_st_eng test_ita_st_eng"

# Every python command goes through run, which records it in ${expdir}/commands.sh
# (RESULTS.md cites them) and marks the current stage as having done work.
stage_did_work=false
run() {
    printf '%q ' "$@" | sed 's/ $/\n/' >> "${expdir}/commands.sh"
    stage_did_work=true
    "$@"
}
stage_start() {  # stage_start K "what"
    log "Stage $1: $2"
    stage_t0=$(date +%s)
    stage_did_work=false
}
stage_end() {  # records the wall time of a stage that did any work
    local secs=$(( $(date +%s) - stage_t0 ))
    if ${stage_did_work}; then
        mkdir -p "${expdir}/stage_times"
        echo "${secs}" > "${expdir}/stage_times/$1"
        log "Stage $1 done in ${secs} s"
    else
        log "Stage $1: nothing to do (finished before)"
    fi
}

# The .done file of stages 1-4 holds a hash of the unit's inputs (options, configs, input
# tables, the script): a rerun with the same inputs skips the unit, changed inputs redo it.
inputs_hash() {  # inputs_hash <file or literal>...: md5 of the files' contents and the literals
    local x
    for x in "$@"; do if [ -f "${x}" ]; then cat "${x}"; else echo "${x}"; fi; done \
        | md5sum | cut -d' ' -f1
}
audio_stamp() {  # audio_stamp <wav.scp>: path, size and mtime of each audio file (pipes: none)
    cut -d' ' -f2- "$1" | grep -v '|$' | sort -u \
        | xargs -r -d '\n' stat -c '%n %s %Y' 2>/dev/null || true
}
is_done() {  # is_done <.done file> <hash>
    [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

wait_all() {  # waits for every background job; fails if one failed
    local pid rc=0
    for pid in $(jobs -p); do wait "${pid}" || rc=1; done
    [ ${rc} -eq 0 ] || { log "a background job failed"; exit 1; }
}

# Data options of s2t_train for a training set, as s2t.sh stage 10/11 passes them.
data_opts() {  # data_opts <mode: train|valid> <dir> [<shape dir>] [extra npy names...]
    local mode=$1 dir=$2 shapes=${3:-} name names
    names=("${@:4}")
    echo "--${mode}_data_path_and_name_and_type ${dir}/wav.scp,speech,sound"
    echo "--${mode}_data_path_and_name_and_type ${dir}/text.prev,text_prev,text"
    echo "--${mode}_data_path_and_name_and_type ${dir}/text.ctc,text_ctc,text"
    echo "--${mode}_data_path_and_name_and_type ${dir}/text,text,text"
    if [ -n "${shapes}" ]; then
        echo "--${mode}_shape_file ${shapes}/speech_shape"
        echo "--${mode}_shape_file ${shapes}/text_shape.bpe"
        echo "--${mode}_shape_file ${shapes}/text_prev_shape.bpe"
        echo "--${mode}_shape_file ${shapes}/text_ctc_shape.bpe"
    else
        echo "--${mode}_shape_file ${dir}/speech_shape"
    fi
    for name in "${names[@]}"; do
        echo "--${mode}_data_path_and_name_and_type ${dir}/${name}.scp,${name},npy"
    done
}

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    sizes=${corpus_sizes}
    [ "${base}" = scratch ] || sizes=$(echo "${sizes}" | sed -E 's/pretrain=[0-9]+/pretrain=0/')
    stage_start 1 "Data preparation: synthesise mini Europarl (${sizes}) -> ${datadir}"
    hash=$(inputs_hash "sizes=${sizes}" "voices=${voices_per_lang}")
    if ! is_done "${datadir}/.done" "${hash}"; then
        run local/data.sh --out "${datadir}" --sizes "${sizes}" --nj "${nj}" \
            --voices_per_lang "${voices_per_lang}"
        # shellcheck disable=SC2046
        run ${python} scripts/validate_data_dir.py --langs eng,deu,fra,ita --tasks asr,st_eng \
            $(for d in ${dsets}; do echo "${datadir}/${d}"; done)
        echo "${hash}" > "${datadir}/.done"
    fi
    stage_end 1
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    stage_start 2 "Format audio: 16 kHz mono check, length filter, speech_shape -> ${raw}"
    for dset in ${dsets}; do
        split_opt=""; [ "${dset}" = test ] && split_opt=--split_by_lang_task
        ${skip_bad_utts} && split_opt="${split_opt} --skip_bad_utts"
        hash=$(inputs_hash "${split_opt}" "${base_config}" scripts/format_data.py \
            "${datadir}/${dset}"/{wav.scp,text,text.ctc,text.prev,utt2spk,utt2lang,utt2task} \
            "$(audio_stamp "${datadir}/${dset}/wav.scp")")
        is_done "${raw}/${dset}/.done" "${hash}" && continue
        # shellcheck disable=SC2086
        run ${python} scripts/format_data.py --data_dir "${datadir}/${dset}" \
            --out "${raw}/${dset}" --config "${base_config}" ${split_opt} \
            --langs eng,deu,fra,ita --tasks asr,st_eng
        # shellcheck disable=SC2046
        run ${python} scripts/validate_data_dir.py --config "${base_config}" \
            --langs eng,deu,fra,ita --tasks asr,st_eng "${raw}/${dset}" \
            $([ "${dset}" = test ] && for t in ${test_sets}; do echo "${raw}/${t}"; done)
        echo "${hash}" > "${raw}/${dset}/.done"
    done
    stage_end 2
fi

# Stage 3 serves the models with speaker or event context only (the gate plots group by
# utt2spk and utt2event, which stage 1 writes).
need_context=false
case " ${models} " in *" gated_spk "*|*" gated_event "*) need_context=true ;; esac
if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ] && ${need_context}; then
    stage_start 3 "Context embeddings: speaker (resemblyzer), event (small tagger)"
    # One torch thread: these small models (batch 1, LSTM/CNN) ran 3x faster on 1 thread
    # than on 2 on the 2-core machine.
    tagger=${expdir}/event_tagger/tagger.pth
    if [ ! -f "${expdir}/event_tagger/.done" ]; then
        log "Training the event tagger on ${train_sets} (<= ${tagger_clips_per_event} recordings per event)"
        # shellcheck disable=SC2046
        run ${python} scripts/context.py recordings --out "${expdir}/event_tagger/data" \
            --max_per_event "${tagger_clips_per_event}" $(for d in ${train_sets}; do echo "${raw}/${d}"; done)
        # shellcheck disable=SC2086
        run ${python} -m espnet_ext.bin.train_event_tagger \
            --data_dir "${expdir}/event_tagger/data" --out "${tagger}" \
            --num_threads 1 ${tagger_opts}
        touch "${expdir}/event_tagger/.done"
    fi
    # Context is only needed by the fine-tuned models: train, dev and test (+ its subsets).
    for kind in speaker event; do
        model=resemblyzer; [ ${kind} = event ] && model=${tagger}
        hash=$(inputs_hash "${model}" "${raw}"/{train,dev,test}/wav.scp \
            $([ ${kind} = event ] && echo "${tagger}"))
        is_done "${raw}/.done_${kind}" "${hash}" && continue
        log "Extracting ${kind} embeddings for train, dev, test (one per recording)"
        # shellcheck disable=SC2046
        run ${python} scripts/context.py extract --kind ${kind} --model "${model}" \
            --num_threads 1 "${raw}/train" "${raw}/dev" "${raw}/test" \
            --subsets $(for t in ${test_sets}; do echo "${raw}/${t}"; done)
        echo "${hash}" > "${raw}/.done_${kind}"
    done
    stage_end 3
fi

# The base model: pre-trained here (6a), or a pre-trained model whose BPE, token list and
# feature statistics every fine-tune reuses (stage 4 checks it fits, as the Europarl recipe
# does with OWSM v3.1).
if [ "${base}" = scratch ]; then
    base_model=${expdir}/base/valid.acc.ave.pth
    stats_file=${stats_dir}/pretrain/train/feats_stats.npz
else
    token_dir=${expdir}/base
    base_model=${token_dir}/model.pth
    stats_file=${token_dir}/feats_stats.npz
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    if [ "${base}" = scratch ]; then
        stage_start 4 "Token list: unigram BPE (${nbpe}) with OWSM special tokens -> ${token_dir}"
        hash=$(inputs_hash "${nbpe}" "${raw}"/{pretrain,train}/{text,text.ctc})
        if ! is_done "${token_dir}/.done" "${hash}"; then
            run ${python} scripts/make_token_list.py --vocab_size "${nbpe}" --out "${token_dir}" \
                "${raw}/pretrain" "${raw}/train"
            echo "${hash}" > "${token_dir}/.done"
        fi
    else
        stage_start 4 "Pre-trained base ${base}: BPE, token list, stats, weights -> ${token_dir}"
        hash=$(inputs_hash "${base}" "${base_md5}" "${conf}/train_gated.yaml" \
            "${MAIN_ROOT}/local/europarl_st/owsm_model.py")
        if ! is_done "${token_dir}/.done" "${hash}"; then
            run ${python} "${MAIN_ROOT}/local/europarl_st/owsm_model.py" --model "${base}" \
                --out "${token_dir}" --config "${conf}/train_gated.yaml" \
                --specials "<eng> <deu> <fra> <ita> <asr> <st_eng>"
            # what the base model scored and cost when it was made (RESULTS.md shows it)
            for f in scores.json train_seconds; do
                [ -f "${base}/${f}" ] && cp "${base}/${f}" "${token_dir}/${f}"
            done
            echo "${hash}" > "${token_dir}/.done"
        fi
    fi
    stage_end 4
fi

common_opts="--use_preprocessor true --token_type bpe --bpemodel ${token_dir}/bpe.model
    --token_list ${token_dir}/tokens.txt --ngpu ${ngpu} --use_tensorboard false
    --use_matplotlib false"

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    stage_start 5 "Collect stats (shapes, feats_stats.npz for global_mvn)"
    ntok=$(wc -l < "${token_dir}/tokens.txt")
    stat_sets=${train_sets}; [ "${preset}" = base ] && stat_sets=pretrain
    for dset in ${stat_sets}; do  # in parallel
        out=${stats_dir}/${dset}
        [ -f "${out}/.done" ] && continue
        log "collect_stats: ${dset} (valid: dev) -> ${out} (log: ${out}.log)"
        stage_did_work=true
        mkdir -p "${stats_dir}"
        config=${conf}/train_full.yaml; [ ${dset} = pretrain ] && config=${base_config}
        (
            # shellcheck disable=SC2046,SC2086
            run ${python} -m espnet_ext.bin.s2t_train --collect_stats true \
                --config "${config}" ${common_opts} --output_dir "${out}" \
                $(data_opts train "${raw}/${dset}") $(data_opts valid "${raw}/dev") \
                > "${out}.log" 2>&1 || { tail -n 30 "${out}.log"; exit 1; }
            for mode in train valid; do  # as s2t.sh stage 10: token shapes get the vocab size
                for f in text text_prev text_ctc; do
                    awk -v N="${ntok}" '{ print $0 "," N }' "${out}/${mode}/${f}_shape" \
                        > "${out}/${mode}/${f}_shape.bpe"
                done
            done
            # ESPnet's unsorted sampler batches consecutive keys: mix speakers/languages/tasks
            run ${python} scripts/shuffle_keys.py "${out}/train/speech_shape"
            touch "${out}/.done"
        ) &
    done
    wait_all
    stage_end 5
fi

# Gate context of each gated model, as overrides of conf/<preset>/train_gated.yaml.
context_opts() {  # context_opts <model>
    local spk_dim=256 event_dim
    case $1 in
        gated) ;;
        l0_train) echo "--model_conf target_flops=$(cat "${expdir}/baseline_target")" ;;
        layerprune) cat "${expdir}/layerprune_init/train_opts" ;;
        gated_spk)
            for side in encoder decoder; do
                echo "--${side}_conf gate_context=[lang,task,spk] --${side}_conf spk_embed_dim=${spk_dim}"
            done ;;
        gated_event)
            event_dim=$(${python} scripts/context.py dim "${raw}/train/event_embed.scp")
            for side in encoder decoder; do
                echo "--${side}_conf gate_context=[lang,task,event] --${side}_conf event_embed_dim=${event_dim}"
            done ;;
    esac
}
context_names() {  # npy inputs a model reads
    case $1 in gated_spk) echo spk_embed ;; gated_event) echo event_embed ;; *) echo ;; esac
}
model_config() {
    case $1 in base) echo "${base_config}" ;; full) echo "${conf}/train_full.yaml" ;;
        l0_train) echo "${conf}/train_l0.yaml" ;; layerprune) echo "${conf}/train_layerprune.yaml" ;;
        *) echo "${conf}/train_gated.yaml" ;; esac
}

train_model() {  # train_model <model> <stage label, e.g. 6c> <torch threads>
    local model=$1 label=$2 threads=$3 out=${expdir}/$1 dset=train names init_opts="" var_opts=""
    [ ${model} = base ] && dset=pretrain
    names=$(context_names ${model})
    [ -n "${names}" ] && var_opts="--allow_variable_data_keys true"
    [ ${model} != base ] && init_opts="--init_param ${base_model}"
    [ ${model} = base ] && [ -n "${base_init}" ] && init_opts="--init_param ${base_init}"
    [ ${model} = layerprune ] && init_opts="--init_param ${expdir}/layerprune_init/model.pth"
    # shellcheck disable=SC2046,SC2086
    local opts="--config $(model_config ${model}) ${common_opts} ${norm_opts} ${init_opts}
        $(context_opts ${model}) ${var_opts} --output_dir ${out} --resume true
        $(data_opts train "${raw}/${dset}" "${stats_dir}/${dset}/train" ${names})
        $(data_opts valid "${raw}/dev" "${stats_dir}/${dset}/valid" ${names})"
    mkdir -p "${out}"
    if [[ ${model} = gated* ]]; then
        log "Stage ${label}: checking that the base model initialises ${model}"
        # shellcheck disable=SC2086
        run ${python} scripts/check_init.py --init "${base_model}" -- ${opts} \
            > "${out}/check_init.log" 2>&1 || { cat "${out}/check_init.log"; return 1; }
        grep "(check_init)" "${out}/check_init.log" | sed 's/^.*INFO: /  /'
    fi
    log "Stage ${label}: training ${model} on ${dset}, ${threads} thread(s) (log: ${out}/train.log)"
    # Progress: one line per epoch; the whole log is in ${out}/train.log (appended: a resumed
    # training keeps the earlier epochs' lines).
    # shellcheck disable=SC2086
    # MKL_NUM_THREADS too: with both set torch follows it (path.sh exports both).
    if ! OMP_NUM_THREADS=${threads} MKL_NUM_THREADS=${threads} run ${python} -m espnet_ext.bin.s2t_train ${opts} 2>&1 \
            | tee -a "${out}/train.log" \
            | { grep --line-buffered "epoch results" \
                | sed -u -E "s/^.*INFO: (.{0,200}).*$/  ${model} \1/" || true; }; then
        tail -n 30 "${out}/train.log"; log "training ${model} failed"; return 1
    fi
    [ -e "${out}/valid.acc.ave.pth" ] || { log "no ${out}/valid.acc.ave.pth"; return 1; }
    # the epochs' own time: a resumed run adds its epochs to the earlier runs' ones
    ${python} scripts/train_seconds.py "${out}/train.log" > "${out}/train_seconds"
    touch "${out}/.done"
}

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    stage_start 6 "Training: 6a base (pretrain), 6b full fine-tune, 6c-6e gated fine-tunes (train)"
    norm_opts="--normalize global_mvn --normalize_conf stats_file=${stats_file}"
    if [ "${base}" = scratch ] && [ ! -f "${expdir}/base/.done" ]; then
        stage_did_work=true
        # alone on the machine: the threads of all --nj jobs
        train_model base 6a $(( threads * nj ))
    fi
    # The fine-tunes are independent: --nj of them at a time, OMP_NUM_THREADS/nj threads each
    # (on 2 cores two 1-thread jobs beat one 2-thread job for these small models).
    running=0; label=b; todo=()
    for model in ${models}; do
        case ${model} in base|l0|layerprune) continue ;; esac  # 6a above; the baselines: 6f-6h below
        [ -f "${expdir}/${model}/.done" ] || todo+=("${model}:6${label}")
        label=$(echo ${label} | tr 'a-d' 'b-e')
    done
    for (( i = 0; i < ${#todo[@]}; i++ )); do
        stage_did_work=true
        n=${threads}  # the last of an odd number trains alone: all the threads
        [ $(( i + 1 )) -eq ${#todo[@]} ] && [ ${running} -eq 0 ] && n=$(( threads * nj ))
        train_model "${todo[i]%:*}" "${todo[i]#*:}" ${n} &
        running=$(( running + 1 ))
        if [ ${running} -ge ${nj} ]; then wait_all; running=0; fi
    done
    wait_all
    if ${baselines}; then
        target=${expdir}/baseline_target
        if [ ! -s "${target}" ]; then
            stage_did_work=true
            log "Stage 6f: FLOPs target of the baselines = gated / full GFLOPs, measured on dev"
            run ${python} -m espnet_ext.bin.match_flops --reference "${expdir}/full" \
                --model "${expdir}/gated" --data_dir "${raw}/dev" --num_utts "${profile_num_utts}" \
                --out "${target}.json" --fraction_out "${target}.tmp" > "${target}.log" 2>&1 \
                || { tail -n 30 "${target}.log"; exit 1; }
            mv "${target}.tmp" "${target}"
        fi
        log "  baselines' FLOPs target: $(cat "${target}") of the full model (${target}.json)"
        init=${expdir}/layerprune_init
        if [ ! -f "${init}/.done" ]; then
            stage_did_work=true
            mkdir -p "${init}"
            log "Stage 6h: per-layer convexity of the base model on dev, layers to keep -> ${init}"
            run ${python} -m espnet_ext.bin.convexity --config "${expdir}/base/config.yaml" \
                --model_file "${base_model}" --data_dir "${raw}/dev" \
                --max_tokens 2000 --out "${init}/convexity.json" > "${init}/convexity.txt" \
                2> "${init}/convexity.log" || { tail -n 30 "${init}/convexity.log"; exit 1; }
            grep -v "Flash Attention" "${init}/convexity.txt" | sed 's/^/  /'
            run ${python} -m espnet_ext.bin.layer_prune --config "${expdir}/base/config.yaml" \
                --model_file "${base_model}" --convexity "${init}/convexity.json" \
                --target_fraction "$(cat "${target}")" --out_dir "${init}" 2> "${init}/layer_prune.log" \
                | grep -v "Flash Attention" | sed 's/^/  /'
            touch "${init}/.done"
        fi
        for model in l0_train layerprune; do  # 6g: L0 masks + Lagrangian; 6h: layer-pruned fine-tune
            [ -f "${expdir}/${model}/.done" ] && continue
            stage_did_work=true
            label=6g; [ ${model} = layerprune ] && label=6h
            train_model ${model} ${label} ${threads} &
        done
        wait_all
        if [ ! -f "${expdir}/l0/.done" ]; then
            stage_did_work=true
            log "Stage 6g: removing the pruned units -> stock ESPnet model in ${expdir}/l0"
            run ${python} -m espnet_ext.bin.l0_export --config "${expdir}/l0_train/config.yaml" \
                --model_file "${expdir}/l0_train/valid.acc.ave.pth" --out_dir "${expdir}/l0" \
                2> "${expdir}/l0_train/export.log" | grep -v "Flash Attention" | sed 's/^/  /'
            cp "${expdir}/l0_train/train_seconds" "${expdir}/l0/train_seconds"
            touch "${expdir}/l0/.done"
        fi
    fi
    stage_end 6
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    stage_start 7 "Decoding: beam 5, maxlenratio 0.0, every model x every test subset"
    # The lean search (the CLI's default) computes the source K/V once per utterance for every
    # model, stock or gated. --src_kv_cache false matters only with --search espnet: the gated
    # decoders then recompute them at every step, as the stock one does (like for like).
    # One process per model (ESPnet's import costs more than a small subset), --nj processes at
    # a time with OMP_NUM_THREADS/nj threads each; fewer models than --nj: each model's subsets
    # are dealt out to --nj processes. Stage 9 times the models properly.
    nmodels=$(echo ${models} | wc -w); parts=1; [ ${nmodels} -lt ${nj} ] && parts=${nj}
    running=0
    for model in ${models}; do
        todo=()
        for tset in ${test_sets}; do
            [ -f "${expdir}/${model}/decode_${tset}/.done" ] || todo+=("${tset}")
        done
        [ ${#todo[@]} -gt 0 ] || continue
        stage_did_work=true
        for (( part = 0; part < parts && part < ${#todo[@]}; part++ )); do
            sets=""; for (( i = part; i < ${#todo[@]}; i += parts )); do sets="${sets} ${todo[i]}"; done
            dlog=${expdir}/${model}/decode.log; [ ${parts} -gt 1 ] && dlog=${expdir}/${model}/decode.${part}.log
            log "Decoding ${model} on${sets} (log: ${dlog})"
            (
                # shellcheck disable=SC2046,SC2086
                OMP_NUM_THREADS=${threads} MKL_NUM_THREADS=${threads} run ${python} scripts/decode.py \
                    --model_dir "${expdir}/${model}" --dump "${raw}" $(context_names ${model} | sed 's/^./--npy &/') \
                    ${sets} -- --config conf/decode_s2t.yaml --ngpu "${ngpu}" --beam_size 5 \
                    --maxlenratio 0.0 --src_kv_cache false > "${dlog}" 2>&1 || {
                    tail -n 30 "${dlog}"; log "decoding ${model} failed"; exit 1; }
                grep -h "^decoded " "${dlog}" | sed 's/^/  /'
            ) &
            running=$(( running + 1 ))
            if [ ${running} -ge ${nj} ]; then wait_all; running=0; fi
        done
    done
    wait_all
    stage_end 7
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    stage_start 8 "Scoring: BLEU/chrF (sacrebleu) for ST, WER/CER (jiwer) for ASR"
    for model in ${models}; do
        # shellcheck disable=SC2086
        run ${python} scripts/score.py --exp "${expdir}/${model}" --dump "${raw}" ${test_sets}
    done
    stage_end 8
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ] && [ "${preset}" != base ]; then
    stage_start 9 "Efficiency (GFLOPs, wall-clock; pruned vs full) and ${results}"
    eff=${expdir}/efficiency/test_deu_st_eng.json
    if [ ! -f "${eff}" ]; then
        mkdir -p "${expdir}/efficiency"
        model_opts=""
        for model in ${models}; do
            model_opts="${model_opts} --model ${model}=${expdir}/${model}/config.yaml:${expdir}/${model}/valid.acc.ave.pth"
        done
        # --espnet_reference: the full model once more with ESPnet's BatchBeamSearch (row full@espnet)
        # shellcheck disable=SC2086
        run ${python} -m espnet_ext.bin.profile ${model_opts} --reference full --espnet_reference \
            --data_dir "${raw}/test_deu_st_eng" --lang_sym deu --task_sym st_eng \
            --num_utts "${profile_num_utts}" --threads "${OMP_NUM_THREADS}" --warmup 1 \
            --repeats "${profile_repeats}" --beam_size 5 ${profile_opts:-} --out "${eff}"
    fi
    stage_end 9
    # Plots (PNG, ${expdir}/plots): quality vs measured GFLOPs of every model, and the gated
    # model's gate patterns per language, task, speaker and event (RESULTS.md shows them).
    # shellcheck disable=SC2086
    ${python} scripts/plot_tradeoff.py --exp "${expdir}" --models ${models} \
        --test_sets ${test_sets} --out "${expdir}/plots/tradeoff.png"
    # shellcheck disable=SC2086
    ${python} scripts/plot_gates.py --exp "${expdir}" --model gated --dump "${raw}" \
        --test_sets ${test_sets} --out_dir "${expdir}/plots" | sed 's/^/  /'
    # shellcheck disable=SC2086
    ${python} scripts/make_results.py --exp "${expdir}" --preset "${preset}" \
        --models ${models} --test_sets ${test_sets} --out "${results}" \
        $([ "${base}" = scratch ] || echo --base_scores "${token_dir}/scores.json" --base_name "$(basename "${base}")")
    log "Wrote ${results}"
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ] && [ "${preset}" = base ]; then
    stage_start 10 "Pack the base model (OWSM hub layout) -> ${base_out}"
    run ${python} local/pack_base.py --exp "${expdir}/base" --stats "${stats_file}" --out "${base_out}"
    stage_end 10
fi
log "Finished stages ${stage}-${stop_stage} (preset ${preset})"
