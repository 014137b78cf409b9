#!/usr/bin/env bash
# Parses "--name value" (or "--name=value") command-line options into the shell
# variables of the same name (dashes become underscores), ESPnet/Kaldi style:
#
#   stage=1            # defaults, set before sourcing
#   __options="stage"  # the options, for --help
#   . scripts/parse_options.sh || exit 1
#   ./run.sh --stage 7 --stop-stage 8
#
# Only variables that already exist can be set, so a typo is an error. A run.sh that
# passes options on to egs2/TEMPLATE/pipeline.sh declares the array pipeline_args before
# sourcing: an option not in its __options then goes there (the pipeline rejects one it
# does not know). With __caller (the directory run.sh was started from, before it changed
# to its own), the values of the options named in __paths are made absolute against it,
# and those of __maybe_paths too where such a path exists there (else they are names: a
# hub tag, whisper:base). Positional arguments left after the options stay in "$@".
# "--help" prints the script's header comment (the lines starting with "#" after the
# shebang) and the options with their current values and comments.

__caller_path() {  # __caller_path <value> <always|if_exists>: the value, resolved against ${__caller}
    local v=$1 kind=""
    case ${v} in whisper:*|beats:*|tagger:*|ecapa:*) kind=${v%%:*}:; v=${v#*:} ;; esac
    if [ -n "${v}" ] && [[ ${v} != /* ]] && { [ "$2" = always ] || [ -e "${__caller}/${v}" ] \
            || [[ ${v} = ./* ]] || [[ ${v} = ../* ]]; }; then
        v=$(realpath -m -s "${__caller}/${v}")
    fi
    echo "${kind}${v}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
            echo "Options (current values):"
            for __v in ${__options:-}; do
                __c=$(grep -m 1 -E "^ *${__v}=" "$0" | sed -n 's/^[^#]*#/  #/p' || true)
                echo "  --${__v} ${!__v}${__c}"
            done
            if declare -p pipeline_args >/dev/null 2>&1; then
                echo "Other options go to the pipeline: ${MAIN_ROOT:-../../..}/egs2/TEMPLATE/pipeline.sh --help lists them."
            fi
            exit 0 ;;
        --*=*) __name="${1%%=*}"; __value="${1#*=}"; shift ;;
        --*)
            [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
            __name="$1"; __value="$2"; shift 2 ;;
        *) break ;;
    esac
    __name="${__name#--}"; __name="${__name//-/_}"
    if [ -n "${__caller:-}" ]; then
        if [[ " ${__paths:-} " = *" ${__name} "* ]]; then __value=$(__caller_path "${__value}" always)
        elif [[ " ${__maybe_paths:-} " = *" ${__name} "* ]]; then __value=$(__caller_path "${__value}" if_exists); fi
    fi
    if declare -p pipeline_args >/dev/null 2>&1 && [[ " ${__options:-} " != *" ${__name} "* ]]; then
        pipeline_args+=("--${__name}" "${__value}")
        continue
    fi
    if ! declare -p "${__name}" >/dev/null 2>&1; then
        echo "$0: unknown option --${__name}" >&2; exit 1
    fi
    printf -v "${__name}" '%s' "${__value}"
done
unset __name __value __v __c
true
