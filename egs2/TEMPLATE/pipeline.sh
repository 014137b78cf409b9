#!/usr/bin/env bash
# The shared recipe pipeline (as ESPnet's egs2/TEMPLATE/s2t1/s2t.sh; --task asr: as asr.sh):
# stages 1-10 of every recipe, run from the recipe's directory (path.sh, cmd.sh, local/data.sh, conf/):
#   1 data (local/data.sh --out <datadir> <local_data_opts>; validated)
#   2 audio (16 kHz check or conversion, segments, length filter; test split by language/task)
#   3 context embeddings (speaker, event), 4 the pre-trained model (or a new BPE), 5 stats,
#   6 training (the base model, the fine-tunes, the static baselines), 7 decoding, 8 scoring,
#   9 efficiency, gate patterns, RESULTS.md, 10 (--base_out) pack the base model pre-trained here.
# Each recipe's run.sh declares its own options, computes what they imply and calls it once,
# the options its user gave that run.sh does not declare last (the last value of an option wins):
#   "${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh" --models "full gated" ... "${pipeline_args[@]}"
# Every unit of work leaves a .done file (with the hash of its inputs where they can change): a
# rerun skips what is finished. Every command goes through `run` (or `run_job`), which records
# it in ${expdir}/commands.sh; a $(...) whose command fails stops the run (inherit_errexit).
# Sourced (`. pipeline.sh`: tests), it defines the functions and the
# defaults of the options the caller has not set, and runs nothing.
#
# Usage: cd egs2/<corpus>/s2t1 && "${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh" [--name value ...]
shopt -s inherit_errexit

# The options (--name value), with their defaults. Lists (models, sets, ...) are separated by
# spaces; the *_opts/*_args options are split into words once, here (report_args: one per line).
pipeline_options() {
    stage=1                     # first stage to run
    stop_stage=10               # last stage to run
    datadir=data                # Kaldi dirs of stage 1 (made absolute)
    dumpdir=dump                # formatted sets, embeddings: ${dumpdir}/raw (made absolute)
    expdir=exp                  # models, decodings, scores, commands.sh (made absolute)
    results=RESULTS.md          # the report stage 9 writes
    invocation=""               # the command line commands.sh records (run.sh's); empty: this one's
    python=python3              # the Python of every command
    nj=4                        # parallel processes: audio conversion
    ngpu=0                      # GPUs per node (0: CPU)
    num_nodes=1                 # > 1: multi-node training through espnet2.bin.launch (cluster backend)
    cmd_backend=${cmd_backend:-local}  # job backend (cmd.sh; or in the environment): local | slurm
    task=s2t                    # s2t (s2t_train/s2t_inference, texts <lang><task>...) | asr (asr_train/asr inference, plain transcripts)
    # stage 1
    local_data_opts=""          # options of local/data.sh (after --out ${datadir})
    data_inputs=""              # files or dirs local/data.sh reads: stage 1 is redone when they change
    langs=""                    # <lang> tokens stage 1 checks (scripts/validate_data_dir.py --langs; empty: any)
    tasks=""                    # <task> tokens stage 1 checks (--tasks; empty: any)
    # stage 2
    audio_format=any            # any (ffmpeg: any format and rate, segments) | 16k (16 kHz mono wav.scp, checked)
    length_config=""            # YAML with the audio length limits (speech_length); empty: the reference model's
    format_opts=""              # extra scripts/format_data.py options (e.g. --langs eng --tasks asr)
    skip_bad_utts=false         # leave out utterances format_data.py cannot use (dump/raw/<set>/bad_utts)
    sets="train dev test"       # Kaldi dirs formatted (with ${train_sets}) and given context embeddings
    split_sets=test             # sets split by language and task into <set>_<lang>_<task> (dev: --eval_set)
    # models and training
    owsm_model=espnet/owsm_v3.1_ebf  # pre-trained model: hub tag | dir (hub layout) | whisper:<name> | scratch
    models="full gated"         # full gated gated_lang gated_frame gated_spk gated_event zeroshot | base
    reference=full              # the model the others are compared with (stage 9; must be in --models)
    baselines=false             # + l0 and layerprune at the gated model's measured GFLOPs (6f-6h)
    config_prefix=conf/train_s2t_ebf_  # the conf set: model <m> trains from <prefix><m>.yaml (model_yaml)
    gated_config=""             # the gated model's YAML (its variants follow); empty: <prefix>gated.yaml
    base_config=""              # the YAML of model "base" (pre-trained here: --owsm_model scratch)
    base_init=""                # weights model "base" starts from (empty: random)
    base_dir=""                 # the pre-trained model's dir (config.yaml); empty: ${expdir}/owsm
    base_model=""               # weights the fine-tunes start from; empty: ${base_dir}/model.pth
    token_dir=""                # token list and BPE (stage 4); empty: ${base_dir}
    stats_dir=""                # stage 5's shapes and stats; empty: ${expdir}/s2t_stats
    nbpe=5000                   # --owsm_model scratch: the BPE size of stage 4
    specials=""                 # <lang>/<task> tokens of the data; empty: those of ${datadir}/{sets}/text
    train_sets=train            # sets the base model, event tagger and token list see
    base_set=pretrain           # --owsm_model scratch: the set model base trains on (6a)
    finetune_set=train          # the set the fine-tunes and baselines train on
    stat_sets=""                # sets stage 5 collects stats of; empty: ${train_sets}
    first_label=a               # letter of the first fine-tune in stage 6 (6a, 6b, ...)
    train_opts=""               # <task>_train options of every model and stage 5; empty: the pre-trained model's
    norm_opts=""                # training only: feature normalisation (stats of stage 5)
    s2t_args=""                 # appended to every training command (e.g. "--seed 1 --max_epoch 5")
    train_nj=1                  # models trained side by side (CPU runs)
    made_with=""                # how ${expdir}'s models are made: another setting is refused (empty: no check)
    # context
    spk_model=resemblyzer       # gated_spk's speaker encoder: resemblyzer | ecapa | ecapa:<dir>
    event_model=""              # gated_event's: beats:<BEATs .pt> | tagger:<.pt> | a tagger trained here
    event_tagger_dir=""         # set: stage 3 trains the event tagger there (on ${train_sets})
    tagger_clips_per_event=0    # its training clips per event (0: all)
    tagger_opts=""              # espnet_ext.bin.train_event_tagger options
    # decoding, scoring, report
    test_sets=""                # evaluation sets (<set>_<lang>_<task>); empty: those stage 2 made
    decode_config=conf/decode_s2t.yaml  # decoding YAML
    inference_args=""           # appended to every decoding command (e.g. "--beam_size 10")
    decode_parallel=1           # models decoded side by side
    inference_nj=1              # decoding jobs per set (split, then merged; as s2t.sh)
    inference_batch_size=1      # utterances per decoding pass
    wer_norm=ours               # WER/CER text: ours | raw (as is) | whisper_basic | whisper_english
    st_normalise=""             # scripts/score.py --st_normalise (empty: its default)
    score_opts=""               # extra scripts/score.py options
    profile_num_utts=20         # utterances profiled in stage 9
    profile_repeats=3           # timing repeats of each
    profile_opts=""             # extra espnet_ext.bin.profile options (e.g. --no_memory)
    tradeoff_plot=false         # true: stage 9 plots quality vs GFLOPs (${expdir}/plots/tradeoff.png)
    report_args=""              # scripts/report.py options, one word per line; empty: --data ${datadir}
    base_out=""                 # stage 10: pack the base model (--owsm_model scratch) here (local/pack_base.py)
}
option_names() { declare -f pipeline_options | sed -n 's/^ *\([a-z_0-9]*\)=.*/\1/p'; }
# The word lists of the string options, split once (report_args: at newlines only).
split_options() {
    local v
    for v in local_data_opts format_opts train_opts norm_opts s2t_args tagger_opts inference_args score_opts profile_opts; do
        read -r -d '' -a "${v}" <<< "${!v}" || true
    done
    if [ -n "${report_args}" ]; then mapfile -t report_args <<< "${report_args}"; else report_args=(); fi
}
pipeline_init() {  # after the command line is parsed (and cmd.sh sourced): the option checks
    if [ "${num_nodes}" -gt 1 ] && [ "${cmd_backend}" = local ]; then
        echo "--num_nodes ${num_nodes} needs a cluster: --cmd_backend slurm (cmd.sh); local runs one node" >&2
        exit 1
    fi
}

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
die() {  # the error, where it was raised, on stderr (seen also from inside $(...)); exit 1
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
    exit 1
}

