"""Speakers made from espeak-ng voices.

A speaker is one espeak-ng voice variant (``de+m3``, ``fr+f2``, ...) with its
own pitch (``-p``), speaking rate (``-s``) and amplitude (``-a``). The table is
fixed: speaker ``deu_spk03`` sounds the same whatever the corpus seed.
espeak-ng writes 22.05 kHz 16-bit audio; :func:`synthesize` resamples it to
16 kHz with a polyphase filter (``scipy.signal.resample_poly``, 320/441).
"""

import shutil
import subprocess
from dataclasses import dataclass
from typing import List

import numpy as np
from scipy.signal import resample_poly

from sentences import ISO3

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050

# espeak-ng base voice per language
BASE_VOICE = {"en": "en-us", "de": "de", "fr": "fr", "it": "it"}

# (variant, pitch 0-99, words per minute, amplitude 0-200)
PROFILES = [
    ("m1", 45, 160, 100),
    ("f2", 60, 165, 90),
    ("m3", 35, 150, 110),
    ("f4", 70, 172, 100),
    ("m7", 50, 178, 95),
    ("f5", 55, 152, 105),
    ("m4", 40, 182, 100),
    ("f1", 65, 148, 95),
    ("m2", 28, 168, 105),
    ("f3", 76, 158, 100),
    ("m6", 46, 142, 110),
    ("klatt", 52, 166, 100),
]


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker."""

    spk: str  # speaker id, e.g. "deu_spk03"
    lang: str  # two-letter language code, e.g. "de"
    name: str  # espeak-ng voice, e.g. "de+m3"
    pitch: int
    speed: int
    amplitude: int

    def command(self, text: str) -> List[str]:
        """espeak-ng command that writes this voice reading ``text`` to stdout."""
        return [
            "espeak-ng", "-b", "1", "-v", self.name, "-p", str(self.pitch),
            "-s", str(self.speed), "-a", str(self.amplitude), "--stdout", text,
        ]


def voices(lang: str, num: int) -> List[Voice]:
    """The first ``num`` speakers of language ``lang``."""
    if lang not in BASE_VOICE:
        raise ValueError(f"unknown language: {lang}")
    if not 1 <= num <= len(PROFILES):
        raise ValueError(f"voices per language must be in [1, {len(PROFILES)}], got {num}")
    return [
        Voice(f"{ISO3[lang]}_spk{k:02d}", lang, f"{BASE_VOICE[lang]}+{variant}",
              pitch, speed, amp)
        for k, (variant, pitch, speed, amp) in enumerate(PROFILES[:num])
    ]


def check_espeak() -> None:
    """Raise if espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng not found: apt-get install espeak-ng")


def _parse_wav(data: bytes) -> np.ndarray:
    # espeak-ng --stdout writes a streaming header whose size fields are not
    # filled in, so read the samples after the "data" chunk ourselves.
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError(f"espeak-ng did not write a WAV file: {data[:16]!r}")
    rate = int.from_bytes(data[24:28], "little")
    bits = int.from_bytes(data[34:36], "little")
    channels = int.from_bytes(data[22:24], "little")
    if (rate, bits, channels) != (ESPEAK_RATE, 16, 1):
        raise RuntimeError(f"unexpected espeak-ng format: rate={rate} bits={bits} ch={channels}")
    start = data.index(b"data", 12) + 8
    end = start + (len(data) - start) // 2 * 2
    return np.frombuffer(data[start:end], dtype="<i2")


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """Read ``text`` with ``voice``.

    Returns:
        np.ndarray: float32 samples in [-1, 1] at 16 kHz, shape (T,).
    """
    out = subprocess.run(voice.command(text), capture_output=True, check=True)
    pcm = _parse_wav(out.stdout)
    if pcm.size == 0:
        raise RuntimeError(f"espeak-ng returned no audio for {voice.name}: {text!r}")
    audio = resample_poly(pcm.astype(np.float64) / 32768.0, SAMPLE_RATE // 50, ESPEAK_RATE // 50)
    return audio.astype(np.float32)
