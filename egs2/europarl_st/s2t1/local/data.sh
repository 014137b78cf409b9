#!/usr/bin/env bash
# Stage 1: Europarl-ST v1.1 (+ optionally Voxforge) -> Kaldi dirs <out>/{train,dev,test[,vftest]}.
#
#   <out>/europarl_st/<split>   local/europarl_st/prepare.py (downloads v1.1.tar.gz when
#                               --europarl_st_root is empty)
#   <out>/voxforge/<split>      local/voxforge/prepare.py (--use_voxforge true)
#   <out>/train, <out>/dev      Europarl-ST (+ Voxforge) merged; utt2corpus says which
#   <out>/test                  Europarl-ST test
#   <out>/vftest                Voxforge test (scored and analysed separately)
#
# Usage: local/data.sh --out data --europarl_st_root /data/europarl-st/v1.1 --src_langs de,fr,it
set -euo pipefail
out=data
europarl_st_root=""        # unpacked v1.1 dir; empty: download into ${download_dir}
download_dir=downloads
src_langs=de,fr,it
tgt_lang=en
asr_pairs=tgt              # ASR segments from the <src>/<tgt> dirs only, or "all" <src>/* dirs
text_prev=na               # na | previous
use_voxforge=false
voxforge_root=""           # <root>/<lang>/... archives or sessions; empty: download
voxforge_max_sessions=0    # download limit per language (0: all)
voxforge_test_speakers=10  # per language
voxforge_dev_speakers=10
__options="out europarl_st_root download_dir src_langs tgt_lang asr_pairs text_prev use_voxforge voxforge_root voxforge_max_sessions voxforge_test_speakers voxforge_dev_speakers"
. scripts/parse_options.sh

local_root=${MAIN_ROOT}/local
if [ -n "${europarl_st_root}" ]; then
    src_opt=(--root "${europarl_st_root}")
else
    src_opt=(--download_dir "${download_dir}/europarl_st")
fi
python3 "${local_root}/europarl_st/prepare.py" "${src_opt[@]}" --out "${out}/europarl_st" \
    --src "${src_langs}" --tgt "${tgt_lang}" --asr_pairs "${asr_pairs}" --text_prev "${text_prev}"

sets=(europarl_st)
if ${use_voxforge}; then
    if [ -n "${voxforge_root}" ]; then
        vf_opt=(--root "${voxforge_root}")
    else
        vf_opt=(--download_dir "${download_dir}/voxforge" --max_sessions "${voxforge_max_sessions}")
    fi
    python3 "${local_root}/voxforge/prepare.py" "${vf_opt[@]}" --out "${out}/voxforge" \
        --langs "${src_langs}" --test_speakers "${voxforge_test_speakers}" \
        --dev_speakers "${voxforge_dev_speakers}"
    sets+=(voxforge)
fi

for split in train dev; do
    python3 "${local_root}/europarl_st/combine.py" --out "${out}/${split}" \
        $(for s in "${sets[@]}"; do echo "${out}/${s}/${split}"; done)
done
python3 "${local_root}/europarl_st/combine.py" --out "${out}/test" "${out}/europarl_st/test"
if ${use_voxforge}; then
    python3 "${local_root}/europarl_st/combine.py" --out "${out}/vftest" "${out}/voxforge/test"
fi
