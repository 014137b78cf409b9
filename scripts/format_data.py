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

Length filter (each dropped utterance logged with the reason and listed in
``<out>/bad_utts``): shorter than ``max(0.1 s, what the encoder's subsampling
needs)``, e.g. 7 frames (960 samples at hop 160) for ``input_layer: conv2d``
(ESPnet raises TooShortUttError on shorter input during training), and, in a
training set only, longer than the preprocessor's ``speech_length`` (its audio
would be cut while its text is not). An evaluation set (``--eval_set``, implied by
``--split_by_lang_task``: dev and test) keeps its long utterances: they are decoded
on their first ``speech_length`` seconds, as ESPnet's ``Speech2Text`` pads/trims
every input to ``preprocessor_conf.speech_length`` (``espnet_ext.s2t.inference``
does the same), and scored against their whole reference, so every utterance of
the official set counts. They are listed in ``<out>/long_utts`` (``<utt> <seconds>``).

Writes the kept utterances' files plus ``speech_shape`` (``<utt> <samples>``),
each atomically. With ``--split_by_lang_task`` it also writes one dir per
(source language, task), ``<out>_<lang>_<task>`` (e.g. ``dump/raw/test_deu_st_eng``),
so every test subset is decoded with its own ``--lang_sym/--task_sym``.

