#!/usr/bin/env python3
"""Checks an ESPnet S2T (OWSM-style) Kaldi data directory, as Kaldi's
validate_data_dir.sh does for ASR, plus what the S2T task needs.

Checks: required files present (wav.scp, text, utt2spk); every table sorted
in C byte order with unique keys; the utterance ids of text, utt2spk,
text.ctc, text.prev, spk_embed.scp and event_embed.scp identical; wav.scp
keys = recordings of segments (or = utterances without segments); segment
times valid; audio files present (pipes are not run); text lines start with
``<lang><task>`` and a time token (``<deu><st_eng><notimestamps> ...``);
embedding npys present, 1-D, one size per file (with --check_npy); audio
readable, non-empty, 16 kHz mono (with --check_audio); every utterance long
enough for the encoder's subsampling (with --config: ``speech_shape`` if
present, else the audio files' lengths), e.g. >= 960 samples for
``input_layer: conv2d`` at hop 160, which ESPnet would reject with
TooShortUttError only once training meets it.

Prints one line per problem (``file:line: what``; the first 20) and exits 1
if any. Relative audio paths are resolved from the current directory, as
ESPnet does (run it from the recipe directory).

Usage:
    python scripts/validate_data_dir.py data/train
    python scripts/validate_data_dir.py --check_npy --langs eng,deu,fra,ita dump/raw/test
    python scripts/validate_data_dir.py --check_audio --config conf/tiny/train_base.yaml \
        dump/raw/train
"""

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

UTT_FILES = ("text", "utt2spk", "text.ctc", "text.prev", "spk_embed.scp", "event_embed.scp")
PREFIX = re.compile(r"^<([a-z]{2,3})><(asr|st_[a-z]{2,3})>(<notimestamps>|<\d+\.\d\d>)")


