#!/usr/bin/env bash
# A one-node stand-in for Kaldi's utils/run.pl with the interface espnet2.bin.launch uses:
#   local/run.pl [--gpu N] [--num_threads N] [--mem M] [--name X] [--max-jobs-run N] LOG CMD...
# Runs CMD here, its output appended to LOG (directories created), and exits with CMD's
# status. ESPnet itself starts one worker per GPU (--multiprocessing_distributed true), so
# --gpu only goes into the log header. No JOB=1:N arrays: use utils/run.pl for those.
set -uo pipefail
gpu=0
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu) gpu=$2; shift 2 ;;
        --num_threads|--mem|--name|--max-jobs-run|--config) shift 2 ;;
        --*=*) shift ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || { echo "usage: $0 [--gpu N] LOG CMD..." >&2; exit 1; }
log=$1; shift
case ${log} in *JOB*) echo "$0: JOB arrays are not supported (${log})" >&2; exit 1 ;; esac
mkdir -p "$(dirname "${log}")"
{
    echo "# $*"
    echo "# Started at $(date) on $(hostname), gpu=${gpu}"
} >> "${log}"
"$@" >> "${log}" 2>&1
rc=$?
echo "# Ended (code ${rc}) at $(date)" >> "${log}"
exit ${rc}