stage_in() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }
run_stage() {  # run_stage K "what" <command...>: a stage whose body is one command
    stage_in "$1" || return 0
    stage_start "$1" "$2"
    "${@:3}"
    stage_end "$1"
}
stage_did_work=false
# ${expdir}/commands.sh: the commands of every run.sh invocation, one block each: a header
# (the date, and the command line as "cd <where it ran> && <run.sh ...>"), the newest marked
# "(last run)", then what `run`/`run_job` ran, closed by the invocation's exit status. A rerun
# skips finished work, so the results can rest on commands of earlier blocks.
begin_commands() {  # begin_commands "cd <dir> && <command line, quoted>": opens a block
    local f=${expdir}/commands.sh n=1
    if [ -s "${f}" ]; then
        n=$(( $(grep -c '^# ===== run.sh invocation ' "${f}" || true) + 1 ))
        if [ ${n} -eq 1 ]; then  # recorded before invocations had blocks
            sed -i '1i # ===== earlier runs (before run.sh recorded its invocations)' "${f}"
        fi
        sed -i 's/^\(# ===== run.sh invocation [0-9]*\) (last run),/\1,/' "${f}"
    fi
    printf '# ===== run.sh invocation %d (last run), %s: %s\n' "${n}" "$(date '+%Y-%m-%dT%H:%M:%S')" "$1" >> "${f}"
    commands_block=${n}
    trap 'end_commands $?' EXIT
}
end_commands() {  # closes the block of begin_commands with the exit status
    local how="finished"
    [ "$1" -eq 0 ] || how="failed (exit status $1)"
    echo "# ===== end of invocation ${commands_block}: ${how}" >> "${expdir}/commands.sh"
}
run() {  # records the command in ${expdir}/commands.sh (RESULTS.md cites them), then runs it
    printf '%q ' "$@" | sed 's/ $/\n/' >> "${expdir}/commands.sh"
    stage_did_work=true
    "$@"
}
run_job() {  # run_job "<backend command> [<its options>]" <log> <command...>: as run (the command
    # alone recorded), but run as a job of the backend (cmd.sh), its output appended to <log>
    local backend=$1 log=$2
    shift 2
    printf '%q ' "$@" | sed 's/ $/\n/' >> "${expdir}/commands.sh"
    stage_did_work=true
    # shellcheck disable=SC2086
    ${backend} "${log}" "$@"
}
stage_start() {  # stage_start K "what"
    log "Stage $1: $2"
    stage_t0=$(date +%s)
    stage_did_work=false
}
stage_end() {  # records the wall time of a stage that did any work (${expdir}/stage_times/K)
    local secs=$(( $(date +%s) - stage_t0 ))
    if ${stage_did_work}; then
        mkdir -p "${expdir}/stage_times"
        echo "${secs}" > "${expdir}/stage_times/$1"
        log "Stage $1 done in ${secs} s"
    else
        log "Stage $1: nothing to do (finished before)"
    fi
}

# The one up-to-date check: a unit of work is finished when its .done file exists and, for a
# unit whose inputs can change (options, configs, input tables, the script), holds the hash of
# those inputs: a rerun with the same inputs skips the unit, changed inputs redo it.
inputs_hash() {  # inputs_hash <file or literal>...: md5 of the files' contents and the literals
    local x
    for x in "$@"; do if [ -f "${x}" ]; then cat "${x}"; else echo "${x}"; fi; done \
        | md5sum | cut -d' ' -f1
}
dir_md5() {  # dir_md5 <dir>: md5 of the content of every file below it
    find "$1" -type f -printf '%P\n' | LC_ALL=C sort | (cd "$1" && xargs -d '\n' md5sum) \
        | md5sum | cut -d' ' -f1
}
audio_stamp() {  # audio_stamp <wav.scp>: path, size and mtime of each audio file (pipes: none)
    cut -d' ' -f2- "$1" | grep -v '|$' | sort -u \
        | xargs -r -d '\n' stat -c '%n %s %Y' 2>/dev/null || true
}
next_letter() { echo "$1" | tr 'a-y' 'b-z'; }  # stage labels: 6a, 6b, ...
is_done() {  # is_done <.done file> [<hash>]: the file exists (and holds <hash>, when given)
    [ -f "$1" ] || return 1
    [ $# -lt 2 ] || [ "$(cat "$1")" = "$2" ]
}
mark_done() {  # mark_done <.done file> [<hash>]: the unit is finished (with these inputs)
    if [ $# -ge 2 ]; then echo "$2" > "$1"; else touch "$1"; fi
}
# Background jobs: start one with `<command> & spawned`; wait_all waits on the PIDs recorded
# that way. (`jobs -p` would miss a job that already finished, and its failure with it: bash
# drops a finished job from its job table, but `wait <pid>` still returns its exit status.)
bg_pids=()
spawned() { bg_pids+=("$!"); }  # right after `... &`: records that job's PID
wait_all() {  # waits for every job recorded by spawned (and any other still running); fails if one failed
    local pid rc=0
    for pid in ${bg_pids[@]+"${bg_pids[@]}"}; do wait "${pid}" || rc=1; done
    bg_pids=()
    for pid in $(jobs -p); do wait "${pid}" || rc=1; done  # a job started without spawned
    [ ${rc} -eq 0 ] || die "a background job failed"
}

make_dirs() {  # make_dirs <variable>...: creates each dir and makes the variable its absolute path
    local v
    for v in "$@"; do
        mkdir -p "${!v}"
        printf -v "${v}" '%s' "$(cd "${!v}" && pwd)"
    done
}
share_threads() {  # share_threads <jobs>: threads = OMP_NUM_THREADS / jobs torch threads each (>= 1)
    threads=$(( OMP_NUM_THREADS / $1 )); [ ${threads} -ge 1 ] || threads=1
}
check_event_model() {  # gated_event in --models needs --event_model
    if need_context event && [ -z "${event_model}" ]; then
        die "gated_event needs --event_model (beats:<BEATs checkpoint> or tagger:<event tagger .pt>)"
    fi
}
check_expdir() {  # check_expdir "<how it is made>": an exp dir holds one setting's models
    if [ -f "${expdir}/.made_with" ] && [ "$(cat "${expdir}/.made_with")" != "$1" ]; then
        die "${expdir} was made with $(cat "${expdir}/.made_with"), not $1; use another --expdir"
    fi
    echo "$1" > "${expdir}/.made_with"
}
add_baselines() {  # --baselines true: + l0 and layerprune, at the gated model's measured budget
    case ${baselines} in
        true) [[ " ${models} " = *" gated "* ]] || die "--baselines true needs gated in --models (their budget)"
              models="${models} l0 layerprune" ;;
        false) ;;
        *) die "--baselines must be true or false, got ${baselines}" ;;
    esac
}
check_models() {  # check_models [<allowed...>]: ${models} only holds those (none given: models
    # with a YAML in the conf set, ${config_prefix}<model>.yaml), and full
    local m
    for m in ${models}; do
        if [ $# -gt 0 ]; then
            [[ " $* " = *" ${m} "* ]] || die "--models: unknown ${m} ($*)"
        elif [ "${m}" != zeroshot ]; then  # zeroshot: the pre-trained model as it is, no YAML
            [ -f "$(model_yaml "${m}")" ] || die "--models: unknown ${m} (no $(model_yaml "${m}"))"
            model_config "${m}" > /dev/null  # a variant's model too
        fi
    done
    [[ " ${models} " = *" ${reference} "* ]] || die "--models must include ${reference} (--reference: the model the others are compared with)"
}

# Data options of <task>_train for a set, as s2t.sh stages 10/11 pass them: the four S2T
# tables, the shape files (collect_stats: the key list), the npy context inputs. With
# --task asr (asr_train, as asr.sh): wav.scp and text, the key list wav.scp.
data_opts() {  # data_opts <mode: train|valid> <dir> [<shape dir>] [npy names...]
    local mode=$1 dir=$2 shapes=${3:-} name keys=speech_shape
    local tables=(wav.scp,speech,sound text.prev,text_prev,text text.ctc,text_ctc,text text,text,text)
    local shape_files=(speech_shape text_shape.bpe text_prev_shape.bpe text_ctc_shape.bpe)
    if [ "${task}" = asr ]; then
        tables=(wav.scp,speech,sound text,text,text); shape_files=(speech_shape text_shape.bpe); keys=wav.scp
    fi
    for name in "${tables[@]}"; do echo "--${mode}_data_path_and_name_and_type ${dir}/${name}"; done
    if [ -n "${shapes}" ]; then
        for name in "${shape_files[@]}"; do echo "--${mode}_shape_file ${shapes}/${name}"; done
    else
        echo "--${mode}_shape_file ${dir}/${keys}"
    fi
    for name in "${@:4}"; do
        echo "--${mode}_data_path_and_name_and_type ${dir}/${name}.scp,${name},npy"
    done
}

# Stage 2: one Kaldi dir -> ${raw}/<set> (16 kHz mono check, length filter, speech_shape;
# test sets also split into test_<lang>_<task>), validated.
format_set() {  # format_set <kaldi dir> <set> <config: audio length limits> [format_data opts]
    local src=$1 dset=$2 config=$3 hash check=()
    hash=$(inputs_hash "${*:4}" "${config}" "${MAIN_ROOT}/scripts/format_data.py" \
        "${src}"/{wav.scp,text,text.ctc,text.prev,utt2spk,utt2lang,utt2task} \
        "$(audio_stamp "${src}/wav.scp")")
    is_done "${raw}/${dset}/.done" "${hash}" && return 0
    run ${python} "${MAIN_ROOT}/scripts/format_data.py" --data_dir "${src}" \
        --out "${raw}/${dset}" --config "${config}" "${@:4}"
    set -- "${@:4}"
    while [ $# -gt 0 ]; do  # the options of format_data.py that validate_data_dir.py takes too
        case $1 in --asr) check+=("$1") ;; --langs|--tasks) check+=("$1" "$2"); shift ;; esac
        shift
    done
    # shellcheck disable=SC2046
    run ${python} "${MAIN_ROOT}/scripts/validate_data_dir.py" --config "${config}" ${check[@]+"${check[@]}"} \
        "${raw}/${dset}" $(ls -d "${raw}/${dset}"_*_* 2>/dev/null)
    mark_done "${raw}/${dset}/.done" "${hash}"
}

