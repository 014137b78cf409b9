#!/usr/bin/env python3
"""LibriSpeech (train-clean-100, dev, test) -> ESPnet ASR Kaldi data directories.

LibriSpeech (https://www.openslr.org/12, CC BY 4.0) is read English audiobook speech,
16 kHz FLAC. The official archives unpack to::

    LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   ("<utt-id> TEXT")

``--root`` is a directory holding ``LibriSpeech/`` (or ``LibriSpeech`` itself);
``--download_dir`` downloads and unpacks ``<part>.tar.gz`` from openslr first (resumable: a
finished part leaves ``<part>/.complete``). As ESPnet's ``egs2/librispeech_100/asr1``:
``data/<part with _>/{wav.scp,text,utt2spk,spk2utt}`` (utterance ids are the file stems, so
the speaker prefix keeps Kaldi sorting consistent) and ``data/dev`` = dev_clean + dev_other.
wav.scp points at the FLAC files (ESPnet reads them with soundfile). Problems (a transcript
line without audio, audio without transcript, an empty transcript, a rate other than 16 kHz)
are reported as ``file: what`` and the utterance is skipped.

Usage:
    python local/librispeech/prepare.py --root /data/LibriSpeech --out data
    python local/librispeech/prepare.py --download_dir downloads --out data
    python local/librispeech/prepare.py --root ... --parts dev-clean,test-clean --out data
"""

import argparse
import logging
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Dict, List, Tuple

PROG = "librispeech/prepare"
URL = "https://www.openslr.org/resources/12"
PARTS = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")
RATE = 16000


def download(part: str, download_dir: Path, url: str = URL) -> None:
    """Downloads and unpacks ``<part>.tar.gz`` into ``download_dir/LibriSpeech/<part>``."""
    done = download_dir / "LibriSpeech" / part / ".complete"
    if done.exists():
        logging.info(f"{part}: already unpacked in {done.parent}")
        return
    download_dir.mkdir(parents=True, exist_ok=True)
    archive = download_dir / f"{part}.tar.gz"
    if not archive.exists():
        logging.info(f"downloading {url}/{part}.tar.gz -> {archive}")
        tmp = archive.with_suffix(".part")
        with urllib.request.urlopen(f"{url}/{part}.tar.gz") as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, length=1 << 20)
        tmp.rename(archive)
    logging.info(f"unpacking {archive}")
    with tarfile.open(archive) as tar:
        tar.extractall(download_dir, filter="data")
    done.touch()


def read_part(part_dir: Path) -> Tuple[List[Tuple[str, str, Path, str]], List[str]]:
    """(utt_id, speaker, flac, text) of one LibriSpeech part, and the problems found."""
    import soundfile

    utts, problems = [], []
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        speaker = trans.parent.parent.name
        listed = set()
        for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            utt = parts[0]
            listed.add(utt)
            flac = trans.parent / f"{utt}.flac"
            if len(parts) < 2:
                problems.append(f"{trans}:{n}: empty transcript of {utt}")
            elif not flac.exists():
                problems.append(f"{trans}:{n}: no audio {flac.name}")
            elif soundfile.info(str(flac)).samplerate != RATE:
                rate = soundfile.info(str(flac)).samplerate
                problems.append(f"{flac}: {rate} Hz, expected {RATE}")
            else:
                utts.append((utt, speaker, flac.resolve(), parts[1]))
        for flac in sorted(trans.parent.glob("*.flac")):
            if flac.stem not in listed:
                problems.append(f"{flac}: not in {trans.name}")
    return utts, problems


def write_dir(out: Path, utts: List[Tuple[str, str, Path, str]]) -> None:
    """Kaldi dir: wav.scp, text, utt2spk, spk2utt (sorted by utterance id)."""
    out.mkdir(parents=True, exist_ok=True)
    utts = sorted(utts)
    spk2utt: Dict[str, List[str]] = {}
    for utt, spk, _, _ in utts:
        spk2utt.setdefault(spk, []).append(utt)
    tables = {
        "wav.scp": [f"{u} {p}" for u, _, p, _ in utts],
        "text": [f"{u} {t}" for u, _, _, t in utts],
        "utt2spk": [f"{u} {s}" for u, s, _, _ in utts],
        "spk2utt": [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())],
    }
    for name, lines in tables.items():
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def find_root(root: Path) -> Path:
    """The ``LibriSpeech`` directory inside (or at) ``root``."""
    for cand in (root / "LibriSpeech", root):
        if any((cand / p).is_dir() for p in PARTS):
            return cand
    raise FileNotFoundError(f"no LibriSpeech parts ({', '.join(PARTS)}) under {root}")


def main(argv=None) -> int:
    import soundfile

    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--root", type=Path, help="Local copy: a dir holding LibriSpeech/<part>.")
    src.add_argument("--download_dir", "--download-dir", type=Path,
                     help="Download the parts from openslr here.")
    parser.add_argument("--out", type=Path, required=True, help="Data dir (data/<part>).")
    parser.add_argument("--parts", default=",".join(PARTS), help="Comma-separated parts.")
    parser.add_argument("--url", default=URL, help="Mirror of openslr resource 12.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown --parts {unknown} (choose from {PARTS})")
    if args.download_dir is not None:
        for part in parts:
            download(part, args.download_dir, args.url)
    root = find_root(args.root if args.root is not None else args.download_dir)
    data: Dict[str, list] = {}
    for part in parts:
        if not (root / part).is_dir():
            logging.error(f"{root / part}: missing (download it or drop it from --parts)")
            return 1
        utts, problems = read_part(root / part)
        for p in problems:
            logging.warning(f"skipped: {p}")
        if not utts:
            logging.error(f"{root / part}: no usable utterance")
            return 1
        name = part.replace("-", "_")
        write_dir(args.out / name, utts)
        data[name] = utts
        hours = sum(soundfile.info(str(u[2])).frames for u in utts) / RATE / 3600
        logging.info(f"{args.out / name}: {len(utts)} utterances, {hours:.2f} h, "
                     f"{len({u[1] for u in utts})} speakers, {len(problems)} skipped")
    dev = [u for name in ("dev_clean", "dev_other") for u in data.get(name, [])]
    if dev:  # as ESPnet's local/data.sh stage 3 (utils/combine_data.sh)
        write_dir(args.out / "dev", dev)
        logging.info(f"{args.out / 'dev'}: {len(dev)} utterances (dev_clean + dev_other)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
