#!/usr/bin/env python3
"""Europarl-ST v1.1 -> ESPnet S2T (OWSM v3.1 style) Kaldi data directories.

Europarl-ST (Iranzo-Sanchez et al., ICASSP 2020; https://www.mllp.upv.es/europarl-st/,
CC BY-NC 4.0, ~20 GB) holds European Parliament speeches in 9 languages with sentence-level
segments, their transcripts and translations. Layout of ``v1.1.tar.gz`` once unpacked::

    v1.1/<src>/audios/<speech_id>.m4a                # whole speeches, 44.1 kHz
    v1.1/<src>/<tgt>/<split>/segments.lst            # "<speech_id> <start_s> <end_s>"
    v1.1/<src>/<tgt>/<split>/segments.<src>          # transcript, one line per segment
    v1.1/<src>/<tgt>/<split>/segments.<tgt>          # translation, same order
    v1.1/<src>/<tgt>/<split>/speeches.lst            # speech ids (+ speakers.lst, speeches.*)

For every split and source language this writes ASR utterances (transcript of the source)
and ST utterances (translation into ``--tgt``), with OWSM v3.1 token prefixes::

    text      <utt> <deu><st_eng><notimestamps> <translation>   (ASR: <deu><asr>... <transcript>)
    text.ctc  <utt> <transcript>
    text.prev <utt> <na>          (--text_prev previous: the previous segment's target text)
    wav.scp   <speech_id> <path to .m4a>
    segments  <utt> <speech_id> <start> <end>
    utt2spk, utt2lang, utt2task, utt2corpus (europarl_st)

A segment occurs once per target language directory; ASR utterances are de-duplicated
across targets. Utterance ids: ``<speaker>_<speech_id>_<start_ms:07d>_<end_ms:07d>_<lang>_<task>``.

Validation (every problem is reported as ``file:line: what``, also into
``<out>/<split>/problems.txt``): segments.lst lines vs segments.<src>/<tgt> lines (a
mismatch is fatal: the alignment cannot be trusted), malformed segments.lst lines, missing
audio files and empty segment texts (those utterances are skipped and counted).

Usage:
    python local/europarl_st/prepare.py --root downloads/v1.1 --out data --src de,fr,it --tgt en
    python local/europarl_st/prepare.py --download_dir downloads --out data   # download first
"""

import argparse
import logging
import os
import re
import sys
import tarfile
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_ext.kaldi import write_table

PROG = "europarl_st"
URL = "https://www.mllp.upv.es/europarl-st/v1.1.tar.gz"
LANGS = ("de", "en", "es", "fr", "it", "nl", "pl", "pt", "ro")
# OWSM v3/v3.1 language tokens are ISO 639-3.
ISO3 = {"de": "deu", "en": "eng", "es": "spa", "fr": "fra", "it": "ita", "nl": "nld",
        "pl": "pol", "pt": "por", "ro": "ron"}
SPLITS = ("train", "dev", "test", "train-noisy")
CORPUS = "europarl_st"
UTT_FILES = ("text", "text.ctc", "text.prev", "utt2spk", "utt2lang", "utt2task", "utt2corpus")


class CorpusError(ValueError):
    """The corpus tree is inconsistent (the message lists every problem)."""


@dataclass
class Utterance:
    utt: str
    rec: str
    start: float
    end: float
    speaker: str
    lang: str
    task: str
    text: str      # target side, without the prefix
    source: str    # source transcript (text.ctc)
    prev: str = "<na>"


def safe_id(name: str) -> str:
    """Kaldi-safe id: no spaces/underscores (underscores separate id fields)."""
    return re.sub(r"[^A-Za-z0-9.\-]+", "-", name).strip("-") or "unknown"


def read_lines(path: Path) -> List[str]:
    """Lines of a text file, without line ends (utf-8; a final newline is optional)."""
    return path.read_text(encoding="utf-8").splitlines()


