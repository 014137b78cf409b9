#!/usr/bin/env bash
# Stage 1: synthesise the mini Europarl corpus (../../../local/mini_europarl, espeak-ng) into
# Kaldi data dirs <out>/{pretrain,train,dev,test}. Resumable: a rerun skips the recordings
# already on disk.
#
# Usage: local/data.sh --out data --sizes pretrain=300,train=80,dev=8,test=8 [--nj 2]
set -euo pipefail
out=data
sizes=pretrain=300,train=80,dev=8,test=8
nj=2
voices_per_lang=8
seed=0
__options="out sizes nj voices_per_lang seed"
. scripts/parse_options.sh

command -v espeak-ng >/dev/null || { echo "$0: espeak-ng is missing (make sysdeps)" >&2; exit 1; }
python3 "${MAIN_ROOT}/local/mini_europarl/make_corpus.py" --out "${out}" --preset demo \
    --sizes "${sizes}" --seed "${seed}" --nj "${nj}" --voices_per_lang "${voices_per_lang}"
