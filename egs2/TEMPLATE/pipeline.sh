# The shared recipe pipeline (as ESPnet's egs2/TEMPLATE/*/s2t.sh, but sourced): its options
# and their defaults, stage guards, logging, one up-to-date check (is_done), and the stages
# every recipe runs the same way: audio formatting, context embeddings, the pre-trained model,
# stats, training (with the static baselines), decoding, scoring, profiling, gate patterns.
# A recipe's run.sh sets its own options, sources this file (which adds the pipeline's
# options below), parses the command line, then calls pipeline_init and the stage functions
# (owsm_stages: stages 3-9); only its corpus stages (data preparation) are its own.
#
#   . ./path.sh; . "${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh"; . scripts/parse_options.sh
#   . ./cmd.sh; pipeline_init
#   if stage_in 5; then stage_start 5 "Collect stats"; collect_stats ...; stage_end 5; fi
#
# Variables the stage functions read (set by run.sh; defaults below):
#   expdir raw nj dumpdir exp dir; dump/raw (formatted sets, embeddings); audio jobs, dump dir
#   models test_sets    what stages 6-9 train and evaluate; evaluation sets (test_<lang>_<task>)
#   train_opts          s2t_train options every model and stage 5 share (token list, BPE)
#   norm_opts           training only: normalisation by stats stage 5 may be making
#   base_dir base_model the pre-trained model's dir (config.yaml) and the weights fine-tunes start from
#   token_dir stats_dir stage 4's token list / BPE (the pre-trained model's: base_dir); stage 5's stats
#   base_init           weights model "base" (pre-trained from scratch) starts from; empty: random
#   ngpu num_nodes      GPUs per node, nodes (> 1 process: espnet2.bin.launch through ${cuda_cmd})
#   cmd_backend train_cmd cuda_cmd decode_cmd   the job backend (s2t1/cmd.sh; default: local/run.pl)
#   train_nj threads    models trained side by side, torch threads of each job
#   decode_parallel     models decoded side by side; inference_nj: jobs per set (decode.py --nj)
#   inference_batch_size decode_config score_opts profile_num_utts profile_repeats profile_opts
#   wer_norm            WER/CER text convention (check_wer_norm; run.sh adds --wer_norm to score_opts)
#   s2t_args            appended to every training command (e.g. "--seed 1 --max_epoch 5")
#   inference_args      appended to every decoding command's inference options (e.g. "--beam_size 10")
#   config_prefix       the conf set: model <m> trains from <prefix><m>.yaml (base: base_config; model_yaml)
# Every command goes through `run` (or `run_job`), which records it in ${expdir}/commands.sh.
# A $(...) whose command fails stops the run (inherit_errexit; values are computed into
# variables first, `|| die` where a function runs in a subshell).
shopt -s inherit_errexit

# The pipeline's options: settable on every run.sh command line (--name value), as the
# recipe's own; a run.sh that sets one before sourcing this file gives it its own default.
python=${python:-python3}              # the Python of every command
nj=${nj:-4}                            # parallel processes: audio decoding
dumpdir=${dumpdir:-dump}
base_init=${base_init:-}
num_nodes=${num_nodes:-1}
train_nj=${train_nj:-1}
decode_parallel=${decode_parallel:-1}
inference_nj=${inference_nj:-1}
inference_batch_size=${inference_batch_size:-1}
decode_config=${decode_config:-conf/decode_s2t.yaml}
score_opts=${score_opts:-}             # extra scripts/score.py options (run.sh adds --wer_norm ...)
wer_norm=${wer_norm:-ours}
profile_opts=${profile_opts:-}
s2t_args=${s2t_args:-}                 # extra training options (ESPnet's s2t.sh --s2t_args)
inference_args=${inference_args:-}     # extra decoding options (ESPnet's s2t.sh --inference_args)
# The job backend (egs2/TEMPLATE/s2t1/cmd.sh): check_init, training, decoding and profiling
# run as its jobs. A recipe that does not source cmd.sh runs them with local/run.pl.
cmd_backend=${cmd_backend:-local}
pipeline_options="python nj dumpdir base_init num_nodes train_nj decode_parallel inference_nj inference_batch_size decode_config score_opts wer_norm profile_opts s2t_args inference_args cmd_backend"
for __o in ${pipeline_options}; do  # --help lists them after the recipe's own
    [[ " ${__options:-} " = *" ${__o} "* ]] || __options="${__options:-} ${__o}"