# Stage 2 for audio in any format ffmpeg reads (long recordings + segments, other rates,
# stereo): decoded, down-mixed, resampled to 16 kHz and cut (${raw}/org/<set>), then format_set.
prepare_audio() {  # prepare_audio <kaldi dir> <set> <config> [format_data opts]
    local src=$1 dset=$2 hash
    hash=$(inputs_hash "${MAIN_ROOT}/scripts/segment_audio.py" "${src}"/{wav.scp,segments,text,utt2spk} \
        "$(audio_stamp "${src}/wav.scp")")
    if ! is_done "${raw}/org/${dset}/.done" "${hash}"; then
        run ${python} "${MAIN_ROOT}/scripts/segment_audio.py" --data_dir "${src}" \
            --out "${raw}/org/${dset}" --audio_dir "${dumpdir}/audio/${dset}" --nj "${nj}"
        mark_done "${raw}/org/${dset}/.done" "${hash}"
    fi
    format_set "${raw}/org/${dset}" "${dset}" "${@:3}"
}

# Stage 3: speaker or event embeddings (one npy per recording) of the given sets and subsets.
extract_context() {  # extract_context <speaker|event> <extractor> <set dir...> -- <subset dir...>
    local kind=$1 model=$2 dirs=() subsets=() hash d
    shift 2
    while [ $# -gt 0 ] && [ "$1" != -- ]; do dirs+=("$1"); shift; done
    [ $# -gt 0 ] && shift && subsets=("$@")
    hash=$(inputs_hash "${model}" "$([ -f "${model}" ] && md5sum < "${model}")" \
        $(for d in "${dirs[@]}"; do echo "${d}/wav.scp"; done))
    is_done "${raw}/.done_${kind}" "${hash}" && return 0
    log "Extracting ${kind} embeddings (${model}) for ${dirs[*]##*/} (one per recording)"
    # One torch thread: these small models (batch 1, LSTM/CNN) ran 3x faster on 1 thread
    # than on 2 on the 2-core machine.
    run ${python} "${MAIN_ROOT}/scripts/context.py" extract --kind "${kind}" --model "${model}" \
        --num_threads 1 "${dirs[@]}" --subsets "${subsets[@]}"
    mark_done "${raw}/.done_${kind}" "${hash}"
}
# Stage 3 (--event_tagger_dir): a small event tagger, trained on the event labels (utt2event)
# of <set dirs>, at most <max> recordings per event (0: all), with the options ${tagger_opts[@]}.
train_tagger() {  # train_tagger <out dir> <max> <set dir...>
    local out=$1 max=$2
    is_done "${out}/.done" && return 0
    log "Training the event tagger on ${*:3} (<= ${max} recordings per event)"
    run ${python} "${MAIN_ROOT}/scripts/context.py" recordings --out "${out}/data" \
        --max_per_event "${max}" "${@:3}"
    run ${python} -m espnet_ext.bin.train_event_tagger --data_dir "${out}/data" \
        --out "${out}/tagger.pth" --num_threads 1 "${tagger_opts[@]}"
    mark_done "${out}/.done"
}
need_context() {  # need_context <speaker|event>: a model of ${models} reads it (context_names)
    local m names npy=spk_embed
    [ "$1" = event ] && npy=event_embed
    for m in ${models}; do
        [ "${m}" = zeroshot ] && continue  # the pre-trained model as it is: no YAML
        names=$(context_names "${m}") || exit 1
        [[ " ${names//$'\n'/ } " = *" ${npy} "* ]] && return 0
    done
    return 1
}

# Stage 4: a pre-trained model in OWSM's hub layout (hub tag or local dir) -> <out>: its
# BPE, token list, stats, weights, and train_opts that reuse them; refused when the recipe's
# special tokens or the fine-tuning YAML's architecture do not fit it.
prepare_base() {  # prepare_base <model> <out> <fine-tuning yaml> <special tokens>
    local model=$1 out=$2 config=$3 specials=$4 hash f
    hash=$(inputs_hash "${model}" "$([ -d "${model}" ] && dir_md5 "${model}")" "${config}" \
        "${specials}" "${MAIN_ROOT}/scripts/owsm_model.py")
    is_done "${out}/.done" "${hash}" && return 0
    run ${python} "${MAIN_ROOT}/scripts/owsm_model.py" --model "${model}" \
        --out "${out}" --config "${config}" --specials "${specials}"
    for f in scores.json train_seconds; do  # what the base model scored and cost, if it says
        if [ -d "${model}" ] && [ -f "${model}/${f}" ]; then cp "${model}/${f}" "${out}/${f}"; fi
    done
    mark_done "${out}/.done" "${hash}"
}

# Stage 4 (a model pre-trained from scratch): a unigram BPE with OWSM's special tokens (ASR: none).
make_token_list() {  # make_token_list <out> <vocab size> <set dir...>
    local out=$1 hash
    hash=$(inputs_hash "$2" $(for d in "${@:3}"; do echo "${d}/text" "${d}/text.ctc"; done))
    is_done "${out}/.done" "${hash}" && return 0
    run ${python} "${MAIN_ROOT}/scripts/make_token_list.py" ${asr_data[@]+"${asr_data[@]}"} --vocab_size "$2" \
        --out "${out}" "${@:3}"
    mark_done "${out}/.done" "${hash}"
}

# Stage 5: shapes (and feats_stats.npz) of a training set -> <out>/{train,valid}.
collect_stats() {  # collect_stats <config> <train dir> <valid dir> <out> <token list>
    local config=$1 train=$2 valid=$3 out=$4 ntok mode f
    is_done "${out}/.done" && return 0
    ntok=$(wc -l < "$5")
    log "collect_stats: ${train##*/} (valid: ${valid##*/}) -> ${out} (log: ${out}.log)"
    stage_did_work=true
    mkdir -p "$(dirname "${out}")"
    # shellcheck disable=SC2046
    run ${python} -m "espnet_ext.bin.${task}_train" --collect_stats true --ngpu 0 \
        --config "${config}" "${train_opts[@]}" --output_dir "${out}" \
        $(data_opts train "${train}") $(data_opts valid "${valid}") \
        > "${out}.log" 2>&1 || { tail -n 30 "${out}.log"; return 1; }
    for mode in train valid; do  # as s2t.sh stage 10: token shapes get the vocab size
        for f in text $([ "${task}" = asr ] || echo text_prev text_ctc); do
            awk -v N="${ntok}" '{ print $0 "," N }' "${out}/${mode}/${f}_shape" \
                > "${out}/${mode}/${f}_shape.bpe"
        done
    done
    # ESPnet's unsorted sampler batches consecutive keys (one talk, one speaker): mix them
    run ${python} "${MAIN_ROOT}/scripts/shuffle_keys.py" "${out}/train/speech_shape"
    mark_done "${out}/.done"
}

# Stage 6: every model trains from one YAML of the recipe's conf set named after it,
# ${config_prefix}<model>.yaml (base: ${base_config}; l0_train trains l0): a full ESPnet config,
# or a variant, `variant_of: <model>` and the keys it changes, given to <task>_train as overrides
# of that model's config (conf/tuning/, docs/design.md). scripts/model_yaml.py reads them: the
# npy inputs come from the gate_context, a null <spk|event>_embed_dim from stage 3's embeddings.
model_yaml() {  # model_yaml <model>: its file
    case $1 in base) echo "${base_config}" ;; *) echo "${config_prefix}${1%_train}.yaml" ;; esac
}
variant_of() {  # variant_of <yaml>: the model a variant changes (nothing: a full config)
    sed -nE "s/^variant_of:[[:space:]]*([A-Za-z0-9_]+)[[:space:]]*(#.*)?$/\1/p" "$1"
}
model_config() {  # model_config <model>: the YAML given to --config (a variant's: its model's)
    local yaml of
    yaml=$(model_yaml "$1")
    [ -f "${yaml}" ] || die "no ${yaml}: the YAML of model $1 (a full ESPnet config, or variant_of: <model> and its changes)"
    of=$(variant_of "${yaml}")
    [ -n "${of}" ] || { echo "${yaml}"; return 0; }
    # a variant changes a full config: one of a variant would lose that variant's keys (or loop)
    [ -z "$(variant_of "$(model_yaml "${of}")" 2>/dev/null)" ] || die "${yaml}: variant_of ${of}, itself a variant: name the model ${of} varies"
    model_config "${of}"
}
model_yaml_py() {  # model_yaml_py <inputs|options|model> <model> [<options>]: scripts/model_yaml.py on its YAMLs
    local yaml config variant=()
    yaml=$(model_yaml "$2") && config=$(model_config "$2") || return 1
    [ -z "$(variant_of "${yaml}")" ] || variant=(--variant "${yaml}")
    ${python} "${MAIN_ROOT}/scripts/model_yaml.py" "$1" "${config}" ${variant[@]+"${variant[@]}"} "${@:3}"
}
context_names() { model_yaml_py inputs "$1"; }  # the npy inputs a model reads
trained_gated() { grep -qx 'model: espnet_gated' "${expdir}/$1/config.yaml" 2>/dev/null; }  # a gated model in ${expdir}
context_opts() {  # a model's <task>_train options on top of --config: its variant's changes, embedding sizes
    model_yaml_py options "$1" --embed_dir "${raw}/${finetune_set}"
}
model_init() {  # model_init <model>: the weights it starts from: base ${base_init} (none: random),
    # the others the pre-trained model (an init computed in the run comes with train_model's options)
    if [ "$1" = base ]; then echo ${base_init:+--init_param "${base_init}"}; else echo "--init_param ${base_model}"; fi
}

