#!/usr/bin/env bash
# The recipe's Slurm backend (cmd_backend=slurm in cmd.sh): run.pl's calling convention, needs
# nothing but `sbatch` on PATH (no Kaldi or ESPnet checkout):
#   local/slurm.pl [--config conf/slurm.conf] [--gpu N] [--mem M] [--num_threads N]
#                  [--num_nodes N] [--time T] [--name X] [JOB=1:N] LOG CMD...
# Each job (JOB=1:N: N jobs, JOB in LOG and CMD replaced by the job's number) is a script
# <dir of LOG>/q/<name of LOG>.sh that runs CMD in this directory, with this shell's
# environment (sbatch --export=ALL), its output appended to LOG between run.pl's header and
# footer lines; it is submitted with `sbatch --wait` and the flags the config maps the
# options to. The jobs of an array run side by side; the exit status is 1 if any failed.
# The config (Kaldi's slurm.pl format):
#   command sbatch ...           the submit command and its fixed flags
#   default <opt>=<value>        value of an option not given
#   option <opt>=<value> flags   flags for that exact value (none: nothing)
#   option <opt>=* flags         flags for any other value, $0 replaced by it
# Named *.pl because espnet2.bin.launch submits a multi-node training (--num_nodes > 1) only
# through a --cmd whose program is called slurm.pl.
set -uo pipefail
me=$0
config=conf/slurm.conf
declare -A opt=()
array=""
while [ $# -gt 0 ]; do
    case $1 in
        --config) config=$2; shift 2 ;;
        --max-jobs-run|--max_jobs_run) shift 2 ;;  # Slurm's queue decides
        --*=*) k=${1%%=*}; k=${k#--}; opt[${k//-/_}]=${1#*=}; shift ;;
        --*) [ $# -ge 2 ] || { echo "${me}: option $1 needs a value" >&2; exit 1; }
             k=${1#--}; opt[${k//-/_}]=$2; shift 2 ;;
        JOB=*) array=${1#JOB=}; shift ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || { echo "usage: ${me} [--config C] [--gpu N] [--mem M] [--num_threads N] [JOB=1:N] LOG CMD..." >&2; exit 1; }
log=$1; shift
[ -f "${config}" ] || { echo "${me}: no config ${config}" >&2; exit 1; }

submit=(); declare -A exact=() wild=()
while read -r kind rest; do
    case ${kind} in
        command) read -r -a submit <<< "${rest}" ;;
        default) k=${rest%%=*}; [ -n "${opt[${k}]+x}" ] || opt[${k}]=${rest#*=} ;;
        option) kv=${rest%% *}; flags=""; [ "${kv}" = "${rest}" ] || flags=${rest#* }
                if [ "${kv#*=}" = "*" ]; then wild[${kv%%=*}]=${flags}; else exact[${kv}]=${flags}; fi ;;
        ""|\#*) ;;
        *) echo "${me}: ${config}: unknown line '${kind} ${rest}'" >&2; exit 1 ;;
    esac
done < "${config}"
[ ${#submit[@]} -gt 0 ] || { echo "${me}: ${config} has no 'command' line" >&2; exit 1; }

first=1; last=1
if [ -n "${array}" ]; then
    [[ ${array} =~ ^([0-9]+):([0-9]+)$ ]] || { echo "${me}: JOB=${array}: expected JOB=<first>:<last>" >&2; exit 1; }
    first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}
elif [[ ${log} = *JOB* ]]; then
    echo "${me}: ${log} names JOB but no JOB=<first>:<last> was given" >&2; exit 1
fi

pids=(); logs=()
jobname=${opt[name]-}; unset 'opt[name]'
for (( j = first; j <= last; j++ )); do
    jlog=${log//JOB/${j}}
    [ -n "${array}" ] || jlog=${log}
    name=$(basename "${jlog}"); name=${name%.log}
    qdir=$(dirname "${jlog}")/q
    mkdir -p "${qdir}"
    flags=()
    opt[name]=${jobname:-${name}}; [ -n "${array}" ] && opt[name]=${opt[name]//JOB/${j}}
    for k in "${!opt[@]}"; do
        v=${opt[${k}]}
        if [ -n "${exact[${k}=${v}]+x}" ]; then f=${exact[${k}=${v}]}
        elif [ -n "${wild[${k}]+x}" ]; then f=${wild[${k}]//\$0/${v}}
        else echo "${me}: --${k} ${v}: ${config} has no 'option ${k}=' line" >&2; exit 1; fi
        read -r -a words <<< "${f}"
        flags+=(${words[@]+"${words[@]}"})
    done
    args=(); for a in "$@"; do [ -n "${array}" ] && a=${a//JOB/${j}}; args+=("${a}"); done
    script=${qdir}/${name}.sh
    {
        echo "#!/usr/bin/env bash"
        printf 'cd %q || exit 1\n' "${PWD}"
        printf 'echo %q >> %q\n' "# ${args[*]}" "${jlog}"
        printf 'echo "# Started at $(date) on $(hostname), Slurm job ${SLURM_JOB_ID:-?}" >> %q\n' "${jlog}"
        printf '%q ' "${args[@]}"; printf '>> %q 2>&1\n' "${jlog}"
        echo 'rc=$?'
        printf 'echo "# Ended (code ${rc}) at $(date)" >> %q\n' "${jlog}"
        echo 'exit ${rc}'
    } > "${script}"
    chmod +x "${script}"
    # sbatch's own messages (job id, errors) and the job's stray output: <qdir>/<name>.{submit,out}
    "${submit[@]}" "${flags[@]}" --wait --output "${qdir}/${name}.out" "${script}" \
        > "${qdir}/${name}.submit" 2>&1 &
    pids+=($!); logs+=("${jlog}")
done
rc=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[i]}"; then
        rc=1
        echo "${me}: job failed, see ${logs[i]} (sbatch's output: $(dirname "${logs[i]}")/q/$(basename "${logs[i]%.log}").submit)" >&2
    fi
done
exit ${rc}
