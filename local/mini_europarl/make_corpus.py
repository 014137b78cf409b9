#!/usr/bin/env python3
"""Build "mini Europarl": a synthetic, offline stand-in for Europarl-ST.

Parallel parliamentary sentences in English, German, French and Italian
(``sentences.py``) are read by espeak-ng speakers (``voices.py``) over
procedural background events (``events.py``) at a random SNR. The output is one
ESPnet S2T (OWSM v3.1 style) Kaldi data directory per split, with ASR in every
language and speech translation de/fr/it -> en. Everything follows from
``--seed``: the same command writes the same text files and the same audio
bytes.

Usage:
    # a few utterances per split (CI)
    python local/mini_europarl/make_corpus.py --out data/mini_europarl --preset tiny

    # the recipe's corpus
    python local/mini_europarl/make_corpus.py --out data/mini_europarl --preset demo --nj 2

    # explicit sizes (sentences per language per split) override the preset
    python local/mini_europarl/make_corpus.py --out data/mini_europarl --seed 0 --nj 2 \\
        --sizes pretrain=500,train=250,dev=25,test=25 --voices_per_lang 8 --snr 0,20

Output (``--out``)::

    <out>/corpus.json                     the options that shaped the audio
    <out>/wav/<split>/<lang>/<spk>/<recording>.wav   16 kHz mono 16-bit
    <out>/<split>/{wav.scp,text,text.ctc,text.prev,utt2spk,spk2utt,
                   utt2lang,utt2task,utt2event,utt2snr}

One recording per (sentence, speaker, event); a German, French or Italian
recording gives two utterances that share the audio: ``<rec>-asr`` and
``<rec>-st_eng``. A rerun skips recordings already on disk.
"""

import argparse
import json
import logging
import multiprocessing
import os
import re
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet_ext.kaldi import read_table, write_table

# siblings: this file runs as a script (its dir is on sys.path) or is loaded after them, each
# registered under its own name (tests/local/test_mini_europarl.py, script_loader.load_file)
import events  # noqa: E402
import sentences  # noqa: E402
import voices  # noqa: E402
from sentences import ISO3, LANGS, SPLITS  # noqa: E402

FORMAT_VERSION = 1

PRESETS = {
    "tiny": dict(pretrain=2, train=2, dev=2, test=2),
    "demo": dict(pretrain=500, train=250, dev=25, test=25),
    "bench": dict(pretrain=6000, train=3000, dev=200, test=200),
}

DATA_FILES = ("wav.scp", "text", "text.ctc", "text.prev", "utt2spk",
              "utt2lang", "utt2task", "utt2event", "utt2snr")

TEXT_PREFIX = re.compile(r"^<(eng|deu|fra|ita)><(asr|st_eng)><notimestamps> \S")


@dataclass(frozen=True)
class Recording:
    """One synthesised, mixed recording."""

    rec: str  # recording id, "<spk>-<sentence id>-<event>"
    split: str
    lang: str
    index: int  # sentence index
    voice: voices.Voice
    event: str
    snr: float  # dB; inf for "clean"
    path: str  # absolute wav path
    seed: int  # corpus seed

    @property
    def text(self) -> Dict[str, str]:
        return sentences.sentence(self.index)


def _rng(rec: str, seed: int) -> np.random.Generator:
    """Generator owned by one recording: its audio depends only on (rec, seed)."""
    return np.random.default_rng([seed, zlib.crc32(rec.encode())])


def recording_snr(rec: str, seed: int, snr_range: Tuple[float, float]) -> float:
    """SNR of a recording, drawn uniformly in ``snr_range`` and rounded to 0.01 dB."""
    return round(float(_rng(rec, seed).uniform(*snr_range)), 2)


def _deal(items: Sequence, n: int, rng: np.random.Generator) -> list:
    """``n`` picks from ``items`` in random order, each item used equally often (+-1)."""
    order = np.resize(rng.permutation(len(items)), n)
    rng.shuffle(order)
    return [items[i] for i in order]


def plan(sizes: Dict[str, int], seed: int, voices_per_lang: int,
         event_kinds: Sequence[str], snr_range: Tuple[float, float],
         audio_dir: Path) -> Dict[str, List[Recording]]:
    """Decide every recording: sentence, speaker, event and SNR.

    Each split holds the same sentences in the four languages. Within a split
    and language, speakers and events are dealt out like cards from a seeded
    shuffle, so each gets an equal share (a random subset when there are
    fewer sentences than speakers or events).
    """
    for kind in event_kinds:
        if kind not in events.EVENTS:
            raise ValueError(f"unknown event: {kind} (expected some of {events.EVENTS})")
    lo, hi = snr_range
    if not lo <= hi:
        raise ValueError(f"SNR range must be low,high with low <= high, got {snr_range}")
    splits = sentences.make_splits(sizes, seed)
    audio_dir = Path(audio_dir).resolve()
    out = {}
    for split, indices in splits.items():
        recs = []
        for k, lang in enumerate(LANGS):
            spks = voices.voices(lang, voices_per_lang)
            rng = np.random.default_rng([seed, SPLITS.index(split), k])
            spk_of = _deal(spks, len(indices), rng)
            event_of = _deal(event_kinds, len(indices), rng)
            for index, voice, event in zip(indices, spk_of, event_of):
                rec = f"{voice.spk}-{sentences.sentence_id(index)}-{event}"
                snr = float("inf") if event == "clean" else recording_snr(rec, seed, snr_range)
                path = os.path.join(audio_dir, split, ISO3[lang], voice.spk, f"{rec}.wav")
                recs.append(Recording(rec, split, lang, index, voice, event, snr, path, seed))
        out[split] = recs
    return out


