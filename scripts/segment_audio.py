#!/usr/bin/env python3
"""Stage 2 (corpora with long recordings): cut segments to 16 kHz mono FLAC files.

Reads a Kaldi data dir whose ``wav.scp`` lists recordings in any format ffmpeg decodes
(Europarl-ST's 44.1 kHz M4A speeches, Voxforge's WAV/FLAC) and whose ``segments`` lists
the utterances (``<utt> <rec> <start> <end>``, ``end = -1``: to the end; no ``segments``:
every recording is one utterance). Every recording is decoded once (ffmpeg, down-mixed to
mono at its own rate), resampled to 16 kHz with soxr and cut; utterances with the same
(recording, start, end) -- the ASR and ST utterances of one segment -- share one file.

Writes ``<out>/`` with ``wav.scp`` (``<utt> <audio-dir>/<rec>/<start>_<end>.flac``, no
``segments``) and every other per-utterance table of the input (text, text.ctc, text.prev,
utt2spk, utt2lang, utt2task, utt2corpus, ...) unchanged, so ``scripts/format_data.py`` can
take it from there. Resumable: a recording whose files all exist is skipped. A recording
that cannot be decoded, or a segment outside its recording, is an error naming both
(``--skip_bad`` logs and drops them instead).

Usage:
    python scripts/segment_audio.py --data_dir data/train --out dump/raw/org/train \\
        --audio_dir dump/audio/train --nj 4
"""

import argparse
import logging
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile as sf

from espnet_ext.context.audio import resample

from espnet_ext.kaldi import read_table, write_table

PROG = "segment_audio"
FS = 16000
Segment = Tuple[float, float]


def decode(path: str) -> Tuple[np.ndarray, int]:
    """Decodes a recording to mono float32 at its own sample rate (ffmpeg)."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
         "stream=sample_rate", "-of", "default=nw=1:nk=1", path],
        capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        raise RuntimeError(f"ffprobe cannot read it: {probe.stderr.strip()[-200:]}")
    rate = int(probe.stdout.split()[0])
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vn", "-ac", "1", "-f", "f32le",
         "-acodec", "pcm_f32le", "-"], capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace').strip()[-200:]}")
    wav = np.frombuffer(proc.stdout, dtype=np.float32)
    if wav.size == 0:
        raise RuntimeError("no audio samples")
    return wav, rate


def seg_name(start: float, end: float) -> str:
    return f"{int(round(start * 1000)):08d}_{'end' if end < 0 else f'{int(round(end * 1000)):08d}'}"


def cut_recording(job: Tuple[str, str, List[Segment], str]) -> Tuple[str, Dict[Segment, str], str]:
    """Decodes one recording and writes its segments.

    Returns:
        (rec, {(start, end): flac path}, error message or "").
    """
    rec, path, segments, out_dir = job
    files = {s: os.path.join(out_dir, rec, seg_name(*s) + ".flac") for s in segments}
    if all(os.path.isfile(f) for f in files.values()):
        return rec, files, ""
    try:
        wav, rate = decode(path)
    except RuntimeError as e:
        return rec, {}, f"recording {rec}: {path}: {e}"
    wav = resample(wav, rate, FS)
    os.makedirs(os.path.join(out_dir, rec), exist_ok=True)
    bad = []
    for (start, end), f in files.items():
        first, last = int(round(start * FS)), len(wav) if end < 0 else int(round(end * FS))
        last = min(last, len(wav))
        if first >= len(wav) or last - first <= 0:
            bad.append(f"segment {start}-{end} s outside the recording ({len(wav) / FS:.2f} s)")
            continue
        tmp = f + ".tmp.flac"
        sf.write(tmp, wav[first:last], FS, subtype="PCM_16")
        os.replace(tmp, f)
    ok = {s: f for s, f in files.items() if os.path.isfile(f)}
    return rec, ok, (f"recording {rec}: {path}: " + "; ".join(bad)) if bad else ""


def segment_data_dir(data_dir: Path, out: Path, audio_dir: Path, nj: int = 1,
                     skip_bad: bool = False) -> Dict[str, int]:
    """Cuts every utterance of ``data_dir`` to its own 16 kHz FLAC; writes ``out``."""
    from tqdm import tqdm

    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt-get install ffmpeg)")
    recs = read_table(data_dir / "wav.scp")
    if (data_dir / "segments").is_file():
        utt2seg = {}
        for utt, v in read_table(data_dir / "segments").items():
            rec, start, end = v.split()
            if rec not in recs:
                raise ValueError(f"{data_dir}/segments: {utt}: recording {rec} not in wav.scp")
            utt2seg[utt] = (rec, (float(start), float(end)))
    else:
        utt2seg = {r: (r, (0.0, -1.0)) for r in recs}
    by_rec = defaultdict(set)
    for rec, seg in utt2seg.values():
        by_rec[rec].add(seg)
    jobs = [(rec, recs[rec], sorted(segs), str(audio_dir.resolve()))
            for rec, segs in sorted(by_rec.items())]
    done: Dict[str, Dict[Segment, str]] = {}
    errors = []
    with ProcessPoolExecutor(max(1, nj)) as pool, tqdm(total=len(jobs), unit="rec",
                                                        desc=f"segment {data_dir.name}") as bar:
        for rec, files, err in pool.map(cut_recording, jobs, chunksize=1):
            done[rec] = files
            if err:
                errors.append(err)
            bar.update()
    if errors and not skip_bad:
        raise RuntimeError("\n".join(errors))
    for e in errors:
        logging.warning(f"skipped: {e}")
    wav_scp = {}
    for utt, (rec, seg) in utt2seg.items():
        if seg in done.get(rec, {}):
            wav_scp[utt] = done[rec][seg]
    out.mkdir(parents=True, exist_ok=True)
    tables = {"wav.scp": wav_scp}
    for f in sorted(data_dir.iterdir()):
        if f.name in ("wav.scp", "segments", "spk2utt", "reco2dur") or not f.is_file():
            continue
        if f.name.startswith("utt2") or f.name.startswith("text"):
            table = read_table(f)
            tables[f.name] = {u: table[u] for u in wav_scp if u in table}
    for name, table in tables.items():
        write_table(out / name, table)
    logging.info(f"{out}: {len(wav_scp)} utterances from {len(jobs)} recordings "
                 f"({len(jobs) - len([r for r in done if done[r]])} failed), "
                 f"{sum(len(v) for v in done.values())} audio files in {audio_dir}")
    return {"utts": len(wav_scp), "recordings": len(jobs), "errors": len(errors)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", "--data-dir", required=True, type=Path, help="Kaldi dir (input).")
    parser.add_argument("--out", required=True, type=Path, help="Output data dir.")
    parser.add_argument("--audio_dir", "--audio-dir", required=True, type=Path, help="Where the FLACs go.")
    parser.add_argument("--nj", type=int, default=1, help="Parallel decoding processes.")
    parser.add_argument("--skip_bad", "--skip-bad", action="store_true",
                        help="Drop undecodable recordings / bad segments instead of failing.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    try:
        segment_data_dir(args.data_dir, args.out, args.audio_dir, args.nj, args.skip_bad)
    except (RuntimeError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
