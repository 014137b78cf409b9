#!/usr/bin/env python3
"""A miniature LibriSpeech tree in the official layout, synthesised offline (espeak-ng + sox).

    <out>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac  (16 kHz mono)
    <out>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

Each speaker is an espeak-ng voice variant; the sentences are upper-case, as LibriSpeech's.
For tests and for trying the recipe without the 6 GB download; the numbers it gives mean nothing.

Usage:
    python local/librispeech/make_mini.py --out /tmp/mini --utts 6
    ./run.sh --preset tiny --nbpe 30 --librispeech_root /tmp/mini ...
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

PARTS = {  # part -> speakers (LibriSpeech speaker ids are numbers)
    "train-clean-100": ["103", "1034"],
    "dev-clean": ["1272"],
    "dev-other": ["116"],
    "test-clean": ["1089"],
    "test-other": ["1688"],
}
VOICES = ["en+m1", "en+f2", "en+m3", "en+f3", "en+m4", "en+f4"]
WORDS = ("THE CAT SAT ON A MAT AND A DOG RAN TO THE OLD RED DOOR OF HIS HOUSE BY THE SEA "
         "SHE SAW TWO BIRDS IN A GREEN TREE").split()


def sentence(k: int) -> str:
    n = 3 + k % 4
    return " ".join(WORDS[(7 * k + 3 * i) % len(WORDS)] for i in range(n))


def synth(text: str, voice: str, flac: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "-w", tmp.name, text], check=True)
        subprocess.run(["sox", tmp.name, "-r", "16000", "-c", "1", "-b", "16", str(flac)], check=True)


def make_mini(out: Path, utts: int = 4) -> Path:
    """Writes the tree under ``out/LibriSpeech``; returns that directory."""
    root = out / "LibriSpeech"
    k = 0
    for part, speakers in PARTS.items():
        for s, spk in enumerate(speakers):
            chapter = str(100 + s)
            d = root / part / spk / chapter
            d.mkdir(parents=True, exist_ok=True)
            lines = []
            n = utts if part.startswith("train") else max(2, utts // 2)
            for u in range(n):
                utt = f"{spk}-{chapter}-{u:04d}"
                text = sentence(k)
                k += 1
                synth(text, VOICES[(int(spk) + s) % len(VOICES)], d / f"{utt}.flac")
                lines.append(f"{utt} {text}")
            (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    (root / "LICENSE.TXT").write_text("miniature synthetic LibriSpeech-layout tree\n")
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--utts", type=int, default=4, help="Utterances per training speaker.")
    args = parser.parse_args(argv)
    print(make_mini(args.out, args.utts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
