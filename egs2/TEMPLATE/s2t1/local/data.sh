#!/usr/bin/env bash
# Stage 1 of your corpus: Kaldi dirs <out>/{train,dev,test}. This example takes dirs you made
# elsewhere (<data_root>/{train,dev,test}; the format: run.sh's header and README.md), checks
# them (scripts/validate_data_dir.py: sorted unique keys, same utterances in every table,
# <lang><task> prefixes, audio files present) and copies their tables. Replace it with your
# corpus' own preparation (download, convert, write the tables), as local/data.sh does in
# egs2/europarl_st/s2t1.
#
# Usage: local/data.sh --data_root /data/mycorpus --out data
set -euo pipefail
data_root=""
out=data
__options="data_root out"
. scripts/parse_options.sh

[ -n "${data_root}" ] || { echo "$0: --data_root is empty: the dir holding your train, dev, test Kaldi dirs" >&2; exit 1; }
for dset in train dev test; do
    [ -d "${data_root}/${dset}" ] || { echo "$0: ${data_root}/${dset}: no such Kaldi dir" >&2; exit 1; }
done
python3 scripts/validate_data_dir.py "${data_root}"/{train,dev,test}
for dset in train dev test; do
    mkdir -p "${out}/${dset}"
    for f in wav.scp segments text text.ctc text.prev utt2spk spk2utt utt2lang utt2task utt2corpus utt2event; do
        [ -f "${data_root}/${dset}/${f}" ] && cp "${data_root}/${dset}/${f}" "${out}/${dset}/${f}"
    done
done
echo "$0: ${data_root}/{train,dev,test} -> ${out}"
