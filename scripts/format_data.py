#!/usr/bin/env python3
"""Stage 2: format a Kaldi data dir into ``dump/raw/<set>`` (s2t.sh stages 3-4).

Checks that every recording is 16 kHz mono (it fails otherwise: the model must get
16 kHz mono audio, and this recipe never guesses), drops utterances longer than the
preprocessor's ``speech_length`` (they would be cut) or shorter than 0.1 s, logging
each dropped utterance with the reason, and writes the kept utterances' files plus
``speech_shape`` (``<utt> <samples>``). With ``--split-by-lang-task`` it also writes
one dir per (source language, task), ``<out>_<lang>_<task>`` (e.g.
``dump/raw/test_deu_st_eng``), so every test subset is decoded with its own
``--lang_sym/--task_sym``.

Usage:
    python scripts/format_data.py --data-dir data/test --out dump/raw/test \\
        --config conf/demo/train_base.yaml --split-by-lang-task
"""

import argparse
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import soundfile as sf
import yaml

from espnet_ext.context.audio import read_table

PROG = "format_data"
FS = 16000
MIN_SECONDS = 0.1
# Per-utterance files carried over (when present), all filtered to the kept utterances.
UTT_FILES = ("wav.scp", "text", "text.ctc", "text.prev", "utt2spk", "utt2lang",
             "utt2task", "utt2event", "utt2snr")


def write_table(path: Path, table: Dict[str, str]) -> None:
    """Writes ``<key> <value>`` lines in LC_ALL=C (byte) order, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{k} {table[k]}\n" for k in sorted(table)), encoding="utf-8")
    os.replace(tmp, path)


def write_dir(out: Path, tables: Dict[str, Dict[str, str]], utts: List[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_table(out / name, {u: table[u] for u in utts})
    spk2utt = defaultdict(list)
    for u in sorted(utts):
        spk2utt[tables["utt2spk"][u]].append(u)
    write_table(out / "spk2utt", {s: " ".join(us) for s, us in spk2utt.items()})


def format_data(data_dir: Path, out: Path, speech_length: float, split: bool) -> dict:
    tables = {n: read_table(data_dir / n) for n in UTT_FILES if (data_dir / n).exists()}
    for required in ("wav.scp", "text", "utt2spk"):
        if required not in tables:
            raise FileNotFoundError(f"{data_dir / required} is missing")
    keys = sorted(tables["wav.scp"])
    for name, table in tables.items():
        if sorted(table) != keys:
            extra = sorted(set(table) ^ set(keys))[:5]
            raise ValueError(f"{data_dir}/{name} and wav.scp differ in keys, e.g. {extra}")
    max_samples = int(round(speech_length * FS))
    shapes, kept, dropped = {}, [], 0
    info_cache = {}
    for utt in keys:
        path = tables["wav.scp"][utt]
        if path.endswith("|"):
            raise ValueError(f"{utt}: piped wav.scp entries are not supported: {path}")
        if path not in info_cache:
            info_cache[path] = sf.info(path)
        info = info_cache[path]
        if info.samplerate != FS or info.channels != 1:
            raise ValueError(
                f"{utt}: {path}: {info.samplerate} Hz, {info.channels} channel(s); "
                f"expected {FS} Hz mono (resample it before this stage)"
            )
        if info.frames > max_samples:
            logging.warning(f"drop {utt}: {info.frames / FS:.2f} s > speech_length "
                            f"{speech_length} s")
        elif info.frames < MIN_SECONDS * FS:
            logging.warning(f"drop {utt}: {info.frames / FS:.3f} s < {MIN_SECONDS} s")
        else:
            kept.append(utt)
            shapes[utt] = str(info.frames)
            continue
        dropped += 1
    if not kept:
        raise ValueError(f"{data_dir}: every utterance was dropped")
    write_dir(out, tables, kept)
    write_table(out / "speech_shape", shapes)
    subsets = {}
    if split:
        for utt in kept:
            lang, task = tables["utt2lang"][utt], tables["utt2task"][utt]
            subsets.setdefault(f"{out.name}_{lang}_{task}", []).append(utt)
        for name, utts in sorted(subsets.items()):
            write_dir(out.parent / name, tables, utts)
            write_table(out.parent / name / "speech_shape", {u: shapes[u] for u in utts})
    seconds = sum(int(s) for s in shapes.values()) / FS
    logging.info(f"{out}: kept {len(kept)}, dropped {dropped} utterances "
                 f"({seconds / 3600:.2f} h kept)"
                 + (f"; subsets {', '.join(sorted(subsets))}" if subsets else ""))
    return {"kept": len(kept), "dropped": dropped, "subsets": sorted(subsets)}


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True, type=Path, help="Kaldi data dir (input).")
    parser.add_argument("--out", required=True, type=Path, help="Output dir (dump/raw/<set>).")
    parser.add_argument("--config", required=True, type=Path,
                        help="Training YAML whose preprocessor_conf.speech_length is the "
                             "longest utterance kept (seconds).")
    parser.add_argument("--split-by-lang-task", action="store_true",
                        help="Also write <out>_<lang>_<task> subsets (utt2lang, utt2task).")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    conf = yaml.safe_load(args.config.read_text())
    speech_length = float(conf["preprocessor_conf"]["speech_length"])
    format_data(args.data_dir, args.out, speech_length, args.split_by_lang_task)


if __name__ == "__main__":
    main()