def render(rec: Recording) -> Tuple[np.ndarray, np.ndarray]:
    """Synthesise and mix one recording.

    Returns:
        (speech, noise): float64 components at 16 kHz after mixing gains; the
        written audio is their sum. For ``clean`` the noise is all zeros.
    """
    speech = voices.synthesize(rec.text[rec.lang], rec.voice)
    rng = _rng(rec.rec, rec.seed)
    rng.uniform()  # the draw that gave the SNR (see recording_snr)
    noise = events.make_noise(rec.event, len(speech), rng, voices.SAMPLE_RATE)
    snr = 0.0 if rec.event == "clean" else rec.snr
    return events.mix(speech, noise, snr)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16, rounded (what the wav files hold)."""
    return np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)


def write_recording(rec: Recording) -> int:
    """Write the wav of ``rec`` unless it exists (atomic). Returns its samples."""
    path = Path(rec.path)
    if path.exists():
        return sf.info(str(path)).frames
    speech, noise = render(rec)
    pcm = to_pcm16(speech + noise)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), pcm, voices.SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return len(pcm)


def synthesize_all(recs: List[Recording], nj: int, desc: str = "synth") -> int:
    """Write every recording over ``nj`` processes. Returns the total samples."""
    todo = [r for r in recs if not Path(r.path).exists()]
    logging.info(f"{desc}: {len(recs)} recordings, {len(recs) - len(todo)} already on disk")
    start = time.time()
    if nj == 1:
        for rec in tqdm(todo, desc=desc):
            write_recording(rec)
    elif todo:
        with multiprocessing.get_context("fork").Pool(nj) as pool:
            for _ in tqdm(pool.imap_unordered(write_recording, todo, chunksize=4),
                          total=len(todo), desc=desc):
                pass
    if todo:
        elapsed = time.time() - start
        logging.info(f"{desc}: wrote {len(todo)} recordings in {elapsed:.1f} s "
                     f"({len(todo) / elapsed:.1f} recordings/s with nj={nj})")
    return sum(sf.info(r.path).frames for r in recs)


def entries(recs: List[Recording]) -> Dict[str, Dict[str, str]]:
    """Kaldi files of a split: ``{file name: {utt: value}}``."""
    files = {name: {} for name in DATA_FILES}
    for r in recs:
        src = ISO3[r.lang]
        text = r.text
        source = sentences.normalize(text[r.lang])
        tasks = [("asr", source)]
        if r.lang != "en":
            tasks.append(("st_eng", sentences.normalize(text["en"])))
        for task, target in tasks:
            utt = f"{r.rec}-{task}"
            files["wav.scp"][utt] = r.path
            files["text"][utt] = f"<{src}><{task}><notimestamps> {target}"
            files["text.ctc"][utt] = source
            files["text.prev"][utt] = "<na>"
            files["utt2spk"][utt] = r.voice.spk
            files["utt2lang"][utt] = src
            files["utt2task"][utt] = task
            files["utt2event"][utt] = r.event
            files["utt2snr"][utt] = "inf" if r.event == "clean" else f"{r.snr:.2f}"
    return files


def _c_sorted(keys):
    """Sorted in LC_ALL=C (byte) order."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def write_data_dir(data_dir: Path, recs: List[Recording]) -> None:
    """Write the Kaldi files of one split, each sorted in C byte order."""
    files = entries(recs)
    spk2utt = defaultdict(list)
    for utt, spk in files["utt2spk"].items():
        assert utt.startswith(spk + "-"), (utt, spk)
        spk2utt[spk].append(utt)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, table in files.items():
        write_table(data_dir / name, table)
    write_table(data_dir / "spk2utt", {s: " ".join(_c_sorted(utts)) for s, utts in spk2utt.items()})


def read_sorted_table(path: Path) -> Dict[str, str]:
    """A Kaldi table whose keys must be C-sorted (as Kaldi tools require)."""
    table = read_table(path, allow_empty=True)
    assert list(table) == _c_sorted(list(table)), (path, "not sorted in C order")
    return table


