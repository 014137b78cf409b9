"""Checks the audio a decoding run reads, before ESPnet reads it.

ESPnet's ``sound`` loader takes any WAV/FLAC as it is: 8 or 44.1 kHz audio is
decoded as if it had the model's rate (espnet #6027) and stereo audio ends in
an ``AssertionError`` deep in the model. ``check_sound_inputs`` reads the
header of every file of every ``sound`` input once (fast) and, per
``mismatch``:

- ``"convert"``: a file at another rate is resampled to the model's rate,
  multi-channel audio is down-mixed to mono (the channel mean), and an entry
  ESPnet cannot read (a ``<command> |`` pipe, a format libsndfile lacks) is
  decoded; the results are written once to ``<workdir>/<name>/<utt>.wav`` and
  the input list points at a rewritten scp. One log line says what changed.
- ``"error"``: any such file is refused: one line naming utterance and file.

Unreadable, empty or non-finite audio is an error either way (one line naming
utterance and file).
"""

import logging
from pathlib import Path
from typing import List, Tuple

import numpy as np
import soundfile as sf

from espnet_ext.context.audio import AudioError, _decode, resample

from espnet_ext.kaldi import read_table

MISMATCH = ("convert", "error")


def _problem(utt: str, spec: str, fs: int) -> Tuple[str, str]:
    """("", "") if ESPnet reads ``spec`` as is; else (kind, what) of the first problem."""
    if spec.endswith("|"):
        return "decoded", "a command, which ESPnet's sound loader cannot run"
    try:
        info = sf.info(spec)
    except (sf.LibsndfileError, RuntimeError):
        return "decoded", "a format ESPnet's sound loader (libsndfile) cannot read"
    if info.frames == 0:
        raise AudioError(utt, spec, "empty audio (0 samples)")
    if info.samplerate != fs:
        return "resampled", f"{info.samplerate} Hz, the model takes {fs} Hz"
    if info.channels != 1:
        return "down-mixed", f"{info.channels} channels, the model takes mono"
    return "", ""


def _convert(utt: str, spec: str, fs: int) -> np.ndarray:
    wav, rate = _decode(utt, spec)
    if wav.size == 0:
        raise AudioError(utt, spec, "empty audio (0 samples)")
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if not np.isfinite(wav).all():
        raise AudioError(utt, spec, "non-finite samples")
    return resample(wav.astype(np.float32), rate, fs)


def check_sound_inputs(
    inputs: List[Tuple[str, str, str]], fs: int, mismatch: str, workdir: Path
) -> List[Tuple[str, str, str]]:
    """Checks (and with ``"convert"`` fixes) every ``sound`` input of a decoding run.

    Args:
        inputs: ``--data_path_and_name_and_type`` triples (path, name, type).
        fs: The model's sample rate.
        mismatch: "convert" or "error" (see the module docstring).
        workdir: Where converted audio and rewritten scps go.

    Returns:
        The triples, a converted input's path replaced by its rewritten scp.

    Raises:
        AudioError: Unreadable, empty or non-finite audio; with ``"error"``, also
            audio at another rate, with more channels, or that ESPnet cannot read.
    """
    if mismatch not in MISMATCH:
        raise ValueError(f"unknown audio mismatch mode {mismatch!r} (choose from {MISMATCH})")
    out = []
    for path, name, kind in inputs:
        if kind != "sound":
            out.append((path, name, kind))
            continue
        table = read_table(path)
        lines, changed = [], {}
        for utt, spec in table.items():
            problem, what = _problem(utt, spec, fs)
            if problem and mismatch == "error":
                if problem == "decoded":
                    _decode(utt, spec)  # an unreadable file is an error of its own
                raise AudioError(utt, spec, f"{what} (--audio_mismatch convert fixes it)")
            if problem:
                target = workdir / name / f"{utt}.wav"
                if not target.exists():  # a resumed run converted it already
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_suffix(".tmp.wav")
                    sf.write(tmp, _convert(utt, spec, fs), fs, subtype="FLOAT")
                    tmp.rename(target)
                changed[problem] = changed.get(problem, 0) + 1
                spec = str(target)
            lines.append(f"{utt} {spec}\n")
        if changed:
            scp = workdir / f"{name}.scp"
            scp.write_text("".join(lines), encoding="utf-8")
            done = ", ".join(f"{n} {problem}" for problem, n in changed.items())
            logging.warning(f"{path}: {done} to {fs} Hz mono (files in {workdir / name})")
            path = str(scp)
        out.append((path, name, kind))
    return out
