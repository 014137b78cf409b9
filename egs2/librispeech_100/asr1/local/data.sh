#!/usr/bin/env bash
# Stage 1: LibriSpeech train-clean-100, dev-{clean,other}, test-{clean,other} -> Kaldi dirs
# <out>/{train_clean_100,dev_clean,dev_other,test_clean,test_other,dev} (dev = dev_clean +
# dev_other), as ESPnet's egs2/librispeech_100/asr1/local/data.sh stages 1-3.
#
# Usage: local/data.sh --out data [--librispeech_root /data]   # local copy: /data/LibriSpeech/<part>
#        local/data.sh --out data --download_dir downloads      # from www.openslr.org/resources/12
set -euo pipefail
out=data
librispeech_root=""      # dir holding LibriSpeech/<part>; empty: ${LIBRISPEECH} (db.sh), else download
download_dir=downloads
parts=train-clean-100,dev-clean,dev-other,test-clean,test-other
__options="out librispeech_root download_dir parts"
. scripts/parse_options.sh
. ./db.sh
. ./path.sh

[ -n "${librispeech_root}" ] || librispeech_root=${LIBRISPEECH}
if [ -n "${librispeech_root}" ]; then
    src_opt=(--root "${librispeech_root}")
else
    src_opt=(--download_dir "${download_dir}")
fi
python3 "${MAIN_ROOT}/local/librispeech/prepare.py" "${src_opt[@]}" --out "${out}" --parts "${parts}"