# Stage 6: one model, trained on <set> (default ${finetune_set}; stats: ${stats_dir}/<set>), valid on
# dev; resumes.
# <options>: what the run computed for it (train_baselines: l0's FLOPs target; layerprune's
# layers and --init_param), after its YAML's.
train_model() {  # train_model <model> <stage label, e.g. 6b> <torch threads> [<set> [<options>...]]
    local model=$1 label=$2 threads=$3 dset=${4:-${finetune_set}} out=${expdir}/$1 names config init ctx cls opts=() extra=()
    names=$(context_names "${model}") && config=$(model_config "${model}") && ctx=$(context_opts "${model}") \
        && init=$(model_init "${model}") && cls=$(model_yaml_py model "${model}") || return 1
    [[ " ${*:5} " = *" --init_param "* ]] && init=""  # computed: instead of the pre-trained model
    # the options of <task>_train (and of check_init, which builds the same model)
    # shellcheck disable=SC2206
    opts=(--config "${config}" "${train_opts[@]}" "${norm_opts[@]}" ${init} ${ctx} "${@:5}")
    [ -n "${names}" ] && opts+=(--allow_variable_data_keys true)
    # shellcheck disable=SC2046,SC2086
    opts+=(--output_dir "${out}" --resume true
           $(data_opts train "${raw}/${dset}" "${stats_dir}/${dset}/train" ${names})
           $(data_opts valid "${raw}/dev" "${stats_dir}/${dset}/valid" ${names}))
    extra=("${s2t_args[@]}")  # --s2t_args: last, so they win (ESPnet's parser keeps the last value)
    mkdir -p "${out}"
    # A model that starts from the pre-trained weights has no new parameter but its gates (L0's
    # masks are new too: espnet_l0 is not checked).
    if [ "${init}" = "--init_param ${base_model}" ] && [ "${cls}" != espnet_l0 ]; then
        log "Stage ${label}: checking that the pre-trained model initialises ${model} (only gate parameters new)"
        # shellcheck disable=SC2086
        rm -f "${out}/check_init.log"
        run_job "${train_cmd} --gpu 0" "${out}/check_init.log" ${python} "${MAIN_ROOT}/scripts/check_init.py" \
            --task "${task}" --init "${base_model}" -- "${opts[@]}" ${extra[@]+"${extra[@]}"} || { cat "${out}/check_init.log"; return 1; }
        grep "(check_init)" "${out}/check_init.log" | sed 's/^.*INFO: /  /'
    fi
    log "Stage ${label}: training ${model} on ${dset}, ngpu ${ngpu}, ${threads} thread(s) (log: ${out}/train.log)"
    local launcher=()
    if [ "${ngpu}" -gt 1 ] || [ "${num_nodes}" -gt 1 ]; then
        # ESPnet's launcher: one job through ${cuda_cmd} (--gpu ${ngpu}) with one DDP worker per
        # GPU, or a multi-node job (slurm.pl: srun, one task per node).
        launcher=(${python} -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${model}"
                  --log "${out}/train.log" --ngpu "${ngpu}" --num_nodes "${num_nodes}"
                  --init_file_prefix "${out}/.dist_init_" --multiprocessing_distributed true --)
    elif [ "${cmd_backend}" != local ]; then
        # one process: a job of ${ngpu} GPU(s) (run.pl appends to train.log as a resumed run does)
        launcher=(${cuda_cmd} --gpu "${ngpu}" --num_threads "${threads}" --name "${model}" "${out}/train.log"
                  env OMP_NUM_THREADS="${threads}" MKL_NUM_THREADS="${threads}")
    fi
    # Progress: one line per epoch; the whole log is in ${out}/train.log (appended: a resumed
    # training keeps the earlier epochs' lines; through ESPnet's launcher a resumed run's log
    # is a fresh train.log, the earlier ones renamed train.1.log, train.2.log, ...).
    # MKL_NUM_THREADS too: with both set, torch follows it (path.sh exports both).
    # shellcheck disable=SC2086
    if [ ${#launcher[@]} -gt 0 ]; then
        run "${launcher[@]}" ${python} -m "espnet_ext.bin.${task}_train" "${opts[@]}" --ngpu "${ngpu}" ${extra[@]+"${extra[@]}"} \
            || { tail -n 30 "${out}/train.log"; log "training ${model} failed"; return 1; }
        grep "epoch results" "${out}/train.log" | sed -E "s/^.*INFO: (.{0,200}).*$/  ${model} \1/" || true
    elif ! OMP_NUM_THREADS=${threads} MKL_NUM_THREADS=${threads} run ${python} -m "espnet_ext.bin.${task}_train" \
            "${opts[@]}" --ngpu "${ngpu}" ${extra[@]+"${extra[@]}"} 2>&1 | tee -a "${out}/train.log" \
            | { grep --line-buffered "epoch results" \
                | sed -u -E "s/^.*INFO: (.{0,200}).*$/  ${model} \1/" || true; }; then
        tail -n 30 "${out}/train.log"; log "training ${model} failed"; return 1
    fi
    [ -e "${out}/valid.acc.ave.pth" ] || { tail -n 30 "${out}/train.log"; log "no ${out}/valid.acc.ave.pth"; return 1; }
    # the epochs' own time: a resumed run adds its epochs to the earlier runs' ones (read from
    # train.log and, after ESPnet's launcher, the renamed train.<N>.log of the earlier runs)
    run ${python} "${MAIN_ROOT}/scripts/train_seconds.py" "${out}/train.log" > "${out}/train_seconds"
    mark_done "${out}/.done"
}

# Stage 6: the fine-tunes of ${models} not trained yet, ${train_nj} at a time, labelled
# 6<first>, 6<first+1>, ... in the order of ${models}; the last of an odd number trains
# alone with all the threads. The baselines (l0, layerprune) come after: train_baselines.
train_models() {  # train_models <first label letter>
    local label=$1 todo=() running=0 i n model
    for model in ${models}; do
        case ${model} in base|l0|layerprune|zeroshot) continue ;; esac  # stage 6a, exported, or not trained
        is_done "${expdir}/${model}/.done" || todo+=("${model}:6${label}")
        label=$(next_letter "${label}")
    done
    for (( i = 0; i < ${#todo[@]}; i++ )); do
        stage_did_work=true
        n=${threads}
        [ $(( i + 1 )) -eq ${#todo[@]} ] && [ ${running} -eq 0 ] && n=$(( threads * train_nj ))
        train_model "${todo[i]%:*}" "${todo[i]#*:}" ${n} & spawned
        running=$(( running + 1 ))
        if [ ${running} -ge ${train_nj} ]; then wait_all; running=0; fi
    done
    wait_all
}

# Stage 6, static pruning baselines at the gated model's measured FLOPs (docs/baselines.md):
# the FLOPs target (gated / full GFLOPs on dev), L0 masks with a Lagrangian (l0_train, then
# exported to a stock ESPnet model in l0), and layer pruning by convexity (layerprune).
train_baselines() {  # train_baselines <label letter of the target, e.g. f: 6f target, 6g L0, 6h layers>
    local target=${expdir}/baseline_target init=${expdir}/layerprune_init lt=$1 l0l lpl fraction keep
    l0l=$(next_letter "${lt}"); lpl=$(next_letter "${l0l}")
    if ! is_done "${target}"; then  # written last (mv): it is its own .done
        stage_did_work=true
        log "Stage 6${lt}: FLOPs target of the baselines = gated / full GFLOPs, measured on dev"
        run ${python} -m espnet_ext.bin.match_flops --reference "${expdir}/full" \
            --model "${expdir}/gated" --data_dir "${raw}/dev" --num_utts "${profile_num_utts}" \
            --out "${target}.json" --fraction_out "${target}.tmp" > "${target}.log" 2>&1 \
            || { tail -n 30 "${target}.log"; return 1; }
        mv "${target}.tmp" "${target}"
    fi
    fraction=$(cat "${target}")
    log "  baselines' FLOPs target: ${fraction} of the full model (${target}.json)"
    if ! is_done "${init}/.done"; then
        stage_did_work=true
        mkdir -p "${init}"
        log "Stage 6${lpl}: per-layer convexity of the pre-trained model on dev, layers to keep -> ${init}"
        run ${python} -m espnet_ext.bin.convexity --config "${base_dir}/config.yaml" \
            --model_file "${base_model}" --data_dir "${raw}/dev" \
            --max_tokens 2000 --out "${init}/convexity.json" > "${init}/convexity.txt" \
            2> "${init}/convexity.log" || { tail -n 30 "${init}/convexity.log"; return 1; }
        grep -v "Flash Attention" "${init}/convexity.txt" | sed 's/^/  /'
        run ${python} -m espnet_ext.bin.layer_prune --config "${base_dir}/config.yaml" \
            --model_file "${base_model}" --convexity "${init}/convexity.json" \
            --target_fraction "${fraction}" --out_dir "${init}" 2> "${init}/layer_prune.log" \
            | grep -v "Flash Attention" | sed 's/^/  /'
        mark_done "${init}/.done"
    fi
    # side by side, each with what was computed for it: L0's FLOPs target; the layers kept
    # (train_opts: num_blocks) and their weights
    keep=$(cat "${init}/train_opts")
    if ! is_done "${expdir}/l0_train/.done"; then
        stage_did_work=true
        train_model l0_train "6${l0l}" "${threads}" "${finetune_set}" --model_conf "target_flops=${fraction}" & spawned
    fi
    if ! is_done "${expdir}/layerprune/.done"; then
        stage_did_work=true
        # shellcheck disable=SC2086
        train_model layerprune "6${lpl}" "${threads}" "${finetune_set}" --init_param "${init}/model.pth" ${keep} & spawned
    fi
    wait_all
    if ! is_done "${expdir}/l0/.done"; then
        stage_did_work=true
        log "Stage 6${l0l}: removing the pruned units -> stock ESPnet model in ${expdir}/l0"
        run ${python} -m espnet_ext.bin.l0_export --config "${expdir}/l0_train/config.yaml" \
            --model_file "${expdir}/l0_train/valid.acc.ave.pth" --out_dir "${expdir}/l0" \
            2> "${expdir}/l0_train/export.log" | grep -v "Flash Attention" | sed 's/^/  /'
        cp "${expdir}/l0_train/train_seconds" "${expdir}/l0/train_seconds"
        mark_done "${expdir}/l0/.done"
    fi
}

# Stage 7: every model x every set of ${test_sets} not decoded yet (decode_<set>/.done):
# S2T beam 5, maxlenratio 0 (ASR: the search of ${decode_config}). One process per model (ESPnet's import costs more than a small
# set), ${decode_parallel} at a time with ${threads} threads each; with fewer models than
# that, each model's sets are dealt out to ${decode_parallel} processes. Each set is split
# into ${inference_nj} jobs (GPUs: job j on the ((j-1) mod #GPUs)-th GPU of CUDA_VISIBLE_DEVICES,
# or of all GPUs when it is unset), each resumable, then merged.
# Job backend: decode.py runs as a job of ${cuda_cmd} (--gpu 1; --ngpu 0: ${decode_cmd},
# --gpu 0), its output in the log; under a cluster backend with --inference_nj > 1 it runs here
# instead and submits each set's jobs (one GPU each; the scheduler picks it) through that command.
# The lean search (the CLI's default) computes the source K/V once per utterance for every
# model, stock or gated. --src_kv_cache false matters only with --search espnet: the gated
# decoders then recompute them at every step, as the stock one does (like for like).
decode_models() {
    local nmodels parts=1 running=0 model tset todo part sets i dlog dcmd=${decode_cmd} gpu=0 job submit runner npy search=()
    nmodels=$(echo ${models} | wc -w)
    [ "${ngpu}" -gt 0 ] && { dcmd=${cuda_cmd}; gpu=1; }
    if [ "${cmd_backend}" != local ] && [ "${inference_nj}" -gt 1 ]; then
        job=(); submit=(--cmd "${dcmd} --num_threads ${threads}")
    else
        job=(${dcmd} --gpu ${gpu} --num_threads ${threads}); submit=()
    fi
    [ "${nmodels}" -lt "${decode_parallel}" ] && parts=${decode_parallel}
    [ "${task}" = asr ] || search=(--beam_size 5 --maxlenratio 0.0 --batch_size "${inference_batch_size}" --src_kv_cache false)
    for model in ${models}; do
        todo=()
        for tset in ${test_sets}; do
            is_done "${expdir}/${model}/decode_${tset}/.done" || todo+=("${tset}")
        done
        [ ${#todo[@]} -gt 0 ] || continue
        # the npy inputs the trained model reads (its config.yaml; zeroshot, l0: none)
        npy=$(${python} "${MAIN_ROOT}/scripts/model_yaml.py" inputs "${expdir}/${model}/config.yaml" | sed 's/^/--npy /')
        stage_did_work=true
        for (( part = 0; part < parts && part < ${#todo[@]}; part++ )); do
            sets=""; for (( i = part; i < ${#todo[@]}; i += parts )); do sets="${sets} ${todo[i]}"; done
            dlog=${expdir}/${model}/decode.log; [ ${parts} -gt 1 ] && dlog=${expdir}/${model}/decode.${part}.log
            log "Decoding ${model} on${sets} (log: ${dlog})"
            (
                rm -f "${dlog}"
                runner=(run); [ ${#job[@]} -gt 0 ] && runner=(run_job "${job[*]}" "${dlog}")
                # shellcheck disable=SC2046,SC2086
                OMP_NUM_THREADS=${threads} MKL_NUM_THREADS=${threads} "${runner[@]}" \
                    ${python} "${MAIN_ROOT}/scripts/decode.py" --task "${task}" ${submit[@]+"${submit[@]}"} \
                    --model_dir "${expdir}/${model}" --dump "${raw}" --nj "${inference_nj}" \
                    ${npy} ${sets} -- --config "${decode_config}" --ngpu "${gpu}" \
                    ${search[@]+"${search[@]}"} "${inference_args[@]}" >> "${dlog}" 2>&1 || { tail -n 30 "${dlog}"; log "decoding ${model} failed"; exit 1; }
                grep -h "^decoded " "${dlog}" | sed 's/^/  /'
            ) & spawned
            running=$(( running + 1 ))
            if [ ${running} -ge ${decode_parallel} ]; then wait_all; running=0; fi
        done
    done
    wait_all
}

# --wer_norm: the text WER/CER are computed on (scripts/score.py, espnet_ext/wer_norm.py): ours
# (lower case, no punctuation), raw (ESPnet's s2t.sh: text as is), whisper_basic,
# whisper_english (openai-whisper's normalisers; non-English sets: whisper_basic).
check_wer_norm() {
    case ${wer_norm} in ours|raw|whisper_basic|whisper_english) ;;
        *) die "--wer_norm ${wer_norm}: ours, raw, whisper_basic or whisper_english" ;; esac
}

# Stage 8: scores.json of every model, unless scored with the same ${score_opts} (--wer_norm,
# --st_normalise), ${test_sets} and decodings (their .done files' times) before (scores.opts).
score_models() {
    local model scores hash decoded
    for model in ${models}; do
        scores=${expdir}/${model}/scores.json
        decoded=$(find "${expdir}/${model}" -path '*/decode_*/.done' -printf '%p %T@\n' | LC_ALL=C sort)
        hash=$(inputs_hash "${score_opts[*]} ${test_sets}" "${decoded}")
        [ -f "${scores}" ] && is_done "${expdir}/${model}/scores.opts" "${hash}" && continue
        # shellcheck disable=SC2086
        run ${python} "${MAIN_ROOT}/scripts/score.py" --task "${task}" --exp "${expdir}/${model}" \
            --dump "${raw}" "${score_opts[@]}" ${test_sets}
        mark_done "${expdir}/${model}/scores.opts" "${hash}"
    done
}

# Stage 9: GFLOPs and wall-clock of every model on <set> (one JSON, redone when the set of
# ${models} changed: <out>.done); the row full@espnet is the full model once more with ESPnet's
# BatchBeamSearch.
profile_models() {  # profile_models <set> <lang> <task> <out json>
    local eff=$4 opts=() model device=cpu hash
    hash=$(inputs_hash "$(printf '%s\n' ${models} | LC_ALL=C sort -u)")
    [ -f "${eff}" ] && is_done "${eff%.json}.done" "${hash}" && return 0
    if [ -f "${eff}" ]; then
        log "Stage 9: ${eff} profiled other models than '${models}': profiling again"
        rm "${eff}"
    fi
    mkdir -p "$(dirname "${eff}")"
    for model in ${models}; do
        opts+=(--model "${model}=${expdir}/${model}/config.yaml:${expdir}/${model}/valid.acc.ave.pth")
    done
    [ "${ngpu}" -gt 0 ] && device=cuda
    # a job of the backend: ${cuda_cmd} --gpu 1 on a GPU node, else ${decode_cmd}; log <out>.log
    local job="${decode_cmd} --gpu 0" plog=${eff%.json}.log
    [ "${device}" = cuda ] && job="${cuda_cmd} --gpu 1"
    rm -f "${plog}"
    # shellcheck disable=SC2086
    run_job "${job} --num_threads ${OMP_NUM_THREADS}" "${plog}" ${python} -m espnet_ext.bin.profile "${opts[@]}" \
        --reference "${reference}" --espnet_reference \
        --data_dir "${raw}/$1" --lang_sym "$2" --task_sym "$3" --num_utts "${profile_num_utts}" \
        --threads "${OMP_NUM_THREADS}" --warmup 1 --repeats "${profile_repeats}" --beam_size 5 \
        --device "${device}" "${profile_opts[@]}" --out "${eff}" || { tail -n 30 "${plog}"; return 1; }
    sed -e 1d -e '/^# Started at /d' -e '/^# Ended (code /d' "${plog}"  # without run.pl's header
    mark_done "${eff%.json}.done" "${hash}"
}

# Stage 9: gate patterns of each gated model per language, task, speaker and event (PNGs and
# gate_factors_<model>.json in ${expdir}/plots).
plot_gate_patterns() {
    local model
    for model in ${models}; do
        trained_gated "${model}" || continue
        # shellcheck disable=SC2086
        run ${python} "${MAIN_ROOT}/scripts/plot_gates.py" --exp "${expdir}" --model "${model}" \
            --dump "${raw}" --test_sets ${test_sets} --out_dir "${expdir}/plots" | sed 's/^/  /'
    done
}
# Stage 1: local/data.sh of the recipe -> ${datadir}/<set> Kaldi dirs, validated; redone when
# local/data.sh, its options or the data it reads (${data_inputs}: a file, or a dir's files) change.
data_stage() {
    local inputs=() d hash check=() dirs=()
    for d in ${data_inputs}; do
        if [ -d "${d}" ]; then
            mapfile -t -O ${#inputs[@]} inputs < <(find "${d}" -maxdepth 1 -type f | LC_ALL=C sort)
        else
            inputs+=("${d}")
        fi
    done
    hash=$(inputs_hash local/data.sh "${local_data_opts[*]}" "${inputs[@]}")
    is_done "${datadir}/.done" "${hash}" && return 0
    run local/data.sh --out "${datadir}" "${local_data_opts[@]}"
    [ -z "${langs}" ] || check+=(--langs "${langs}")
    [ -z "${tasks}" ] || check+=(--tasks "${tasks}")
    check+=(${asr_data[@]+"${asr_data[@]}"})
    for d in ${data_sets}; do dirs+=("${datadir}/${d}"); done
    run ${python} scripts/validate_data_dir.py "${check[@]}" "${dirs[@]}"
    mark_done "${datadir}/.done" "${hash}"
}
# Stage 2: every set -> ${raw}/<set>: checked (--audio_format 16k: format_set) or converted
# (any: prepare_audio); ${split_sets} also split by language and task; dev and ${test_sets} keep
# every utterance (evaluation sets).
audio_stage() {
    local dset opts prep=prepare_audio
    [ "${audio_format}" = 16k ] && prep=format_set
    for dset in ${data_sets}; do
        opts=("${format_opts[@]}")
        [[ " ${split_sets} " = *" ${dset} "* ]] && opts+=(--split_by_lang_task)
        [ "${dset}" = dev ] || [[ " ${test_sets} " = *" ${dset} "* ]] && opts+=(--eval_set)
        ${skip_bad_utts} && opts+=(--skip_bad_utts)
        ${prep} "${datadir}/${dset}" "${dset}" "${length_config}" "${opts[@]}"
    done
}
# Stages 3-9: the pre-trained OWSM-format model (or one trained here from scratch) and its
# fine-tunes, on ${raw}/{<sets>} and the test (sub)sets of stage 2.
owsm_stages() {
    context_stage
    base_stage
    # The pre-trained model's token list, BPE and normalisation (stage 4's train_opts);
    # time_apply_prob=1.0: the texts carry <notimestamps> already (conf/train_s2t_ebf_gated.yaml).
    local base_opts=()
    if [ ${#train_opts[@]} -eq 0 ]; then
        [ ! -f "${base_dir}/train_opts" ] || read -r -d '' -a base_opts < "${base_dir}/train_opts" || true  # none before stage 4
        train_opts=(--use_preprocessor true "${base_opts[@]}"
                    --preprocessor_conf time_apply_prob=1.0 --use_tensorboard true --use_matplotlib false)
    fi
    run_stage 5 "Collect stats (shapes; feature statistics) of ${stat_sets}" stats_stage
    run_stage 6 "Training from ${owsm_model}: ${models}" train_stage "${first_label}"
    run_stage 7 "Decoding: $([ "${task}" = s2t ] && echo 'beam 5, maxlenratio 0.0' || echo "${decode_config}"), every model x ${test_sets}, ${inference_nj} job(s) per set" decode_models
    run_stage 8 "Scoring: BLEU/chrF (sacrebleu) for ST, WER/CER (jiwer) for ASR (${score_opts[*]})" score_models
    report_stage
}
# Stage 3: speaker and event embeddings, for the models that read them.
context_stage() {
    local kind extractor
    stage_in 3 || return 0
    if ! { need_context speaker || need_context event; }; then
        log "Stage 3: no model in --models uses speaker or event context: skipped"; return 0
    fi
    stage_start 3 "Context embeddings: speaker (${spk_model}) for gated_spk, event (${event_tagger_dir:+tagger trained here, }${event_model:-none}) for gated_event"
    if [ -n "${event_tagger_dir:-}" ] && need_context event; then
        # shellcheck disable=SC2046
        train_tagger "${event_tagger_dir}" "${tagger_clips_per_event}" \
            $(for d in ${train_sets}; do echo "${raw}/${d}"; done)
    fi
    for kind in speaker event; do
        extractor=${spk_model}; [ ${kind} = event ] && extractor=${event_model}
        # shellcheck disable=SC2046
        need_context ${kind} && extract_context ${kind} "${extractor}" \
            $(for d in ${sets}; do echo "${raw}/${d}"; done) -- $(for t in ${test_sets}; do echo "${raw}/${t}"; done)
    done
    stage_end 3
}
# Stage 4: the pre-trained model (BPE, token list, stats, weights), or a new BPE (scratch).
base_stage() {
    if [ "${owsm_model}" = scratch ]; then
        # shellcheck disable=SC2046
        run_stage 4 "Token list: unigram BPE (${nbpe})$([ "${task}" = asr ] || echo ' with OWSM special tokens') -> ${token_dir}" \
            make_token_list "${token_dir}" "${nbpe}" $(for d in ${train_sets}; do echo "${raw}/${d}"; done)
    else
        run_stage 4 "Pre-trained model ${owsm_model}: BPE, token list, stats, weights -> ${token_dir}" \
            prepare_base "${owsm_model}" "${token_dir}" "$(model_config gated)" "${specials}"
    fi
}
# Stage 5: stats of each of ${stat_sets} (side by side), valid on dev; ${base_set} (the base
# model's) with its YAML, the others with the reference model's.
stats_stage() {
    local dset config
    for dset in ${stat_sets}; do
        config=$(model_config "${reference}"); [ "${dset}" = "${base_set}" ] && config=$(model_config base)
        is_done "${stats_dir}/${dset}/.done" || stage_did_work=true
        collect_stats "${config}" "${raw}/${dset}" "${raw}/dev" "${stats_dir}/${dset}" "${token_dir}/tokens.txt" & spawned
    done
    wait_all
}
# Stage 6: the base model (owsm_model scratch: 6a, on ${base_set}), the zero-shot model (the
# pre-trained model as it is), the fine-tunes (6<first>, ...) and the baselines (6f-6h).
train_stage() {  # train_stage <first label letter>
    if [ "${owsm_model}" = scratch ] && ! is_done "${expdir}/base/.done"; then
        stage_did_work=true
        train_model base 6a $(( threads * train_nj )) "${base_set}"  # alone on the machine: all threads
    fi
    if [[ " ${models} " = *" zeroshot "* ]] && ! is_done "${expdir}/zeroshot/valid.acc.ave.pth"; then
        mkdir -p "${expdir}/zeroshot"
        cp "${base_dir}/config.yaml" "${expdir}/zeroshot/config.yaml"
        ln -sf "$(cd "${base_dir}" && pwd)/model.pth" "${expdir}/zeroshot/valid.acc.ave.pth"
    fi
    train_models "$1"
    if ${baselines}; then train_baselines f; fi
}
# Stage 9 (with the reference model to compare with): efficiency on the first ST set (else the
# first set), the trade-off plot (tradeoff_plot=true), the gate patterns, then ${results}.
# ASR (--task asr): ${results} alone (GFLOPs and gates from stage 7's decodings; the profiler
# and the gate plots take S2T sets, <set>_<lang>_<task>).
report_stage() {
    local prof lang sym eff=()
    stage_in 9 && [[ " ${models} " = *" ${reference} "* ]] || return 0
    stage_start 9 "Efficiency (GFLOPs, wall-clock; vs ${reference}), gate patterns, ${results}"
    if [ "${task}" = s2t ]; then
        prof=$(echo ${test_sets} | tr ' ' '\n' | grep _st_ | head -n 1 || true); prof=${prof:-${test_sets%% *}}
        lang=$(echo "${prof}" | cut -d_ -f2); sym=$(echo "${prof}" | cut -d_ -f3-)
        eff=(--efficiency "${expdir}/efficiency/${prof}.json")
        profile_models "${prof}" "${lang}" "${sym}" "${eff[1]}"
    fi
    if ${tradeoff_plot}; then
        # shellcheck disable=SC2086
        run ${python} "${MAIN_ROOT}/scripts/plot_tradeoff.py" --exp "${expdir}" --models ${models} \
            --test_sets ${test_sets} --out "${expdir}/plots/tradeoff.png"
    fi
    [ "${task}" = asr ] || plot_gate_patterns
    stage_end 9
    # shellcheck disable=SC2086
    run ${python} "${MAIN_ROOT}/scripts/report.py" --exp "${expdir}" --dump "${raw}" \
        ${report_args[@]+"${report_args[@]}"} --models ${models} --test_sets ${test_sets} \
        --reference "${reference}" ${eff[@]+"${eff[@]}"} --out "${results}"
    log "Wrote ${results}"
}

# Stage 10 (--base_out): the base model pre-trained here (--owsm_model scratch), in OWSM's hub
# layout, with the feature statistics of its training set (${base_set}).
pack_stage() {
    [ -n "${base_out}" ] || return 0
    run_stage 10 "Pack the base model (OWSM hub layout) -> ${base_out}" \
        run ${python} local/pack_base.py --exp "${expdir}/base" \
            --stats "${stats_dir}/${base_set}/train/feats_stats.npz" --out "${base_out}"
}

# The options' checks, each a one-line error before anything is written.
check_options() {
    local m c want
    case ${task} in s2t|asr) ;; *) die "--task ${task}: s2t or asr" ;; esac
    case ${audio_format} in any|16k) ;; *) die "--audio_format ${audio_format}: any or 16k" ;; esac
    case ${skip_bad_utts} in true|false) ;; *) die "--skip_bad_utts ${skip_bad_utts}: true or false" ;; esac
    case ${tradeoff_plot} in true|false) ;; *) die "--tradeoff_plot ${tradeoff_plot}: true or false" ;; esac
    if [ "${models}" != base ]; then check_models; fi
    check_event_model
    check_wer_norm
    add_baselines
    [ "${task}" = s2t ] || ! ${baselines} || die "--baselines true: S2T models only (layer pruning by convexity, L0 of the E-Branchformer)"
    if [ -n "${gated_config}" ]; then  # the gated model's YAML instead of <prefix>gated.yaml; its
        # variants (gated_lang, ...: variant_of: gated) follow it
        [ -f "${gated_config}" ] || die "--gated_config ${gated_config}: no such file"
        eval "pipeline_$(declare -f model_config)"
        model_config() { if [ "$1" = gated ]; then echo "${gated_config}"; else pipeline_model_config "$1"; fi; }
    fi
    # A gated model already in ${expdir} was trained with the YAML its config.yaml names (ESPnet
    # records --config there); resumed or skipped with another, it would be reported as this one.
    for m in ${models}; do
        trained_gated "${m}" || continue
        c=$(sed -n 's/^config: //p' "${expdir}/${m}/config.yaml")
        want=$(model_config "${m}")
        [ "$(realpath -m "${c}")" = "$(realpath -m "${want}")" ] \
            || die "$(cd "${expdir}" && pwd)/${m} was trained with ${c}, not ${gated_config:+--gated_config }${want}; use another --expdir"
    done
}

main() {
    local args=("$@")
    set -euo pipefail
    [ -f path.sh ] || { echo "$0: run it from a recipe dir (egs2/<corpus>/s2t1: path.sh, conf/, local/data.sh)" >&2; exit 1; }
    . ./path.sh
    pipeline_options
    __options=$(option_names | tr '\n' ' ')
    . "${MAIN_ROOT}/scripts/parse_options.sh"
    [ $# -eq 0 ] || die "unexpected argument $1 (options are --name value)"
    split_options
    [ ! -f cmd.sh ] || . ./cmd.sh  # the job backend (--cmd_backend)
    backend_defaults
    pipeline_init
    check_options
    make_dirs datadir dumpdir expdir
    [ -n "${invocation}" ] || invocation="cd $(printf %q "${PWD}") &&$(printf ' %q' "$0" ${args[@]+"${args[@]}"})"
    begin_commands "${invocation}"  # a block of ${expdir}/commands.sh per invocation
    [ -z "${made_with}" ] || check_expdir "${made_with}$([ -d "${owsm_model}" ] && echo " ($(dir_md5 "${owsm_model}" | cut -c1-8))")"
    raw=${dumpdir}/raw
    share_threads "${train_nj}"
    base_dir=${base_dir:-${expdir}/owsm}; base_model=${base_model:-${base_dir}/model.pth}
    token_dir=${token_dir:-${base_dir}}; stats_dir=${stats_dir:-${expdir}/s2t_stats}
    stat_sets=${stat_sets:-${train_sets}}
    length_config=${length_config:-$(model_config "${reference}")}
    [ ${#report_args[@]} -gt 0 ] || report_args=(--data "${datadir}")
    score_opts=(${st_normalise:+--st_normalise "${st_normalise}"} --wer_norm "${wer_norm}" "${score_opts[@]}")
    asr_data=(); [ "${task}" = s2t ] || asr_data=(--asr)  # the data tools: plain transcripts
    format_opts=(${asr_data[@]+"${asr_data[@]}"} "${format_opts[@]}")
    # the sets of stages 1-2: ${train_sets}, then ${sets}
    data_sets=$(printf '%s\n' ${train_sets} ${sets} | awk '!seen[$0]++' | tr '\n' ' ')

    run_stage 1 "Data preparation: local/data.sh ${local_data_opts[*]} -> ${datadir}" data_stage
    run_stage 2 "Audio ($([ "${audio_format}" = 16k ] && echo '16 kHz mono check' || echo 'decoded, 16 kHz mono, segments cut')), length filter, speech_shape -> ${raw}" audio_stage
    # the test subsets stage 2 made, and the <lang>/<task> tokens of the data, unless given
    [ -n "${test_sets}" ] || test_sets=$(cd "${raw}" 2>/dev/null && for s in ${split_sets}; do ls -d "${s}"_*_* 2>/dev/null; done | tr '\n' ' ' || true)
    [ -n "${specials}" ] || specials=$({ for s in ${sets}; do cut -d' ' -f2 "${datadir}/${s}/text" 2>/dev/null; done | grep -o '^<[a-z_]*><[a-z_]*>' || true; } | sed 's/></> </' | tr ' ' '\n' | sort -u | tr '\n' ' ')
    owsm_stages
    pack_stage
    log "Finished stages ${stage}-${stop_stage}"
}
backend_defaults() {  # the job backend when cmd.sh sets none; torch threads per job
    train_cmd=${train_cmd:-${MAIN_ROOT}/egs2/TEMPLATE/s2t1/local/run.pl}
    cuda_cmd=${cuda_cmd:-${train_cmd}}
    decode_cmd=${decode_cmd:-${train_cmd}}
    threads=${threads:-${OMP_NUM_THREADS:-1}}
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
else  # sourced: the defaults of the options the caller has not set (its own values stay)
    __unset=()
    for __o in $(option_names); do declare -p "${__o}" &>/dev/null || __unset+=("${__o}"); done
    [ ${#__unset[@]} -eq 0 ] || . <(pipeline_options; declare -p "${__unset[@]}")
    backend_defaults
    unset __o __unset
fi