``--asr`` (ESPnet's ASR task, asr.sh stage 4): ``text`` is the plain transcript (no
``<lang><task>`` prefix, no time token); a training set drops the utterances longer than
``--max_wav_duration`` (asr.sh's, 20 s) instead of ``speech_length``; an evaluation set keeps
them, decoded whole (the ASR task does not trim its input).

Every set and subset dir gets ``utt_counts.json`` (see ``utt_counts``): the
utterances of the input dir (the corpus's list, as stage 1 prepared it), those
kept, how many of them are longer than ``speech_length``, and what was dropped.

Usage:
    python scripts/format_data.py --data_dir data/test --out dump/raw/test \\
        --config conf/base/train_base.yaml --split_by_lang_task \\
        --langs eng,deu,fra,ita --tasks asr,st_eng [--skip_bad_utts]
    python scripts/format_data.py --data_dir data/dev --out dump/raw/dev \\
        --config conf/base/train_base.yaml --eval_set
    python scripts/format_data.py --asr --data_dir data/test_clean --out dump/raw/test_clean \\
        --config conf/train_asr_transformer.yaml --eval_set
"""

import argparse
import json
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
MAX_WAV_DURATION = 20.0  # asr.sh: --max_wav_duration (seconds)
PREFIX = re.compile(r"^<([^<>\s]+)><([^<>\s]+)>(<notimestamps>|<\d+\.\d\d>)")
COUNTS = "utt_counts.json"


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


def utt_counts(name: str, role: str, speech_length: float, official: int, kept: int,
               long: int, dropped_long: int, dropped_short: int, bad: int,
               asr: bool = False) -> dict:
    """The ``utt_counts.json`` of one set or subset.

    Keys: ``set`` (dir name), ``role`` ("eval": dev/test, every utterance kept;
    "train": length-filtered), ``official`` (utterances of the input dir, i.e. of
    the corpus's list as stage 1 prepared it), ``utts`` (kept: decoded and scored, or
    trained on), ``long`` (kept utterances longer than ``speech_length``; eval: decoded
    on their first ``speech_length`` seconds), ``dropped_long`` / ``dropped_short``
    (length filter), ``bad`` (left out by ``--skip_bad_utts``), ``speech_length``
    (seconds; ``--asr``: ``--max_wav_duration``), ``long_utts`` ("trimmed", "whole" (eval,
    ``--asr``: decoded whole) or "dropped").
    """
    return {"set": name, "role": role, "official": official, "utts": kept, "long": long,
            "dropped_long": dropped_long, "dropped_short": dropped_short, "bad": bad,
            "speech_length": speech_length,
            "long_utts": ("whole" if asr else "trimmed") if role == "eval" else "dropped"}


def write_counts(path: Path, counts: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(counts, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def format_data(data_dir: Path, out: Path, speech_length: float, split: bool,
                min_samples: Tuple[int, str] = (1, "at least one sample"),
                skip_bad_utts: bool = False, langs: Optional[Sequence[str]] = None,
                tasks: Optional[Sequence[str]] = None, eval_set: bool = False,
                asr: bool = False) -> dict:
    """Checks and formats one data dir (see the module docstring).

    Args:
        data_dir: Kaldi data dir (wav.scp, text, utt2spk, ...).
        out: Output dir; ``<out>/bad_utts`` lists every utterance left out.
        speech_length: The preprocessor's fixed input length (seconds): the longest
            utterance a training set keeps; an evaluation set keeps longer ones.
        split: Also write ``<out>_<lang>_<task>`` subsets (implies ``eval_set``).
        min_samples: (samples, why) from ``min_samples_for``; the length filter
            uses ``max(MIN_SECONDS * FS, samples)``.
        skip_bad_utts: Leave bad utterances out instead of raising.
        langs, tasks: Allowed ``<lang>``/``<task>`` tokens (without brackets);
            None: any well-formed token.
        eval_set: A dev/test set: utterances longer than ``speech_length`` are kept
            (listed in ``<out>/long_utts``) and decoded trimmed, as by ``Speech2Text``.
        asr: ESPnet's ASR task: ``text`` is a plain transcript (no prefix check); long
            utterances of an evaluation set are decoded whole. No ``split``.

    Returns:
        dict: {"kept", "long" (kept, longer than speech_length), "dropped" (length
        filter), "bad" (skipped), "subsets"}.

    Raises:
        BadDataError: Bad utterances and ``skip_bad_utts`` off.
    """
    if asr and split:
        raise ValueError("--split_by_lang_task needs <lang><task> texts: not with --asr")
    eval_set = eval_set or split
    role = "eval" if eval_set else "train"
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
    limit = "max_wav_duration" if asr else "speech_length"
    shapes, kept, dropped, long = {}, [], {}, {}
    too_long = set()  # dropped for their length (training sets)
    for utt in keys:
        if utt in bad:
            continue
        reason = None if asr else check_text(tables["text"][utt], langs, tasks)
        if reason:
            bad[utt] = f"{data_dir / 'text'}: {reason}"
            continue
        frames, reason = check_audio(tables["wav.scp"][utt], info_cache)
        if reason:
            bad[utt] = reason
        elif frames > max_samples and not eval_set:
            dropped[utt] = (f"too long: {frames / FS:.2f} s > {limit} {speech_length} s "
                            f"(training set; evaluation sets keep it, {'whole' if asr else 'trimmed'})")
            too_long.add(utt)
        elif frames < floor:
            dropped[utt] = (f"too short: {frames} samples ({frames / FS:.3f} s) < {floor} "
                            f"(kept: >= {MIN_SECONDS} s and >= {min_samples[0]} samples = "
                            f"{min_samples[1]})")
        else:
            kept.append(utt)
            shapes[utt] = str(frames)
            if frames > max_samples:
                long[utt] = f"{frames / FS:.2f}"
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

    def counts(name: str, utts: Sequence[str]) -> dict:
        """utt_counts of the input utterances ``utts`` (a set, or a subset's)."""
        members = set(utts)
        return utt_counts(name, role, speech_length, len(members),
                          len(members & set(kept)), len(members & set(long)),
                          len(members & too_long), len(members & (set(dropped) - too_long)),
                          len(members & set(bad)), asr)

    write_dir(out, kept_tables, kept)
    write_table(out / "speech_shape", shapes)
    if eval_set:
        write_table(out / "long_utts", long)
    all_utts = sorted(set(keys) | set(bad))  # the input's utterances (bad ones included)
    write_counts(out / COUNTS, counts(out.name, all_utts))
    subsets = {}
    if split:
        by_prefix = defaultdict(list)  # every input utterance, by the <lang><task> of its text
        for utt in all_utts:
            m = PREFIX.match(tables["text"].get(utt, ""))
            if m:
                by_prefix[f"{out.name}_{m.group(1)}_{m.group(2)}"].append(utt)
        for utt in kept:  # by the <lang><task> prefix of text, what the model is told
            lang, task = PREFIX.match(kept_tables["text"][utt]).group(1, 2)
            subsets.setdefault(f"{out.name}_{lang}_{task}", []).append(utt)
        for name, utts in sorted(subsets.items()):
            write_dir(out.parent / name, kept_tables, utts)
            write_table(out.parent / name / "speech_shape", {u: shapes[u] for u in utts})
            write_table(out.parent / name / "long_utts", {u: long[u] for u in utts if u in long})
            write_counts(out.parent / name / COUNTS, counts(name, by_prefix[name]))
    seconds = sum(int(s) for s in shapes.values()) / FS
    n_short = len(dropped) - len(too_long)
    logging.info(f"{out} ({'evaluation' if eval_set else 'training'} set): {len(all_utts)} "
                 f"utterances, kept {len(kept)}"
                 + ((f" ({len(long)} longer than max_wav_duration {speech_length} s: decoded whole)"
                     if asr else
                     f" ({len(long)} longer than speech_length {speech_length} s: decoded on "
                     "their first speech_length seconds, as ESPnet's Speech2Text)")
                    if eval_set else "")
                 + f", dropped {len(too_long)} longer than {limit} {speech_length} s and "
                 f"{n_short} too short, skipped {len(bad)} bad utterances "
                 f"({seconds / 3600:.2f} h kept; counts in {out / COUNTS})"
                 + (f"; subsets {', '.join(sorted(subsets))}" if subsets else ""))
    return {"kept": len(kept), "long": len(long), "dropped": len(dropped), "bad": len(bad),
            "subsets": sorted(subsets)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_dir", "--data-dir", required=True, type=Path, help="Kaldi data dir (input).")
    parser.add_argument("--out", required=True, type=Path, help="Output dir (dump/raw/<set>).")
    parser.add_argument("--config", required=True, type=Path,
                        help="Training YAML: preprocessor_conf.speech_length is the longest "
                             "utterance a training set keeps (seconds); frontend_conf.hop_length "
                             "and encoder_conf.input_layer give the shortest.")
    parser.add_argument("--split_by_lang_task", "--split-by-lang-task", action="store_true",
                        help="Also write <out>_<lang>_<task> subsets (utt2lang, utt2task); "
                             "implies --eval_set.")
    parser.add_argument("--eval_set", "--eval-set", action="store_true",
                        help="A dev/test set: keep utterances longer than speech_length "
                             "(listed in <out>/long_utts); decoding trims them to "
                             "speech_length as ESPnet's Speech2Text does. Without it (training "
                             "sets) they are dropped and counted.")
    parser.add_argument("--skip_bad_utts", "--skip-bad-utts", action="store_true",
                        help="Leave bad utterances out (listed in <out>/bad_utts) instead of "
                             "stopping.")
    parser.add_argument("--asr", action="store_true",
                        help="ESPnet's ASR task: text is the plain transcript (no <lang><task> "
                             "prefix); the length limit is --max_wav_duration, not speech_length.")
    parser.add_argument("--max_wav_duration", "--max-wav-duration", type=float,
                        default=MAX_WAV_DURATION,
                        help="--asr: the longest utterance a training set keeps (seconds; "
                             "asr.sh's default).")
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
        if args.asr:
            speech_length = args.max_wav_duration
        else:
            try:
                speech_length = float(conf["preprocessor_conf"]["speech_length"])
            except (KeyError, TypeError, ValueError):
                raise BadDataError(f"{args.config}: needs a number at preprocessor_conf.speech_length")
        format_data(args.data_dir, args.out, speech_length, args.split_by_lang_task,
                    min_samples_for(conf), args.skip_bad_utts,
                    args.langs.split(",") if args.langs else None,
                    args.tasks.split(",") if args.tasks else None, args.eval_set, args.asr)
    except (OSError, ValueError, yaml.YAMLError) as e:  # BadDataError is a ValueError
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