def speakers_of(split_dir: Path) -> Dict[str, str]:
    """speech id -> speaker, from speakers.lst (either line-aligned with speeches.lst, or
    ``<speech_id> <speaker>`` per line). Empty without speakers.lst."""
    spk_file, speech_file = split_dir / "speakers.lst", split_dir / "speeches.lst"
    if not spk_file.is_file():
        return {}
    spk = [s.strip() for s in read_lines(spk_file)]
    if speech_file.is_file():
        speeches = [s.split()[0] for s in read_lines(speech_file) if s.strip()]
        if len(speeches) == len(spk) and not all(len(s.split()) == 2 and s.split()[0] in speeches
                                                 for s in spk):
            return {sp: safe_id(s) for sp, s in zip(speeches, spk) if s}
    out = {}
    for s in spk:
        fields = s.split(maxsplit=1)
        if len(fields) == 2:
            out[fields[0]] = safe_id(fields[1])
    return out


def read_pair(root: Path, src: str, tgt: str, split: str, problems: List[str],
              fatal: List[str]) -> List[Tuple[str, float, float, str, str, str, int]]:
    """Segments of one <src>/<tgt>/<split> dir.

    Returns:
        (speech_id, start, end, source text, target text, speaker, line number) per
        valid segments.lst line; problems (skipped lines) and fatal problems are appended.
    """
    d = root / src / tgt / split
    lst, src_txt, tgt_txt = d / "segments.lst", d / f"segments.{src}", d / f"segments.{tgt}"
    missing = [f for f in (lst, src_txt, tgt_txt) if not f.is_file()]
    fatal.extend(f"{f}: missing" for f in missing)
    if missing:
        return []
    segs, srcs, tgts = read_lines(lst), read_lines(src_txt), read_lines(tgt_txt)
    for f, lines in ((src_txt, srcs), (tgt_txt, tgts)):
        if len(lines) != len(segs):
            fatal.append(f"{f}: {len(lines)} lines, but {lst} has {len(segs)} "
                         f"(line {min(len(lines), len(segs)) + 1} is the first unmatched)")
    if len(srcs) != len(segs) or len(tgts) != len(segs):
        return []
    speakers = speakers_of(d)
    out = []
    for num, (seg, s, t) in enumerate(zip(segs, srcs, tgts), 1):
        fields = seg.split()
        try:
            if len(fields) != 3:
                raise ValueError
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            problems.append(f"{lst}:{num}: malformed line (want '<speech_id> <start> <end>'): "
                            f"{seg!r}")
            continue
        if not 0 <= start < end:
            problems.append(f"{lst}:{num}: bad times {start} {end}")
            continue
        speech = fields[0]
        out.append((speech, start, end, " ".join(s.split()), " ".join(t.split()),
                    speakers.get(speech, safe_id(speech)), num))
    return out


