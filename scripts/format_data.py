#!/usr/bin/env python3
"""Stage 2: format a Kaldi data dir into ``dump/raw/<set>`` (s2t.sh stages 3-4).

Checks every utterance before writing anything: its audio is present, readable,
non-empty, 16 kHz mono (the model must get 16 kHz mono audio, and this recipe
never guesses); its ``text`` starts with a ``<lang><task>`` pair (with
``--langs``/``--tasks``: one of the token list) and a time token; it is in every
table (wav.scp, text, utt2spk, ...). A bad utterance stops the run with one line
naming it, its file and what to do, and every bad utterance is listed in
``<out>/bad_utts`` (``<utt> <reason>``); with ``--skip_bad_utts`` they are left
out instead and the run goes on.

Length filter (always on, each dropped utterance logged with the reason and
listed in ``<out>/bad_utts``): longer than the preprocessor's ``speech_length``
(it would be cut), or shorter than ``max(0.1 s, what the encoder's subsampling
needs)``, e.g. 7 frames (960 samples at hop 160) for ``input_layer: conv2d``
(ESPnet raises TooShortUttError on shorter input during training).

Writes the kept utterances' files plus ``speech_shape`` (``<utt> <samples>``),
each atomically. With ``--split_by_lang_task`` it also writes one dir per
(source language, task), ``<out>_<lang>_<task>`` (e.g. ``dump/raw/test_deu_st_eng``),
so every test subset is decoded with its own ``--lang_sym/--task_sym``.

Usage:
    python scripts/format_data.py --data_dir data/test --out dump/raw/test \\
        --config conf/base/train_base.yaml --split_by_lang_task \\
        --langs eng,deu,fra,ita --tasks asr,st_eng [--skip_bad_utts]
"""

import argparse
import logging
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile as sf
import yaml

from espnet_ext.context.audio import min_samples_for
from espnet_ext.kaldi import read_table, write_table
from espnet_ext.tokens import OWSM_LANGS

PROG = "format_data"
FS = 16000
MIN_SECONDS = 0.1
# Per-utterance files carried over (when present), all filtered to the kept utterances.
UTT_FILES = ("wav.scp", "text", "text.ctc", "text.prev", "utt2spk", "utt2lang",
             "utt2task", "utt2event", "utt2snr", "utt2corpus")
REQUIRED = ("wav.scp", "text", "utt2spk")
PREFIX = re.compile(r"^<([^<>\s]+)><([^<>\s]+)>(<notimestamps>|<\d+\.\d\d>)")


class BadDataError(ValueError):
    """A data dir has bad utterances (and --skip_bad_utts is off)."""


