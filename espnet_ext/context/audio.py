"""Per-utterance audio from an ESPnet/Kaldi data directory.

``wav.scp`` lines are ``<rec_id> <path>`` or ``<rec_id> <command> |`` (the
command writes a WAV file to stdout). With a ``segments`` file
(``<utt_id> <rec_id> <start_s> <end_s>``, ``end_s = -1``: to the end) the
utterances are the segments; without it they are the recordings.

Every utterance comes back as a 1-D float32 waveform at the requested rate:
multi-channel audio is an error (format the data dir to mono first, recipe
stage 2), other rates are resampled with soxr. Unreadable, empty or
out-of-range audio raises ``AudioError`` naming the utterance and the file.
"""

import io
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, Tuple, Union

import numpy as np
import soundfile as sf

from espnet_ext.kaldi import read_table


class AudioError(RuntimeError):
    """Audio of one utterance could not be used."""

    def __init__(self, utt: str, path: str, reason: str):
        self.utt, self.path, self.reason = utt, path, reason
        super().__init__(f"utterance {utt}: {path}: {reason}")


def _decode(utt: str, spec: str) -> Tuple[np.ndarray, int]:
    """Reads one wav.scp entry; returns ((T, C) float32, rate)."""
    if spec.endswith("|"):
        cmd = spec[:-1].strip()
        proc = subprocess.run(cmd, shell=True, capture_output=True)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise AudioError(
                utt, spec, f"command exited {proc.returncode}: {' '.join(err[-1:])}"
            )
        source = io.BytesIO(proc.stdout)
    else:
        source = spec
        if not Path(spec).is_file():
            raise AudioError(utt, spec, "no such file")
    try:
        return sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        sf_error = str(e)
    # Formats libsndfile lacks (m4a, Europarl-ST's format) go through ffmpeg.
    if source is spec and shutil.which("ffmpeg"):
        proc = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", spec, "-f", "wav", "-"],
            capture_output=True,
        )
        if proc.returncode == 0 and proc.stdout:
            try:
                return sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                sf_error = str(e)
    raise AudioError(utt, spec, f"unreadable audio ({sf_error})")


def resample(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resamples a 1-D float32 waveform from ``rate`` to ``target`` Hz."""
    if rate == target:
        return wav
    import soxr

    return soxr.resample(wav, rate, target, quality="HQ").astype(np.float32)


class DataDirReader:
    """Reads utterances of a data directory at a fixed sample rate.

    Args:
        data_dir: Directory with ``wav.scp`` and optionally ``segments``.
        sample_rate: Rate of the returned waveforms (Hz).
    """

    def __init__(self, data_dir: Union[str, Path], sample_rate: int = 16000):
        self.data_dir = Path(data_dir)
        self.sample_rate = sample_rate
        scp = self.data_dir / "wav.scp"
        if not scp.is_file():
            raise FileNotFoundError(f"{scp}: no such file")
        self.recordings = read_table(scp)
        self.segments: Dict[str, Tuple[str, float, float]] = {}
        seg = self.data_dir / "segments"
        if seg.is_file():
            for utt, value in read_table(seg).items():
                fields = value.split()
                if len(fields) != 3:
                    raise ValueError(f"{seg}: bad line for {utt}: {value!r}")
                rec, start, end = fields[0], float(fields[1]), float(fields[2])
                if rec not in self.recordings:
                    raise ValueError(f"{seg}: {utt}: recording {rec} not in {scp}")
                self.segments[utt] = (rec, start, end)
        self._cache: Tuple[str, np.ndarray, int] = ("", np.zeros(0), 0)

    @property
    def utt_ids(self) -> List[str]:
        """Utterance ids in file order."""
        return list(self.segments or self.recordings)

    def __len__(self) -> int:
        return len(self.segments or self.recordings)

    def _recording(self, utt: str, rec: str) -> Tuple[np.ndarray, int]:
        # Segments of one recording are usually adjacent: keep the last one.
        if self._cache[0] != rec:
            spec = self.recordings[rec]
            wav, rate = _decode(utt, spec)
            if wav.shape[1] != 1:
                raise AudioError(utt, spec, f"{wav.shape[1]} channels, expected mono")
            self._cache = (rec, wav[:, 0], rate)
        return self._cache[1], self._cache[2]

    def source(self, utt: str) -> str:
        """The ``wav.scp`` entry (path or command) an utterance is read from."""
        rec = self.segments[utt][0] if self.segments else utt
        return self.recordings[rec]

    def read(self, utt: str) -> np.ndarray:
        """Returns the waveform of one utterance.

        Args:
            utt: Utterance id.

        Returns:
            np.ndarray: (T,) float32 at ``self.sample_rate``.

        Raises:
            AudioError: Unreadable, non-mono, empty or non-finite audio, or a
                segment outside its recording.
        """
        if self.segments:
            if utt not in self.segments:
                raise KeyError(f"{utt} not in {self.data_dir / 'segments'}")
            rec, start, end = self.segments[utt]
        else:
            if utt not in self.recordings:
                raise KeyError(f"{utt} not in {self.data_dir / 'wav.scp'}")
            rec, start, end = utt, 0.0, -1.0
        spec = self.recordings[rec]
        wav, rate = self._recording(utt, rec)
        if wav.size == 0:
            raise AudioError(utt, spec, "empty audio (0 samples)")
        first = int(round(start * rate))
        last = len(wav) if end < 0 else int(round(end * rate))
        if first >= len(wav) or last <= first:
            raise AudioError(
                utt,
                spec,
                f"segment {start}-{end} s is empty or outside the recording "
                f"({len(wav) / rate:.2f} s)",
            )
        wav = wav[first:last]
        if not np.isfinite(wav).all():
            raise AudioError(utt, spec, "non-finite samples")
        return resample(wav, rate, self.sample_rate)

    def __iter__(self) -> Iterator[Tuple[str, np.ndarray]]:
        for utt in self.utt_ids:
            yield utt, self.read(utt)


# Frames the encoder's input layer needs (ESPnet's check_short_utt): fewer raise
# TooShortUttError during training, or give an empty encoder output.
MIN_FRAMES = {"conv1d1": 5, "conv1d2": 5, "conv1d3": 7, "conv2d": 7, "conv2d1": 5,
              "conv2d2": 7, "conv2d6": 11, "conv2d8": 15}


def min_samples_for(train_config: dict) -> Tuple[int, str]:
    """Shortest waveform (samples) the model of a training config can encode.

    With ESPnet's default frontend (STFT, ``center=True``) ``T`` samples give
    ``T // hop_length + 1`` frames, and the encoder's subsampling input layer
    needs ``MIN_FRAMES[input_layer]`` of them.

    Args:
        train_config: A parsed training YAML (``frontend_conf``, ``encoder_conf``).

    Returns:
        (samples, why): the minimum and a phrase explaining it.
    """
    frontend = train_config.get("frontend") or "default"
    layer = (train_config.get("encoder_conf") or {}).get("input_layer", "conv2d")
    frames = MIN_FRAMES.get(layer, 1)
    if frontend != "default" or frames == 1:
        return 1, "at least one sample"
    hop = int((train_config.get("frontend_conf") or {}).get("hop_length", 128))
    return (frames - 1) * hop, f"{frames} frames of hop {hop} for input_layer {layer}"