def prepare_split(root: Path, split: str, srcs: Sequence[str], tgt: str,
                  tasks: Sequence[str], text_prev: str = "na", asr_pairs: str = "tgt",
                  ) -> Tuple[List[Utterance], Dict[str, str], List[str]]:
    """Utterances, recordings (speech id -> m4a path) and problems of one split."""
    utts: Dict[str, Utterance] = {}
    recs: Dict[str, str] = {}
    problems: List[str] = []
    fatal: List[str] = []
    missing_audio = set()
    for src in srcs:
        lang = ISO3[src]
        available = sorted(p.name for p in (root / src).iterdir()
                           if (p / split / "segments.lst").is_file())
        pairs = [tgt] if "st" in tasks and tgt != src else []
        if "asr" in tasks:
            # ASR segments: those of the ST pair, or (asr_pairs == "all") the union over
            # every target directory of this source, de-duplicated.
            extra = available if asr_pairs == "all" else ([] if pairs else available[:1])
            pairs += [p for p in extra if p not in pairs]
        for t in pairs:
            d = root / src / t / split
            rows = read_pair(root, src, t, split, problems, fatal)
            for speech, start, end, s_txt, t_txt, spk, num in rows:
                audio = root / src / "audios" / f"{speech}.m4a"
                if speech not in recs and speech not in missing_audio:
                    if audio.is_file():
                        recs[speech] = str(audio.resolve())
                    else:
                        missing_audio.add(speech)
                if speech in missing_audio:
                    problems.append(f"{d / 'segments.lst'}:{num}: no audio file {audio}")
                    continue
                if not s_txt:
                    problems.append(f"{d / f'segments.{src}'}:{num}: empty transcript")
                    continue
                base = (f"{spk}_{speech}_{int(round(start * 1000)):07d}_"
                        f"{int(round(end * 1000)):07d}")
                if "asr" in tasks:
                    u = f"{base}_{lang}_asr"
                    utts.setdefault(u, Utterance(u, speech, start, end, spk, lang, "asr",
                                                 s_txt, s_txt))
                if "st" in tasks and t == tgt and tgt != src:
                    if not t_txt:
                        problems.append(f"{d / f'segments.{t}'}:{num}: empty translation")
                        continue
                    task = f"st_{ISO3[tgt]}"
                    u = f"{base}_{lang}_{task}"
                    utts[u] = Utterance(u, speech, start, end, spk, lang, task, t_txt, s_txt)
    if fatal:
        raise CorpusError("\n".join(fatal))
    if text_prev == "previous":
        by_stream = defaultdict(list)
        for u in utts.values():
            by_stream[(u.rec, u.task)].append(u)
        for stream in by_stream.values():
            stream.sort(key=lambda u: u.start)
            for prev, cur in zip(stream, stream[1:]):
                if prev.end <= cur.start + 1e-3:
                    cur.prev = prev.text
    return sorted(utts.values(), key=lambda u: u.utt), recs, problems


def write_data_dir(out: Path, utts: Sequence[Utterance], recs: Dict[str, str],
                   corpus: str = CORPUS) -> None:
    """Writes a Kaldi S2T data dir (wav.scp + segments + the per-utterance tables)."""
    out.mkdir(parents=True, exist_ok=True)
    used = {u.rec for u in utts}
    write_table(out / "wav.scp", {r: p for r, p in recs.items() if r in used})
    tables = {
        "segments": {u.utt: f"{u.rec} {u.start:.3f} {u.end:.3f}" if u.end >= 0
                     else f"{u.rec} {u.start:.3f} -1" for u in utts},
        "text": {u.utt: f"<{u.lang}><{u.task}><notimestamps> {u.text}" for u in utts},
        "text.ctc": {u.utt: u.source for u in utts},
        "text.prev": {u.utt: u.prev for u in utts},
        "utt2spk": {u.utt: u.speaker for u in utts},
        "utt2lang": {u.utt: u.lang for u in utts},
        "utt2task": {u.utt: u.task for u in utts},
        "utt2corpus": {u.utt: corpus for u in utts},
    }
    for name, table in tables.items():
        write_table(out / name, table)
    spk2utt = defaultdict(list)
    for u in sorted(utts, key=lambda u: u.utt.encode()):
        spk2utt[u.speaker].append(u.utt)
    write_table(out / "spk2utt", {s: " ".join(v) for s, v in spk2utt.items()})


def download(download_dir: Path, url: str = URL) -> Path:
    """Downloads (resumable) and unpacks ``v1.1.tar.gz``; returns the ``v1.1`` dir."""
    from tqdm import tqdm

    download_dir.mkdir(parents=True, exist_ok=True)
    root = download_dir / "v1.1"
    if (download_dir / ".unpacked").is_file() and root.is_dir():
        return root
    archive = download_dir / Path(url).name
    part = archive.with_name(archive.name + ".part")
    if not archive.is_file():
        have = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        with urllib.request.urlopen(request) as resp:
            if have and getattr(resp, "status", None) != 206:  # Range ignored: start again
                have = 0
            size = resp.headers.get("Content-Length")
            total = int(size) + have if size else None
            with open(part, "ab" if have else "wb") as f, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True,
                    desc=f"download {archive.name}") as bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
        os.replace(part, archive)
    logging.info(f"unpacking {archive} -> {download_dir}")
    with tarfile.open(archive) as tar:
        tar.extractall(download_dir, filter="data")
    if not root.is_dir():
        raise CorpusError(f"{archive} did not contain v1.1/")
    (download_dir / ".unpacked").touch()
    return root