class Report:
    def __init__(self):
        self.problems: List[str] = []

    def __call__(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")


def read(path: Path, report: Report) -> Optional[Dict[str, str]]:
    """A Kaldi table; reports unsorted, duplicated and value-less lines."""
    if not path.is_file():
        return None
    table, prev = {}, None
    for num, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            report(f"{path}:{num}", "empty line")
            continue
        key, _, value = line.partition(" ")
        if not value.strip():
            report(f"{path}:{num}", f"no value for {key}")
        if key in table:
            report(f"{path}:{num}", f"duplicated key {key}")
        if prev is not None and key.encode() < prev.encode():
            report(f"{path}:{num}", f"not sorted (LC_ALL=C): {key} after {prev}")
        table[key], prev = value.strip(), key
    return table


def validate(data_dir: Path, langs: Optional[List[str]] = None, check_npy: bool = False,
             check_audio: bool = False, min_samples: Optional[Tuple[int, str]] = None,
             tasks: Optional[List[str]] = None, asr: bool = False) -> List[str]:
    """Problems of one data dir, one ``where: what`` line each (empty: valid).

    Args:
        data_dir: The data dir.
        langs, tasks: Allowed ``<lang>``/``<task>`` tokens (None: any).
        check_npy: Load every embedding npy.
        check_audio: Open every audio file (16 kHz mono, non-empty).
        min_samples: (samples, why) from ``espnet_ext.context.audio.min_samples_for``.
        asr: Plain ASR text (ESPnet's asr task): no ``<lang><task>`` prefix expected.
    """
    report = Report()
    tables = {}
    for name in ("wav.scp", "segments", "spk2utt", "speech_shape") + UTT_FILES:
        tables[name] = read(data_dir / name, report)
    for name in ("wav.scp", "text", "utt2spk"):
        if tables[name] is None:
            report(str(data_dir / name), "missing (required)")
    if report.problems and tables["text"] is None:
        return report.problems
    utts = set(tables["text"])
    for name in UTT_FILES[1:]:
        table = tables[name]
        if table is None:
            continue
        for utt in sorted(utts - set(table))[:5]:
            report(str(data_dir / name), f"no entry for {utt} (in text)")
        for utt in sorted(set(table) - utts)[:5]:
            report(str(data_dir / name), f"{utt} is not in text")
    wavs, segments = tables["wav.scp"] or {}, tables["segments"]
    if segments is not None:
        if set(segments) != utts:
            report(str(data_dir / "segments"), "utterances differ from text")
        for utt, value in segments.items():
            fields = value.split()
            if len(fields) != 3 or fields[0] not in wavs:
                report(str(data_dir / "segments"), f"{utt}: bad line or unknown recording: {value}")
                continue
            start, end = float(fields[1]), float(fields[2])
            if start < 0 or (end != -1 and end <= start):
                report(str(data_dir / "segments"), f"{utt}: bad times {start} {end}")
    elif wavs and set(wavs) != utts:
        missing = sorted(utts - set(wavs))[:5]
        report(str(data_dir / "wav.scp"), f"keys differ from text (e.g. missing {missing})")
    for key, spec in wavs.items():
        if not spec.endswith("|") and not Path(spec).is_file():
            report(str(data_dir / "wav.scp"), f"{key}: no such file {spec}")
    for utt, text in tables["text"].items():
        if asr:  # an empty transcript is already reported by read()
            continue
        m = PREFIX.match(text)
        if not m:
            report(str(data_dir / "text"), f"{utt}: does not start with <lang><task><notimestamps>: {text[:40]!r}")
        elif langs and m.group(1) not in langs:
            report(str(data_dir / "text"), f"{utt}: unknown language <{m.group(1)}> (expected {langs})")
        elif tasks and m.group(2) not in tasks:
            report(str(data_dir / "text"), f"{utt}: unknown task <{m.group(2)}> (expected {tasks})")
    spk2utt = tables["spk2utt"]
    if spk2utt is not None and tables["utt2spk"] is not None:
        pairs = {(u, s) for s, us in spk2utt.items() for u in us.split()}
        if pairs != {(u, s) for u, s in tables["utt2spk"].items()}:
            report(str(data_dir / "spk2utt"), "does not match utt2spk (regenerate it: "
                   "utils/utt2spk_to_spk2utt.pl)")
    lengths = {}
    if tables["speech_shape"] is not None:
        for utt, value in tables["speech_shape"].items():
            try:
                lengths[utt] = int(value.split(",")[0])
            except ValueError:
                report(str(data_dir / "speech_shape"), f"{utt}: not a sample count: {value}")
    if check_audio or (min_samples and not lengths):
        import soundfile as sf

        for utt, spec in wavs.items():
            if spec.endswith("|") or not Path(spec).is_file():
                continue
            try:
                info = sf.info(spec)
            except (sf.LibsndfileError, RuntimeError) as e:
                report(str(data_dir / "wav.scp"), f"{utt}: unreadable audio {spec}: {e}")
                continue
            if info.frames == 0 or info.samplerate != 16000 or info.channels != 1:
                report(str(data_dir / "wav.scp"), f"{utt}: {spec}: {info.frames} samples, "
                       f"{info.samplerate} Hz, {info.channels} channel(s); expected 16 kHz "
                       "mono (scripts/format_data.py checks and filters)")
            if segments is None:
                if utt in lengths and lengths[utt] != info.frames:
                    report(str(data_dir / "speech_shape"), f"{utt}: {lengths[utt]} samples, "
                           f"but {spec} has {info.frames} (rerun scripts/format_data.py)")
                lengths[utt] = info.frames
    if min_samples:
        for utt in sorted(u for u, n in lengths.items() if 0 < n < min_samples[0])[:20]:
            report(str(data_dir), f"{utt}: {lengths[utt]} samples, shorter than the "
                   f"{min_samples[0]} the encoder needs ({min_samples[1]}); drop it "
                   "(scripts/format_data.py does)")
    if check_npy:
        import numpy as np

        for name in ("spk_embed.scp", "event_embed.scp"):
            sizes: Dict[str, tuple] = {}
            for utt, path in (tables[name] or {}).items():
                try:
                    x = np.load(path)
                except (OSError, ValueError) as e:
                    report(str(data_dir / name), f"{utt}: cannot read {path}: {e}")
                    continue
                if x.ndim != 1 or not np.isfinite(x).all():
                    report(str(data_dir / name), f"{utt}: {path} must be a finite 1-D vector, got {x.shape}")
                sizes[utt] = x.shape
            if len(set(sizes.values())) > 1:  # name the utterances off the common size
                common = Counter(sizes.values()).most_common(1)[0][0]
                for utt, shape in sizes.items():
                    if shape != common:
                        report(str(data_dir / name), f"{utt}: size {', '.join(map(str, shape))}, "
                               f"the others have {', '.join(map(str, common))} (re-extract it, "
                               "recipe stage 3)")
    return report.problems


def main(cmd=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", type=Path, nargs="+", help="Data directories to check.")
    p.add_argument("--langs", help="Comma-separated ISO 639-3 codes allowed in text prefixes.")
    p.add_argument("--tasks", help="Comma-separated task tokens allowed (e.g. asr,st_eng).")
    p.add_argument("--asr", action="store_true",
                   help="Plain ASR dirs (asr task): text has no <lang><task> prefix.")
    p.add_argument("--check_npy", "--check-npy", action="store_true", help="Also load every embedding npy.")
    p.add_argument("--check_audio", "--check-audio", action="store_true",
                   help="Also open every audio file (readable, non-empty, 16 kHz mono).")
    p.add_argument("--config", type=Path,
                   help="Training YAML: flag utterances too short for its encoder's subsampling.")
    args = p.parse_args(cmd)
    langs = args.langs.split(",") if args.langs else None
    tasks = args.tasks.split(",") if args.tasks else None
    min_samples = None
    if args.config:
        import yaml

        from espnet_ext.context.audio import min_samples_for

        min_samples = min_samples_for(yaml.safe_load(args.config.read_text()))
    bad = 0
    for d in args.data_dir:
        problems = validate(d, langs, args.check_npy, args.check_audio, min_samples, tasks,
                            args.asr)
        for line in problems[:20]:
            print(line, file=sys.stderr)
        if len(problems) > 20:
            print(f"... and {len(problems) - 20} more", file=sys.stderr)
        n = len(read(d / "text", Report()) or {})
        print(f"{d}: {n} utterances, {'OK' if not problems else f'{len(problems)} problems'}")
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
