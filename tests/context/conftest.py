"""Fixtures for context-extractor tests: real synthesized signal.

Speech: espeak-ng voices (several languages and voice variants, each a
"speaker"), resampled to 16 kHz. Background events: procedurally generated
(white noise, low rumble, music chords, alarm beeps, rain-like clicks) and
mixed into speech at random SNR.
"""

import shutil
import subprocess
import types
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import soundfile as sf
import torch

RATE = 16000

SENTENCES = {
    "en": [
        "The committee will vote on the proposal tomorrow morning.",
        "We must protect the rights of workers across the union.",
        "I would like to thank the rapporteur for her excellent work.",
        "This report raises serious questions about energy prices.",
        "The budget for research should be increased next year.",
        "Many citizens are worried about the future of agriculture.",
        "Our fishermen need clear and fair rules for the coming season.",
        "The debate is closed and the vote will take place at noon.",
    ],
    "de": [
        "Der Ausschuss stimmt morgen früh über den Vorschlag ab.",
        "Wir müssen die Rechte der Arbeitnehmer in der Union schützen.",
        "Ich danke der Berichterstatterin für ihre hervorragende Arbeit.",
        "Dieser Bericht wirft ernste Fragen zu den Energiepreisen auf.",
        "Das Budget für die Forschung sollte im nächsten Jahr steigen.",
        "Viele Bürger sorgen sich um die Zukunft der Landwirtschaft.",
        "Unsere Fischer brauchen klare und faire Regeln für die Saison.",
        "Die Aussprache ist geschlossen, die Abstimmung folgt am Mittag.",
    ],
    "fr": [
        "La commission votera sur la proposition demain matin.",
        "Nous devons protéger les droits des travailleurs dans l'Union.",
        "Je remercie la rapporteure pour son excellent travail.",
        "Ce rapport soulève de sérieuses questions sur les prix de l'énergie.",
        "Le budget de la recherche devrait augmenter l'année prochaine.",
        "Beaucoup de citoyens s'inquiètent de l'avenir de l'agriculture.",
        "Nos pêcheurs ont besoin de règles claires pour la saison.",
        "Le débat est clos et le vote aura lieu à midi.",
    ],
    "it": [
        "La commissione voterà sulla proposta domani mattina.",
        "Dobbiamo proteggere i diritti dei lavoratori nell'Unione.",
        "Ringrazio la relatrice per il suo eccellente lavoro.",
        "Questa relazione solleva gravi domande sui prezzi dell'energia.",
        "Il bilancio per la ricerca dovrebbe aumentare l'anno prossimo.",
        "Molti cittadini sono preoccupati per il futuro dell'agricoltura.",
        "I nostri pescatori hanno bisogno di regole chiare per la stagione.",
        "La discussione è chiusa e il voto avrà luogo a mezzogiorno.",
    ],
}

# speaker id -> (language, espeak-ng voice, pitch 0-99, words per minute)
SPEAKERS = {
    "en_m3": ("en", "en+m3", 40, 150),
    "en_f2": ("en", "en+f2", 60, 165),
    "de_m1": ("de", "de+m1", 35, 140),
    "de_f4": ("de", "de+f4", 70, 155),
    "fr_m5": ("fr", "fr+m5", 45, 150),
    "it_f3": ("it", "it+f3", 65, 145),
}


def synth(text: str, voice: str, pitch: int, speed: int, tmp: Path) -> np.ndarray:
    """Synthesizes ``text`` with espeak-ng; returns (T,) float32 at 16 kHz."""
    import soxr

    wav_path = tmp / "espeak.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            voice,
            "-p",
            str(pitch),
            "-s",
            str(speed),
            "-w",
            str(wav_path),
            text,
        ],
        check=True,
        capture_output=True,
    )
    wav, rate = sf.read(wav_path, dtype="float32")
    return soxr.resample(wav, rate, RATE).astype(np.float32)


def white(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def rumble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Brown noise: white noise through a leaky integrator."""
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, -0.995], rng.standard_normal(n))
    return x - x.mean()


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Major/minor triads with harmonics, a new chord every 0.5-1 s."""
    t = np.arange(n) / RATE
    out = np.zeros(n)
    pos = 0
    while pos < n:
        size = int(rng.uniform(0.5, 1.0) * RATE)
        root = 110 * 2 ** (rng.integers(0, 24) / 12)
        third = 4 if rng.random() < 0.5 else 3
        seg = slice(pos, pos + size)
        for semis in (0, third, 7):
            f = root * 2 ** (semis / 12)
            for h, amp in ((1, 1.0), (2, 0.5), (3, 0.25)):
                out[seg] += amp * np.sin(2 * np.pi * f * h * t[seg])
        env = np.exp(-3 * np.arange(len(out[seg])) / RATE)
        out[seg] *= env
        pos += size
    return out


def alarm(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two-tone beeping (on/off square envelope)."""
    t = np.arange(n) / RATE
    f1, f2 = rng.uniform(700, 1100), rng.uniform(1300, 2000)
    period = rng.uniform(0.2, 0.4)
    phase = (t / period) % 2
    tone = np.where(phase < 1, np.sin(2 * np.pi * f1 * t), np.sin(2 * np.pi * f2 * t))
    return tone * ((t / (period / 2)) % 2 < 1.4)


def rain(n: int, rng: np.random.Generator) -> np.ndarray:
    """Dense random short clicks (decaying noise bursts)."""
    out = np.zeros(n + 200)
    click = rng.standard_normal(200) * np.exp(-np.arange(200) / 20)
    for pos in rng.integers(0, n, size=int(n / RATE * rng.uniform(80, 200))):
        out[pos : pos + 200] += click * rng.uniform(0.2, 1.0)
    return out[:n]


EVENTS: Dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white": white,
    "rumble": rumble,
    "music": music,
    "alarm": alarm,
    "rain": rain,
}


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mixes at ``snr_db`` (speech over event power), peak-normalised to 0.9."""
    noise = noise * np.sqrt(np.mean(speech**2) / (np.mean(noise**2) + 1e-12))
    out = speech + noise * 10 ** (-snr_db / 20)
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="module")
def one_thread():
    # These models are small: with other processes on the 2 cores, one
    # intra-op thread ran resemblyzer 13x faster than two (30.7 vs 2.4 utt/s).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def espeak():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return "espeak-ng"


@pytest.fixture(scope="session")
def speech(espeak, tmp_path_factory) -> Dict[str, List[np.ndarray]]:
    """Speaker id -> 8 utterances (one per sentence of its language)."""
    tmp = tmp_path_factory.mktemp("espeak")
    return {
        spk: [synth(text, voice, pitch, speed, tmp) for text in SENTENCES[lang]]
        for spk, (lang, voice, pitch, speed) in SPEAKERS.items()
    }


@pytest.fixture(scope="session")
def event_mixtures(speech) -> List[Tuple[np.ndarray, str, str]]:
    """(waveform, event label, speaker) triples: every speech utterance mixed
    with each event type at 0-10 dB SNR."""
    rng = np.random.default_rng(0)
    out = []
    for spk, wavs in speech.items():
        for wav in wavs:
            for label, make in EVENTS.items():
                noise = make(len(wav), rng)
                out.append((mix(wav, noise, rng.uniform(0, 10)), label, spk))
    return out


def write_wav(path: Path, wav: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def sig():
    """Signal helpers for tests (conftest modules are not importable by name)."""
    return types.SimpleNamespace(rate=RATE, events=EVENTS, mix=mix, write_wav=write_wav)