def prepare(root: Path, out: Path, srcs: Sequence[str], tgt: str,
            splits: Sequence[str] = ("train", "dev", "test"), tasks: Sequence[str] = ("asr", "st"),
            text_prev: str = "na", asr_pairs: str = "tgt") -> Dict[str, dict]:
    """Writes ``<out>/<split>`` for every split; returns per-split counts."""
    for lang in list(srcs) + [tgt]:
        if lang not in ISO3:
            raise ValueError(f"unknown language {lang!r} (Europarl-ST has {', '.join(LANGS)})")
    for src in srcs:
        if not (root / src / "audios").is_dir():
            raise CorpusError(f"{root / src / 'audios'}: missing (is --root the v1.1 dir?)")
    summary = {}
    for split in splits:
        utts, recs, problems = prepare_split(root, split, srcs, tgt, tasks, text_prev, asr_pairs)
        if not utts:
            raise CorpusError(f"{split}: no utterances for sources {','.join(srcs)}")
        d = out / split
        write_data_dir(d, utts, recs)
        (d / "problems.txt").write_text("".join(p + "\n" for p in problems), encoding="utf-8")
        for p in problems[:20]:
            logging.warning(p)
        if len(problems) > 20:
            logging.warning(f"... {len(problems) - 20} more in {d / 'problems.txt'}")
        counts = defaultdict(int)
        for u in utts:
            counts[f"{u.lang}_{u.task}"] += 1
        hours = sum(u.end - u.start for u in utts if u.task == "asr") / 3600
        logging.info(f"{d}: {len(utts)} utterances ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}), "
                     f"{len(recs)} speeches, {hours:.2f} h of ASR segments, "
                     f"{len(problems)} problems skipped")
        summary[split] = {"utts": len(utts), "problems": len(problems), **counts}
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="Unpacked Europarl-ST (the v1.1 dir).")
    parser.add_argument("--download_dir", "--download-dir", type=Path,
                        help="Without --root: download and unpack v1.1.tar.gz here.")
    parser.add_argument("--url", default=URL, help="Archive URL (file:// works too).")
    parser.add_argument("--out", required=True, type=Path, help="Output: <out>/<split>.")
    parser.add_argument("--src", default="de,fr,it", help="Source languages (comma-separated).")
    parser.add_argument("--tgt", default="en", help="ST target language.")
    parser.add_argument("--splits", default="train,dev,test", help="Splits (comma-separated).")
    parser.add_argument("--tasks", default="asr,st", help="asr, st or both.")
    parser.add_argument("--text_prev", "--text-prev", default="na", choices=["na", "previous"],
                        help="text.prev: <na>, or the previous adjacent segment's target text.")
    parser.add_argument("--asr_pairs", "--asr-pairs", default="tgt", choices=["tgt", "all"],
                        help="ASR segments from the <src>/<tgt> dir only, or from every "
                             "<src>/* dir (union, de-duplicated).")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    try:
        if args.root is None:
            if args.download_dir is None:
                parser.error("give --root (unpacked v1.1) or --download_dir")
            args.root = download(args.download_dir, args.url)
        splits = args.splits.split(",")
        for s in splits:
            if s not in SPLITS:
                parser.error(f"unknown split {s!r} ({', '.join(SPLITS)})")
        prepare(args.root, args.out, args.src.split(","), args.tgt, splits,
                args.tasks.split(","), args.text_prev, args.asr_pairs)
    except CorpusError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