def write_dir(out: Path, tables: Dict[str, Dict[str, str]], utts: List[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_table(out / name, {u: table[u] for u in utts})
    spk2utt = defaultdict(list)
    for u in sorted(utts):
        spk2utt[tables["utt2spk"][u]].append(u)
    write_table(out / "spk2utt", {s: " ".join(us) for s, us in spk2utt.items()})


def check_audio(path: str, info_cache: dict) -> Tuple[int, Optional[str]]:
    """(samples, None) for a usable 16 kHz mono file, else (0, what is wrong + the fix)."""
    if path.endswith("|"):
        return 0, f"piped wav.scp entry {path!r} is not supported: write the audio to a file"
    if path not in info_cache:
        if not os.path.isfile(path):
            info_cache[path] = (0, f"{path}: no such file (fix wav.scp or restore the file)")
        else:
            try:
                info = sf.info(path)
            except (sf.LibsndfileError, RuntimeError) as e:
                reason = str(e).split(": ")[-1] or type(e).__name__
                info_cache[path] = (0, f"{path}: unreadable audio ({reason}); "
                                       "re-encode it as 16 kHz mono WAV/FLAC")
            else:
                if info.frames == 0:
                    info_cache[path] = (0, f"{path}: empty audio (0 samples)")
                elif info.samplerate != FS or info.channels != 1:
                    info_cache[path] = (0, f"{path}: {info.samplerate} Hz, {info.channels} "
                                           f"channel(s); expected {FS} Hz mono (resample it "
                                           f"before this stage, e.g. sox in.wav -r {FS} -c 1 "
                                           "out.wav)")
                else:
                    info_cache[path] = (info.frames, None)
    return info_cache[path]


def check_text(text: str, langs: Optional[Sequence[str]],
               tasks: Optional[Sequence[str]]) -> Optional[str]:
    """None if ``text`` starts with a known ``<lang><task><time>`` prefix, else why not."""
    m = PREFIX.match(text)
    if not m:
        return (f"text {text[:40]!r} does not start with <lang><task><notimestamps> "
                "(e.g. '<deu><st_eng><notimestamps> ...')")
    lang, task = m.group(1), m.group(2)
    if langs and lang not in langs:
        return (f"unknown language token <{lang}> in text (the token list has "
                f"{' '.join(f'<{x}>' for x in langs)}; fix the text, or add the language to "
                "--langs and the token list)")
    if tasks and task not in tasks:
        return (f"unknown task token <{task}> in text (the token list has "
                f"{' '.join(f'<{x}>' for x in tasks)}; fix the text, or add the task to --tasks "
                "and the token list)")
    return None


def format_data(data_dir: Path, out: Path, speech_length: float, split: bool,
                min_samples: Tuple[int, str] = (1, "at least one sample"),
                skip_bad_utts: bool = False, langs: Optional[Sequence[str]] = None,
                tasks: Optional[Sequence[str]] = None) -> dict:
    """Checks and formats one data dir (see the module docstring).

    Args:
        data_dir: Kaldi data dir (wav.scp, text, utt2spk, ...).
        out: Output dir; ``<out>/bad_utts`` lists every utterance left out.
        speech_length: Longest utterance kept (seconds).
        split: Also write ``<out>_<lang>_<task>`` subsets.
        min_samples: (samples, why) from ``min_samples_for``; the length filter
            uses ``max(MIN_SECONDS * FS, samples)``.
        skip_bad_utts: Leave bad utterances out instead of raising.
        langs, tasks: Allowed ``<lang>``/``<task>`` tokens (without brackets);
            None: any well-formed token.

    Returns:
        dict: {"kept", "dropped" (length filter), "bad" (skipped), "subsets"}.

    Raises:
        BadDataError: Bad utterances and ``skip_bad_utts`` off.
    """
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data dir (run stage 1 first)")
    if (data_dir / "segments").exists():
        raise BadDataError(f"{data_dir}/segments: this stage does not cut segments; "
                           "write one wav per utterance first")
    for required in REQUIRED:
        if not (data_dir / required).exists():
            raise FileNotFoundError(f"{data_dir / required}: missing (required)")
    tables = {n: read_table(data_dir / n) for n in UTT_FILES if (data_dir / n).exists()}
    bad: Dict[str, str] = {}  # utt -> reason (bad data)
    keys = sorted(tables["wav.scp"])
    for name, table in tables.items():
        for utt in sorted(set(keys) - set(table)):
            bad.setdefault(utt, f"not in {data_dir / name} (every table needs every utterance)")
        for utt in sorted(set(table) - set(keys)):
            bad.setdefault(utt, f"in {data_dir / name} but not in {data_dir / 'wav.scp'}")
    info_cache: dict = {}
    floor = max(int(MIN_SECONDS * FS), min_samples[0])
    max_samples = int(round(speech_length * FS))
    shapes, kept, dropped = {}, [], {}
    for utt in keys:
        if utt in bad:
            continue
        reason = check_text(tables["text"][utt], langs, tasks)
        if reason:
            bad[utt] = f"{data_dir / 'text'}: {reason}"
            continue
        frames, reason = check_audio(tables["wav.scp"][utt], info_cache)
        if reason:
            bad[utt] = reason
        elif frames > max_samples:
            dropped[utt] = f"too long: {frames / FS:.2f} s > speech_length {speech_length} s"
        elif frames < floor:
            dropped[utt] = (f"too short: {frames} samples ({frames / FS:.3f} s) < {floor} "
                            f"(kept: >= {MIN_SECONDS} s and >= {min_samples[0]} samples = "
                            f"{min_samples[1]})")
        else:
            kept.append(utt)
            shapes[utt] = str(frames)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "bad_utts", {**dropped, **bad})
    for utt, reason in dropped.items():
        logging.warning(f"drop {utt}: {reason}")
    if bad:
        first = sorted(bad)[0]
        if not skip_bad_utts:
            raise BadDataError(
                f"{len(bad)} bad utterance(s) in {data_dir}, first: {first}: {bad[first]} "
                f"(all listed in {out / 'bad_utts'}; fix them or rerun with --skip_bad_utts)")
        for utt in sorted(bad):
            logging.warning(f"skip {utt}: {bad[utt]}")
    if not kept:
        raise BadDataError(f"{data_dir}: no utterance left (reasons in {out / 'bad_utts'})")
    kept_tables = {n: {u: t[u] for u in kept} for n, t in tables.items()}
    write_dir(out, kept_tables, kept)
    write_table(out / "speech_shape", shapes)
    subsets = {}
    if split:
        for utt in kept:  # by the <lang><task> prefix of text, what the model is told
            lang, task = PREFIX.match(kept_tables["text"][utt]).group(1, 2)
            subsets.setdefault(f"{out.name}_{lang}_{task}", []).append(utt)
        for name, utts in sorted(subsets.items()):
            write_dir(out.parent / name, kept_tables, utts)
            write_table(out.parent / name / "speech_shape", {u: shapes[u] for u in utts})
    seconds = sum(int(s) for s in shapes.values()) / FS
    logging.info(f"{out}: kept {len(kept)}, dropped {len(dropped)} (length), skipped "
                 f"{len(bad)} bad utterances ({seconds / 3600:.2f} h kept)"
                 + (f"; subsets {', '.join(sorted(subsets))}" if subsets else ""))
    return {"kept": len(kept), "dropped": len(dropped), "bad": len(bad),
            "subsets": sorted(subsets)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_dir", "--data-dir", required=True, type=Path, help="Kaldi data dir (input).")
    parser.add_argument("--out", required=True, type=Path, help="Output dir (dump/raw/<set>).")
    parser.add_argument("--config", required=True, type=Path,
                        help="Training YAML: preprocessor_conf.speech_length is the longest "
                             "utterance kept (seconds); frontend_conf.hop_length and "
                             "encoder_conf.input_layer give the shortest.")
    parser.add_argument("--split_by_lang_task", "--split-by-lang-task", action="store_true",
                        help="Also write <out>_<lang>_<task> subsets (utt2lang, utt2task).")
    parser.add_argument("--skip_bad_utts", "--skip-bad-utts", action="store_true",
                        help="Leave bad utterances out (listed in <out>/bad_utts) instead of "
                             "stopping.")
    parser.add_argument("--langs", default=None,
                        help="Comma-separated <lang> tokens allowed in text, those of the "
                             f"token list (e.g. {','.join(OWSM_LANGS)}; default: any).")
    parser.add_argument("--tasks", default=None,
                        help="Comma-separated <task> tokens allowed in text (e.g. asr,st_eng; "
                             "default: any).")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    try:
        conf = yaml.safe_load(args.config.read_text())
        try:
            speech_length = float(conf["preprocessor_conf"]["speech_length"])
        except (KeyError, TypeError, ValueError):
            raise BadDataError(f"{args.config}: needs a number at preprocessor_conf.speech_length")
        format_data(args.data_dir, args.out, speech_length, args.split_by_lang_task,
                    min_samples_for(conf), args.skip_bad_utts,
                    args.langs.split(",") if args.langs else None,
                    args.tasks.split(",") if args.tasks else None)
    except (OSError, ValueError, yaml.YAMLError) as e:  # BadDataError is a ValueError
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