def validate_data_dir(data_dir: Path) -> int:
    """Check a written split. Returns its number of utterances."""
    tables = {name: read_sorted_table(data_dir / name) for name in DATA_FILES}
    utts = list(tables["wav.scp"])
    for name, table in tables.items():
        assert list(table) == utts, (data_dir / name, len(table), len(utts))
    spk2utt = read_sorted_table(data_dir / "spk2utt")
    from_spk = {u: s for s, us in spk2utt.items() for u in us.split()}
    assert from_spk == tables["utt2spk"], (data_dir, "spk2utt does not match utt2spk")
    for utt in utts:
        text, task = tables["text"][utt], tables["utt2task"][utt]
        assert TEXT_PREFIX.match(text), (utt, text)
        assert text.startswith(f"<{tables['utt2lang'][utt]}><{task}>"), (utt, text)
        assert os.path.isabs(tables["wav.scp"][utt]), (utt, tables["wav.scp"][utt])
        assert os.path.getsize(tables["wav.scp"][utt]) > 44, (utt, tables["wav.scp"][utt])
    return len(utts)


def check_options(out: Path, seed: int, snr_range: Tuple[float, float]) -> None:
    """Refuse to reuse audio that another seed or SNR range produced."""
    config = dict(version=FORMAT_VERSION, seed=seed, snr=list(snr_range))
    path = out / "corpus.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != config:
            raise ValueError(f"{out} was built with {old}, now asked for {config}: "
                             "use another --out or delete it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")


def prepare_mini_europarl(out: Path, sizes: Dict[str, int], seed: int = 0, nj: int = 1,
                          voices_per_lang: int = 8, snr_range: Tuple[float, float] = (0, 20),
                          event_kinds: Sequence[str] = events.EVENTS,
                          audio_dir: Path = None) -> Dict[str, List[Recording]]:
    """Build the corpus under ``out``; see the module docstring for the layout."""
    voices.check_espeak()
    if nj < 1:
        raise ValueError(f"--nj must be >= 1, got {nj}")
    out = Path(out).resolve()
    audio_dir = Path(audio_dir).resolve() if audio_dir else out / "wav"
    check_options(out, seed, snr_range)
    recordings = plan(sizes, seed, voices_per_lang, event_kinds, snr_range, audio_dir)
    for split, recs in recordings.items():
        samples = synthesize_all(recs, nj, desc=split)
        write_data_dir(out / split, recs)
        num_utts = validate_data_dir(out / split)
        logging.info(f"{split}: {len(recs) // len(LANGS)} sentences x {len(LANGS)} languages, "
                     f"{len(recs)} recordings, {num_utts} utterances, "
                     f"{samples / voices.SAMPLE_RATE / 3600:.2f} h -> {out / split}")
    return recordings


def parse_sizes(text: str) -> Dict[str, int]:
    """``"pretrain=10,train=5"`` -> ``{"pretrain": 10, "train": 5}``."""
    sizes = {}
    for item in text.split(","):
        split, eq, n = item.partition("=")
        if not eq or split not in SPLITS or not n.isdigit():
            raise ValueError(f"bad --sizes item {item!r}: expected <split>=<int>, "
                             f"split in {SPLITS}")
        sizes[split] = int(n)
    return sizes


def parse_range(text: str) -> Tuple[float, float]:
    """``"0,20"`` -> ``(0.0, 20.0)``."""
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(f"bad --snr {text!r}: expected low,high in dB")
    lo, hi = float(parts[0]), float(parts[1])
    if lo > hi:
        raise ValueError(f"bad --snr {text!r}: low > high")
    return lo, hi


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True,
                        help="Output directory: one Kaldi data dir per split, wavs in <out>/wav.")
    parser.add_argument("--audio_dir", "--audio-dir", type=Path, default=None,
                        help="Where to write the wavs (default: <out>/wav).")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="Split sizes: " + "; ".join(
                            f"{k}: {','.join(f'{s}={n}' for s, n in v.items())}"
                            for k, v in PRESETS.items()))
    parser.add_argument("--sizes", type=str, default=None,
                        help="Sentences per language per split, e.g. "
                             "pretrain=500,train=250,dev=25,test=25; overrides the preset "
                             "for the splits it names.")
    parser.add_argument("--seed", type=int, default=0,
                        help="Random seed: splits, speakers, events, SNRs and noise.")
    parser.add_argument("--nj", type=int, default=1, help="Number of parallel workers.")
    parser.add_argument("--voices_per_lang", "--voices-per-lang", type=int, default=8,
                        help=f"Speakers per language (1-{len(voices.PROFILES)}).")
    parser.add_argument("--snr", type=str, default="0,20",
                        help="SNR range in dB, low,high; drawn uniformly per recording.")
    parser.add_argument("--events", type=str, default=",".join(events.EVENTS),
                        help="Comma-separated background events to use, from "
                             f"{','.join(events.EVENTS)}.")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    sizes = dict(PRESETS[args.preset])
    if args.sizes:
        sizes.update(parse_sizes(args.sizes))
    logging.info(f"sizes (sentences per language): {sizes}")
    prepare_mini_europarl(
        args.out, sizes, seed=args.seed, nj=args.nj, voices_per_lang=args.voices_per_lang,
        snr_range=parse_range(args.snr), event_kinds=args.events.split(","),
        audio_dir=args.audio_dir,
    )


if __name__ == "__main__":
    logging.basicConfig(
        format="%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s",
        level=logging.INFO,
    )
    main()