done
unset __o
threads=${threads:-${OMP_NUM_THREADS:-1}}
train_opts=${train_opts:-}
norm_opts=${norm_opts:-}
train_cmd=${train_cmd:-${MAIN_ROOT}/egs2/TEMPLATE/s2t1/local/run.pl}  # cmd.sh sets them
cuda_cmd=${cuda_cmd:-${train_cmd}}
decode_cmd=${decode_cmd:-${train_cmd}}
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
begin_commands() {  # begin_commands <caller dir> <run.sh> <its arguments...>: opens a block
    local f=${expdir}/commands.sh n=1
    if [ -s "${f}" ]; then
        n=$(( $(grep -c '^# ===== run.sh invocation ' "${f}" || true) + 1 ))
        if [ ${n} -eq 1 ]; then  # recorded before invocations had blocks
            sed -i '1i # ===== earlier runs (before run.sh recorded its invocations)' "${f}"
        fi
        sed -i 's/^\(# ===== run.sh invocation [0-9]*\) (last run),/\1,/' "${f}"
    fi
    { printf '# ===== run.sh invocation %d (last run), %s: cd %q && ' "${n}" "$(date '+%Y-%m-%dT%H:%M:%S')" "$1"
      printf '%q ' "${@:2}" | sed 's/ $/\n/'; } >> "${f}"
    commands_block=${n}
    trap 'end_commands $?' EXIT
}
end_commands() {  # closes the block of begin_commands with the exit status
    local how="finished"
    [ "$1" -eq 0 ] || how="failed (exit status $1)"
    echo "# ===== end of invocation ${commands_block}: ${how}" >> "${expdir}/commands.sh"
}
# Paths on run.sh's command line are the caller's: run.sh changes to its own directory, so
# the relative ones are made absolute against the directory it was started from.
caller_path() {  # caller_path <caller dir> <value> <always|if_exists>: the value, resolved
    local dir=$1 v=$2 kind=""
    case ${v} in whisper:*|beats:*|tagger:*|ecapa:*) kind=${v%%:*}:; v=${v#*:} ;; esac
    # a hub tag (espnet/owsm_v3.1_ebf) or a name (whisper:base) stays, unless such a path exists
    if [ -n "${v}" ] && [[ ${v} != /* ]] && { [ "$3" = always ] || [ -e "${dir}/${v}" ] \
            || [[ ${v} = ./* ]] || [[ ${v} = ../* ]]; }; then
        v=$(realpath -m -s "${dir}/${v}")
    fi
    echo "${kind}${v}"
}
resolve_cli_paths() {  # resolve_cli_paths <caller dir> "<path options>" "<model options>" <run.sh args...>
    local dir=$1 paths=$2 maybe=$3 a how
    shift 3
    for a in "$@"; do
        [[ ${a} = --* ]] || continue
        a=${a#--}; a=${a%%=*}; a=${a//-/_}
        how=""
        [[ " ${paths} " = *" ${a} "* ]] && how=always
        [[ " ${maybe} " = *" ${a} "* ]] && how=if_exists
        [ -n "${how}" ] && printf -v "${a}" '%s' "$(caller_path "${dir}" "${!a}" ${how})"
    done
    true
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
        else
            [ -f "$(model_yaml "${m}")" ] || die "--models: unknown ${m} (no $(model_yaml "${m}"))"
            model_config "${m}" > /dev/null  # a variant's model too
        fi
    done
    [[ " ${models} " = *" full "* ]] || die "--models must include full (the reference)"
}

# Data options of s2t_train for a set, as s2t.sh stages 10/11 pass them: the four S2T
# tables, the shape files (collect_stats: the key list), the npy context inputs. With
# data_kind=asr (asr_train, as asr.sh): wav.scp and text, the key list wav.scp.
data_opts() {  # data_opts <mode: train|valid> <dir> [<shape dir>] [npy names...]
    local mode=$1 dir=$2 shapes=${3:-} name keys=speech_shape
    local tables=(wav.scp,speech,sound text.prev,text_prev,text text.ctc,text_ctc,text text,text,text)
    local shape_files=(speech_shape text_shape.bpe text_prev_shape.bpe text_ctc_shape.bpe)
    if [ "${data_kind:-s2t}" = asr ]; then
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
    local src=$1 dset=$2 config=$3 hash
    hash=$(inputs_hash "${*:4}" "${config}" "${MAIN_ROOT}/scripts/format_data.py" \
        "${src}"/{wav.scp,text,text.ctc,text.prev,utt2spk,utt2lang,utt2task} \
        "$(audio_stamp "${src}/wav.scp")")
    is_done "${raw}/${dset}/.done" "${hash}" && return 0
    run ${python} "${MAIN_ROOT}/scripts/format_data.py" --data_dir "${src}" \
        --out "${raw}/${dset}" --config "${config}" "${@:4}"
    # shellcheck disable=SC2046
    run ${python} "${MAIN_ROOT}/scripts/validate_data_dir.py" --config "${config}" \
        $(printf '%s\n' "${@:4}" | grep -v -e --split_by_lang_task -e --skip_bad_utts -e --eval_set) \
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
# Stage 3 (--event_model tagger:): a small event tagger, trained on the event labels
# (utt2event) of <set dirs>, at most <max> recordings per event (0: all).
train_tagger() {  # train_tagger <out dir> <max> "<train_event_tagger opts>" <set dir...>
    local out=$1 max=$2 opts=$3
    is_done "${out}/.done" && return 0
    log "Training the event tagger on ${*:4} (<= ${max} recordings per event)"
    run ${python} "${MAIN_ROOT}/scripts/context.py" recordings --out "${out}/data" \
        --max_per_event "${max}" "${@:4}"
    # shellcheck disable=SC2086
    run ${python} -m espnet_ext.bin.train_event_tagger --data_dir "${out}/data" \
        --out "${out}/tagger.pth" --num_threads 1 ${opts}
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

# Stage 4 (a model pre-trained from scratch): a unigram BPE with OWSM's special tokens.
make_token_list() {  # make_token_list <out> <vocab size> <set dir...>
    local out=$1 hash
    hash=$(inputs_hash "$2" $(for d in "${@:3}"; do echo "${d}/text" "${d}/text.ctc"; done))
    is_done "${out}/.done" "${hash}" && return 0
    run ${python} "${MAIN_ROOT}/scripts/make_token_list.py" --vocab_size "$2" --out "${out}" "${@:3}"
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
    # shellcheck disable=SC2046,SC2086
    run ${python} -m espnet_ext.bin.s2t_train --collect_stats true --ngpu 0 \
        --config "${config}" ${train_opts} --output_dir "${out}" \
        $(data_opts train "${train}") $(data_opts valid "${valid}") \
        > "${out}.log" 2>&1 || { tail -n 30 "${out}.log"; return 1; }
    for mode in train valid; do  # as s2t.sh stage 10: token shapes get the vocab size
        for f in text text_prev text_ctc; do
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
# or a variant, `variant_of: <model>` and the keys it changes, given to s2t_train as overrides
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
    if [ -n "${of}" ]; then model_config "${of}"; else echo "${yaml}"; fi
}
model_yaml_py() {  # model_yaml_py <inputs|options> <model> [<options>]: scripts/model_yaml.py on its YAMLs
    local yaml config variant=()
    yaml=$(model_yaml "$2") && config=$(model_config "$2") || return 1
    [ -z "$(variant_of "${yaml}")" ] || variant=(--variant "${yaml}")
    ${python} "${MAIN_ROOT}/scripts/model_yaml.py" "$1" "${config}" ${variant[@]+"${variant[@]}"} "${@:3}"
}
context_names() { model_yaml_py inputs "$1"; }  # the npy inputs a model reads
context_opts() {  # a model's s2t_train options on top of --config: its variant's changes, embedding sizes
    model_yaml_py options "$1" --embed_dir "${raw}/train"
}
model_init() {  # model_init <model>: the weights it starts from: base ${base_init} (none: random),
    # the others the pre-trained model (an init computed in the run comes with train_model's options)
    if [ "$1" = base ]; then echo ${base_init:+--init_param "${base_init}"}; else echo "--init_param ${base_model}"; fi
}

# Stage 6: one model, trained on <set> (stats: ${stats_dir}/<set>), valid on dev; resumes.
# <options>: what the run computed for it (train_baselines: l0's FLOPs target; layerprune's
# layers and --init_param), after its YAML's.
train_model() {  # train_model <model> <stage label, e.g. 6b> <torch threads> [<set> [<options>...]]
    local model=$1 label=$2 threads=$3 dset=${4:-train} out=${expdir}/$1 names config init ctx opts=() extra=()
    names=$(context_names "${model}") && config=$(model_config "${model}") && ctx=$(context_opts "${model}") \
        && init=$(model_init "${model}") || return 1
    [[ " ${*:5} " = *" --init_param "* ]] && init=""  # computed: instead of the pre-trained model
    # the options of s2t_train (and of check_init, which builds the same model); the option
    # strings (train_opts, norm_opts, s2t_args) split into words, as ESPnet's s2t.sh does
    # shellcheck disable=SC2206
    opts=(--config "${config}" ${train_opts} ${norm_opts} ${init} ${ctx} "${@:5}")
    [ -n "${names}" ] && opts+=(--allow_variable_data_keys true)
    # shellcheck disable=SC2046,SC2086
    opts+=(--output_dir "${out}" --resume true
           $(data_opts train "${raw}/${dset}" "${stats_dir}/${dset}/train" ${names})
           $(data_opts valid "${raw}/dev" "${stats_dir}/${dset}/valid" ${names}))
    # shellcheck disable=SC2206
    extra=(${s2t_args})  # --s2t_args: last, so they win (ESPnet's parser keeps the last value)
    mkdir -p "${out}"
    if [ "${model}" = full ] || [[ ${model} = gated* ]]; then
        log "Stage ${label}: checking that the pre-trained model initialises ${model} (only gate parameters new)"
        # shellcheck disable=SC2086
        rm -f "${out}/check_init.log"
        run_job "${train_cmd} --gpu 0" "${out}/check_init.log" ${python} "${MAIN_ROOT}/scripts/check_init.py" \
            --init "${base_model}" -- "${opts[@]}" ${extra[@]+"${extra[@]}"} || { cat "${out}/check_init.log"; return 1; }
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
        run "${launcher[@]}" ${python} -m espnet_ext.bin.s2t_train "${opts[@]}" --ngpu "${ngpu}" ${extra[@]+"${extra[@]}"} \
            || { tail -n 30 "${out}/train.log"; log "training ${model} failed"; return 1; }
        grep "epoch results" "${out}/train.log" | sed -E "s/^.*INFO: (.{0,200}).*$/  ${model} \1/" || true
    elif ! OMP_NUM_THREADS=${threads} MKL_NUM_THREADS=${threads} run ${python} -m espnet_ext.bin.s2t_train \
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
        train_model l0_train "6${l0l}" "${threads}" train --model_conf "target_flops=${fraction}" & spawned
    fi
    if ! is_done "${expdir}/layerprune/.done"; then
        stage_did_work=true
        # shellcheck disable=SC2086
        train_model layerprune "6${lpl}" "${threads}" train --init_param "${init}/model.pth" ${keep} & spawned
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
# beam 5, maxlenratio 0. One process per model (ESPnet's import costs more than a small
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
    local nmodels parts=1 running=0 model tset todo part sets i dlog dcmd=${decode_cmd} gpu=0 job submit runner npy
    nmodels=$(echo ${models} | wc -w)
    [ "${ngpu}" -gt 0 ] && { dcmd=${cuda_cmd}; gpu=1; }
    if [ "${cmd_backend}" != local ] && [ "${inference_nj}" -gt 1 ]; then
        job=(); submit=(--cmd "${dcmd} --num_threads ${threads}")
    else
        job=(${dcmd} --gpu ${gpu} --num_threads ${threads}); submit=()
    fi
    [ "${nmodels}" -lt "${decode_parallel}" ] && parts=${decode_parallel}
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
                    ${python} "${MAIN_ROOT}/scripts/decode.py" ${submit[@]+"${submit[@]}"} \
                    --model_dir "${expdir}/${model}" --dump "${raw}" --nj "${inference_nj}" \
                    ${npy} ${sets} -- \
                    --config "${decode_config}" --ngpu "${gpu}" --beam_size 5 \
                    --maxlenratio 0.0 --batch_size "${inference_batch_size}" --src_kv_cache false \
                    ${inference_args} >> "${dlog}" 2>&1 || { tail -n 30 "${dlog}"; log "decoding ${model} failed"; exit 1; }
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
        hash=$(inputs_hash "${score_opts} ${test_sets}" "${decoded}")
        [ -f "${scores}" ] && is_done "${expdir}/${model}/scores.opts" "${hash}" && continue
        # shellcheck disable=SC2086
        run ${python} "${MAIN_ROOT}/scripts/score.py" --exp "${expdir}/${model}" --dump "${raw}" \
            ${score_opts} ${test_sets}
        mark_done "${expdir}/${model}/scores.opts" "${hash}"
    done
}

# Stage 9: GFLOPs and wall-clock of every model on <set> (one JSON, redone when the set of
# ${models} changed: <out>.done); the row full@espnet is the full model once more with ESPnet's
# BatchBeamSearch.
profile_models() {  # profile_models <set> <lang> <task> <out json>
    local eff=$4 opts="" model device=cpu hash
    hash=$(inputs_hash "$(printf '%s\n' ${models} | LC_ALL=C sort -u)")
    [ -f "${eff}" ] && is_done "${eff%.json}.done" "${hash}" && return 0
    if [ -f "${eff}" ]; then
        log "Stage 9: ${eff} profiled other models than '${models}': profiling again"
        rm "${eff}"
    fi
    mkdir -p "$(dirname "${eff}")"
    for model in ${models}; do
        opts="${opts} --model ${model}=${expdir}/${model}/config.yaml:${expdir}/${model}/valid.acc.ave.pth"
    done
    [ "${ngpu}" -gt 0 ] && device=cuda
    # a job of the backend: ${cuda_cmd} --gpu 1 on a GPU node, else ${decode_cmd}; log <out>.log
    local job="${decode_cmd} --gpu 0" plog=${eff%.json}.log
    [ "${device}" = cuda ] && job="${cuda_cmd} --gpu 1"
    rm -f "${plog}"
    # shellcheck disable=SC2086
    run_job "${job} --num_threads ${OMP_NUM_THREADS}" "${plog}" ${python} -m espnet_ext.bin.profile ${opts} \
        --reference full --espnet_reference \
        --data_dir "${raw}/$1" --lang_sym "$2" --task_sym "$3" --num_utts "${profile_num_utts}" \
        --threads "${OMP_NUM_THREADS}" --warmup 1 --repeats "${profile_repeats}" --beam_size 5 \
        --device "${device}" ${profile_opts} --out "${eff}" || { tail -n 30 "${plog}"; return 1; }
    sed -e 1d -e '/^# Started at /d' -e '/^# Ended (code /d' "${plog}"  # without run.pl's header
    mark_done "${eff%.json}.done" "${hash}"
}

# Stage 9: gate patterns of each gated model per language, task, speaker and event (PNGs and
# gate_factors_<model>.json in ${expdir}/plots).
plot_gate_patterns() {
    local model
    for model in ${models}; do
        [[ ${model} = gated* ]] || continue
        # shellcheck disable=SC2086
        run ${python} "${MAIN_ROOT}/scripts/plot_gates.py" --exp "${expdir}" --model "${model}" \
            --dump "${raw}" --test_sets ${test_sets} --out_dir "${expdir}/plots" | sed 's/^/  /'
    done
}

# Stages 3-9 of a recipe that fine-tunes a pre-trained OWSM-format model (Europarl-ST, your
# own corpus, mini Europarl), after its stages 1-2 made ${raw}/{<sets>} and the test subsets.
# Reads, besides the variables above: sets (formatted sets), owsm_model (the pre-trained model;
# scratch: a base model pre-trained here, stage 6a), specials (<lang>/<task> tokens of the
# data), spk_model, event_model, baselines (true|false), results, and optionally:
#   train_sets          sets the base model / event tagger / token list see (default: train)
#   stat_sets           sets stage 5 collects stats of (default: ${train_sets})
#   nbpe                --owsm_model scratch: the BPE size of stage 4
#   event_tagger_dir    set: stage 3 trains the event tagger there (on ${train_sets}) for gated_event
#   first_label         letter of the first fine-tune in stage 6 (default a: 6a, 6b, ...)
#   tradeoff_plot       true: stage 9 plots quality vs GFLOPs (${expdir}/plots/tradeoff.png)
#   report_args         array: scripts/report.py options of the recipe (--title, --data, ...)
# Defaults when the recipe has not set them: base_dir=token_dir=${expdir}/owsm, base_model,
# stats_dir=${expdir}/s2t_stats, train_opts (the pre-trained model's, read after stage 4).
owsm_stages() {
    base_dir=${base_dir:-${expdir}/owsm}; base_model=${base_model:-${base_dir}/model.pth}
    token_dir=${token_dir:-${base_dir}}; stats_dir=${stats_dir:-${expdir}/s2t_stats}
    train_sets=${train_sets:-train}; stat_sets=${stat_sets:-${train_sets}}
    [ -n "${report_args+x}" ] || report_args=(--data "${datadir}" ${report_title:+--title "${report_title}"})
    context_stage
    base_stage
    # The pre-trained model's token list, BPE and normalisation (stage 4's train_opts);
    # time_apply_prob=1.0: the texts carry <notimestamps> already (conf/train_s2t_ebf_gated.yaml).
    local base_opts
    if [ -z "${train_opts}" ]; then
        base_opts=$(cat "${base_dir}/train_opts" 2>/dev/null || true)  # none before stage 4
        train_opts="--use_preprocessor true ${base_opts}
        --preprocessor_conf time_apply_prob=1.0 --use_tensorboard true --use_matplotlib false"
    fi
    run_stage 5 "Collect stats (shapes; feature statistics) of ${stat_sets}" stats_stage
    run_stage 6 "Training from ${owsm_model}: ${models}" train_stage "${first_label:-a}"
    run_stage 7 "Decoding: beam 5, maxlenratio 0.0, every model x ${test_sets}, ${inference_nj} job(s) per set" decode_models
    run_stage 8 "Scoring: BLEU/chrF (sacrebleu) for ST, WER/CER (jiwer) for ASR (${score_opts})" score_models
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
        train_tagger "${event_tagger_dir}" "${tagger_clips_per_event}" "${tagger_opts}" \
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
        run_stage 4 "Token list: unigram BPE (${nbpe}) with OWSM special tokens -> ${token_dir}" \
            make_token_list "${token_dir}" "${nbpe}" $(for d in ${train_sets}; do echo "${raw}/${d}"; done)
    else
        run_stage 4 "Pre-trained model ${owsm_model}: BPE, token list, stats, weights -> ${token_dir}" \
            prepare_base "${owsm_model}" "${token_dir}" "$(model_config gated)" "${specials}"
    fi
}
# Stage 5: stats of each of ${stat_sets} (side by side), valid on dev; the set "pretrain" (the
# base model's) with its YAML, the others with the full model's.
stats_stage() {
    local dset config
    for dset in ${stat_sets}; do
        config=$(model_config full); [ "${dset}" = pretrain ] && config=$(model_config base)
        is_done "${stats_dir}/${dset}/.done" || stage_did_work=true
        collect_stats "${config}" "${raw}/${dset}" "${raw}/dev" "${stats_dir}/${dset}" "${token_dir}/tokens.txt" & spawned
    done
    wait_all
}
# Stage 6: the base model (owsm_model scratch: 6a, on pretrain), the zero-shot model (the
# pre-trained model as it is), the fine-tunes (6<first>, ...) and the baselines (6f-6h).
train_stage() {  # train_stage <first label letter>
    if [ "${owsm_model}" = scratch ] && ! is_done "${expdir}/base/.done"; then
        stage_did_work=true
        train_model base 6a $(( threads * train_nj )) pretrain  # alone on the machine: all threads
    fi
    if [[ " ${models} " = *" zeroshot "* ]] && ! is_done "${expdir}/zeroshot/valid.acc.ave.pth"; then
        mkdir -p "${expdir}/zeroshot"
        cp "${base_dir}/config.yaml" "${expdir}/zeroshot/config.yaml"
        ln -sf "$(cd "${base_dir}" && pwd)/model.pth" "${expdir}/zeroshot/valid.acc.ave.pth"
    fi
    train_models "$1"
    if ${baselines}; then train_baselines f; fi
}
# Stage 9 (with a full model to compare with): efficiency on the first ST set (else the first
# set), the trade-off plot (tradeoff_plot=true), the gate patterns, then ${results}.
report_stage() {
    local prof lang task eff
    stage_in 9 && [[ " ${models} " = *" full "* ]] || return 0
    stage_start 9 "Efficiency (GFLOPs, wall-clock; vs full), gate patterns, ${results}"
    prof=$(echo ${test_sets} | tr ' ' '\n' | grep _st_ | head -n 1 || true); prof=${prof:-${test_sets%% *}}
    lang=$(echo "${prof}" | cut -d_ -f2); task=$(echo "${prof}" | cut -d_ -f3-)
    eff=${expdir}/efficiency/${prof}.json
    profile_models "${prof}" "${lang}" "${task}" "${eff}"
    if ${tradeoff_plot:-false}; then
        # shellcheck disable=SC2086
        run ${python} "${MAIN_ROOT}/scripts/plot_tradeoff.py" --exp "${expdir}" --models ${models} \
            --test_sets ${test_sets} --out "${expdir}/plots/tradeoff.png"
    fi
    plot_gate_patterns
    stage_end 9
    # shellcheck disable=SC2086
    run ${python} "${MAIN_ROOT}/scripts/report.py" --exp "${expdir}" --dump "${raw}" \
        ${report_args[@]+"${report_args[@]}"} --models ${models} --test_sets ${test_sets} \
        --efficiency "${eff}" --out "${results}"
    log "Wrote ${results}"
}
