#!/usr/bin/env bash
# Parses "--name value" (or "--name=value") command-line options into the shell
# variables of the same name (dashes become underscores), ESPnet/Kaldi style:
#
#   stage=1            # defaults, set before sourcing
#   . scripts/parse_options.sh || exit 1
#   ./run.sh --stage 7 --stop-stage 8
#
# Only variables that already exist can be set, so a typo is an error. Positional
# arguments left after the options stay in "$@". "--help" prints the script's
# header comment (the lines starting with "#" after the shebang) and the current
# option values.

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
            echo "Options (current values):"
            for __v in ${__options:-}; do echo "  --${__v} ${!__v}"; done
            exit 0 ;;
        --*=*) __name="${1%%=*}"; __value="${1#*=}"; shift ;;
        --*)
            [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
            __name="$1"; __value="$2"; shift 2 ;;
        *) break ;;
    esac
    __name="${__name#--}"; __name="${__name//-/_}"
    if ! declare -p "${__name}" >/dev/null 2>&1; then
        echo "$0: unknown option --${__name}" >&2; exit 1
    fi
    printf -v "${__name}" '%s' "${__value}"
done
unset __name __value
true
