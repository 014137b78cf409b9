"""Background acoustic events, generated procedurally with numpy.

Kinds (the label written to ``utt2event``):

- ``clean``: nothing added;
- ``babble``: 4-8 "talkers", each a buzzy glottal-like source with a gliding
  pitch, band-limited to speech frequencies and gated by a syllable-rate
  envelope;
- ``music``: a sequence of major/minor chords of harmonic tones with
  plucked (attack-decay) envelopes and a bass note;
- ``traffic``: low-passed brown noise with a slow swell, plus passing vehicles;
- ``rain``: dense random clicks (drops) over high-passed noise;
- ``alarm``: beeping or two-tone siren patterns;
- ``white``: white noise.

Every generator returns unit-RMS noise; :func:`mix` scales it to the requested
SNR (speech power over noise power, whole utterance) and lowers the gain of the
sum if it would clip, which keeps the SNR.
"""

from typing import Callable, Dict, Tuple

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

EVENTS = ("clean", "babble", "music", "traffic", "rain", "alarm", "white")


def _filter(x: np.ndarray, sr: int, low: float = None, high: float = None,
            order: int = 4) -> np.ndarray:
    """Butterworth band/low/high-pass filter."""
    if low and high:
        sos = butter(order, [low, high], btype="bandpass", fs=sr, output="sos")
    elif low:
        sos = butter(order, low, btype="highpass", fs=sr, output="sos")
    else:
        sos = butter(order, high, btype="lowpass", fs=sr, output="sos")
    return sosfilt(sos, x)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(x ** 2))
    if rms == 0:
        raise ValueError("generated an all-zero noise signal")
    return x / rms


def _syllables(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Smooth on/off envelope at about 4 syllables per second with pauses."""
    env = np.zeros(n)
    pos = int(rng.uniform(0, 0.3) * sr)
    while pos < n:
        dur = int(rng.uniform(0.08, 0.3) * sr)
        if rng.random() < 0.8:
            env[pos:pos + dur] = rng.uniform(0.3, 1.0)
        pos += dur
    return np.clip(_filter(env, sr, high=12.0, order=2), 0.0, None)


def babble(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    out = np.zeros(n)
    for _ in range(rng.integers(4, 9)):
        f0 = rng.uniform(90, 240) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t
                                                      + rng.uniform(0, 2 * np.pi)))
        phase = np.cumsum(f0) / sr
        source = 2 * (phase % 1.0) - 1 + 0.3 * rng.standard_normal(n)  # sawtooth + breath
        voice = _filter(source, sr, low=rng.uniform(200, 400), high=rng.uniform(2500, 3800))
        out += _unit_rms(voice) * _syllables(n, rng, sr)
    return out


def music(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    out = np.zeros(n)
    pos = 0
    while pos < n:
        dur = int(rng.uniform(0.4, 1.2) * sr)
        root = rng.integers(48, 61)  # MIDI C3..C4
        third = 4 if rng.random() < 0.5 else 3
        t = np.arange(min(dur, n - pos)) / sr
        env = np.minimum(t / 0.01, 1.0) * np.exp(-t / rng.uniform(0.2, 0.6))
        for note in (root - 12, root, root + third, root + 7, root + 12):
            f = 440.0 * 2 ** ((note - 69) / 12)
            tone = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 7) if k * f < sr / 2)
            out[pos:pos + len(t)] += rng.uniform(0.5, 1.0) * env * tone
        pos += dur
    return out


def traffic(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    brown = np.cumsum(rng.standard_normal(n))
    rumble = _unit_rms(_filter(_filter(brown, sr, low=20.0, order=2), sr, high=400.0))
    rumble *= 0.7 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 6.3))
    for _ in range(rng.integers(1, 3)):  # passing vehicles
        center, width = rng.uniform(0, t[-1]), rng.uniform(0.5, 1.5)
        swell = np.exp(-0.5 * ((t - center) / width) ** 2)
        engine = _unit_rms(_filter(rng.standard_normal(n), sr, low=80.0, high=1200.0))
        rumble += rng.uniform(0.5, 1.5) * swell * engine
    return rumble


def rain(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    drops = np.zeros(n)
    count = rng.poisson(rng.uniform(200, 800) * n / sr)
    drops[rng.integers(0, n, count)] = rng.lognormal(0.0, 0.7, count)
    k = np.arange(int(0.004 * sr))
    kernel = rng.standard_normal(len(k)) * np.exp(-k / (0.0007 * sr))
    clicks = _unit_rms(_filter(fftconvolve(drops, kernel)[:n], sr, low=1000.0))
    hiss = _unit_rms(_filter(rng.standard_normal(n), sr, low=2000.0))
    return clicks + 0.5 * hiss


def alarm(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    if rng.random() < 0.5:  # beeps
        f = np.full(n, rng.uniform(700, 2500))
        period = rng.uniform(0.3, 1.0)
        gate = ((t % period) < period * rng.uniform(0.3, 0.6)).astype(float)
    else:  # two-tone siren
        f1 = rng.uniform(500, 1200)
        period = rng.uniform(0.6, 1.4)
        f = np.where((t % period) < period / 2, f1, f1 * rng.uniform(1.2, 1.5))
        gate = np.ones(n)
    gate = _filter(gate, sr, high=200.0, order=2)  # 5 ms ramps, no clicks
    phase = 2 * np.pi * np.cumsum(f) / sr
    return gate * np.tanh(3 * np.sin(phase))


def white(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    return rng.standard_normal(n)


GENERATORS: Dict[str, Callable[[int, np.random.Generator, int], np.ndarray]] = dict(
    babble=babble, music=music, traffic=traffic, rain=rain, alarm=alarm, white=white,
)


def make_noise(kind: str, num_samples: int, rng: np.random.Generator,
               sample_rate: int = 16000) -> np.ndarray:
    """Noise of kind ``kind``, unit RMS, shape (num_samples,), float64.

    ``clean`` returns zeros.
    """
    if kind == "clean":
        return np.zeros(num_samples)
    if kind not in GENERATORS:
        raise ValueError(f"unknown event: {kind} (expected one of {EVENTS})")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    return _unit_rms(GENERATORS[kind](num_samples, rng, sample_rate))


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """10 log10(speech power / noise power) over the whole signals."""
    return float(10 * np.log10(np.mean(speech ** 2) / np.mean(noise ** 2)))


def mix(speech: np.ndarray, noise: np.ndarray, snr: float,
        peak: float = 0.95) -> Tuple[np.ndarray, np.ndarray]:
    """Scale ``noise`` to ``snr`` dB below ``speech`` and add it.

    If the sum would exceed ``peak``, both parts are scaled down by the same
    gain, so the SNR is unchanged.

    Returns:
        (speech, noise): the two scaled components; the mixture is their sum.
    """
    if speech.shape != noise.shape:
        raise ValueError(f"shape mismatch: speech {speech.shape}, noise {noise.shape}")
    speech = speech.astype(np.float64)
    noise_power = np.mean(noise ** 2)
    if noise_power > 0:
        noise = noise * np.sqrt(np.mean(speech ** 2) / noise_power / 10 ** (snr / 10))
    gain = min(1.0, peak / max(np.abs(speech + noise).max(), 1e-9))
    return speech * gain, noise * gain
