#!/usr/bin/env python3
"""Merges Kaldi S2T data dirs (Europarl-ST, Voxforge, ...) into one, as Kaldi's
``utils/combine_data.sh`` does: wav.scp, segments and every per-utterance table
(text, text.ctc, text.prev, utt2spk, utt2lang, utt2task, utt2corpus) are concatenated and
sorted; spk2utt is rebuilt. Recording or utterance ids that occur in two inputs, or a table
one input has and another lacks, are errors (the corpus label ``utt2corpus`` must be in all).

Usage:
    python local/europarl_st/combine.py --out data/train data/europarl_st/train data/voxforge/train
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from espnet_ext.kaldi import read_table, write_table

TABLES = ("wav.scp", "segments", "text", "text.ctc", "text.prev", "utt2spk", "utt2lang",
          "utt2task", "utt2corpus")


def combine(inputs, out: Path) -> int:
    merged = {}
    for name in TABLES:
        have = [d for d in inputs if (d / name).is_file()]
        if not have:
            continue
        if len(have) != len(inputs):
            lacking = [str(d) for d in inputs if d not in have]
            raise ValueError(f"{name} is in {have[0]} but not in {', '.join(lacking)}")
        table = {}
        for d in inputs:
            part = read_table(d / name, allow_empty=True)
            dup = sorted(set(part) & set(table))
            if dup:
                raise ValueError(f"{d / name}: ids also in another input, e.g. {dup[:3]}")
            table.update(part)
        merged[name] = table
    out.mkdir(parents=True, exist_ok=True)
    for name, table in merged.items():
        write_table(out / name, table)
    spk2utt = defaultdict(list)
    for utt in sorted(merged["utt2spk"], key=str.encode):
        spk2utt[merged["utt2spk"][utt]].append(utt)
    (out / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in
                                         sorted(spk2utt.items(), key=lambda x: x[0].encode())))
    problems = [p for d in inputs if (d / "problems.txt").is_file()
                for p in (d / "problems.txt").read_text().splitlines()]
    (out / "problems.txt").write_text("".join(p + "\n" for p in problems))
    print(f"{out}: {len(merged['text'])} utterances from {', '.join(map(str, inputs))}")
    return len(merged["text"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("inputs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        combine(args.inputs, args.out)
    except ValueError as e:
        print(f"combine: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
