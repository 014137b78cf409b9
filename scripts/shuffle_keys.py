#!/usr/bin/env python3
"""Puts the lines of a key file (ESPnet shape file) in a seeded random order, in place.

ESPnet's ``batch_type: unsorted`` (OWSM's: every input is padded to the same
length) cuts batches from *consecutive* keys of the first ``--train_shape_file``
and only shuffles the batches. Kaldi-sorted keys (``<lang>_<spk>-...``) then give
batches of one speaker of one language, and for S2T each audio twice (its ASR
and ST copies): the mini base model trained on such batches did not learn to
listen. Stage 5 shuffles the training key file once, so every batch mixes
speakers, languages and tasks. The order depends only on ``--seed``.

Usage: python scripts/shuffle_keys.py [--seed 0] exp/s2t_stats/train/speech_shape
"""

import argparse
import random
from pathlib import Path

from espnet_ext.kaldi import write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in args.files:
        lines = sorted(path.read_text(encoding="utf-8").splitlines(True))  # from any order
        random.Random(args.seed).shuffle(lines)
        write_text(path, "".join(lines))


if __name__ == "__main__":
    main()
