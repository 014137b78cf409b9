"""Measures the context extractors: quality on synthesized data, and speed.

Quality (same data as tests/context): 6 espeak-ng voices x 8 sentences
(en/de/fr/it); speaker embeddings scored by leave-one-out cosine
nearest-neighbour accuracy and pairwise EER; every utterance mixed with each of
5 procedural background events (0-10 dB SNR), the small event tagger trained on
3 speakers' mixtures and its embeddings scored by a logistic-regression probe
on the other 3 speakers' mixtures.

Speed: utterances per second of ``embed`` over the 48 utterances (mean 3.7 s),
one warm-up utterance excluded, ``torch.set_num_threads(--threads)``. ECAPA and
BEATs use random weights at the released sizes (same compute as the real
ones), through the same loading code as real downloads.

Usage:
    python scripts/bench/bench_context.py quality
    python scripts/bench/bench_context.py speed --threads 2
"""

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests" / "context"


def load(name: str, path: Path):
    """Imports a test helper module by path (tests are not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def speech(tmp: Path) -> tuple:
    synth = load("context_conftest", TESTS / "conftest.py")
    return synth, {
        spk: [synth.synth(t, v, p, s, tmp) for t in synth.SENTENCES[lang]]
        for spk, (lang, v, p, s) in synth.SPEAKERS.items()
    }


def quality(tmp: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from espnet_ext.context import build_extractor
    from espnet_ext.context.event import train_event_tagger

    helpers = load("context_test_speaker", TESTS / "test_speaker.py")
    synth, utts = speech(tmp)
    wavs = [w for ws in utts.values() for w in ws]
    labels = np.array([spk for spk, ws in utts.items() for _ in ws])
    emb = build_extractor("speaker", "resemblyzer").embed(wavs)
    print(
        f"resemblyzer: {len(wavs)} utts, {len(utts)} speakers: "
        f"NN accuracy {helpers.nn_accuracy(emb, labels):.3f}, "
        f"EER {100 * helpers.eer(emb, labels):.1f}%"
    )
    rng = np.random.default_rng(0)
    mixes = [
        (synth.mix(w, make(len(w), rng), rng.uniform(0, 10)), event, spk)
        for spk, ws in utts.items()
        for w in ws
        for event, make in synth.EVENTS.items()
    ]
    held = {"en_f2", "de_m1", "it_f3"}
    train = [m for m in mixes if m[2] not in held]
    test = [m for m in mixes if m[2] in held]
    for channels in ((8, 16, 32, 64), (16, 32, 64, 128)):
        start = time.time()
        train_event_tagger(
            [m[0] for m in train],
            [m[1] for m in train],
            out=tmp / "tagger.pth",
            epochs=8,
            crop_seconds=2.0,
            channels=channels,
        )
        took = time.time() - start
        ext = build_extractor("event", str(tmp / "tagger.pth"))
        x_train, x_test = ext.embed([m[0] for m in train]), ext.embed(
            [m[0] for m in test]
        )
        scale = StandardScaler().fit(x_train)
        probe = LogisticRegression(max_iter=2000).fit(
            scale.transform(x_train), [m[1] for m in train]
        )
        acc = probe.score(scale.transform(x_test), [m[1] for m in test])
        print(
            f"event tagger channels={channels}: trained on {len(train)} clips in "
            f"{took:.0f} s; linear probe on {len(test)} held-out clips "
            f"({len(synth.EVENTS)} events): accuracy {acc:.3f}"
        )


def speed(tmp: Path, threads: int) -> None:  # threads: for the log line
    from espnet_ext.context import build_extractor
    from espnet_ext.context.event import EventTagger, save_tagger

    _, utts = speech(tmp)
    wavs = [w for ws in utts.values() for w in ws]
    seconds = sum(len(w) for w in wavs) / 16000
    spk = load("context_test_speaker", TESTS / "test_speaker.py")
    evt = load("context_test_event", TESTS / "test_event.py")
    ecapa_dir = spk.make_ecapa_dir(tmp / "spkrec-ecapa-voxceleb")
    # BEATs iter3 sizes: 12 layers, 768-d, FFN 3072, 512-d patch embedding.
    beats_cfg = dict(
        evt.BEATS_CFG,
        embed_dim=512,
        encoder_layers=12,
        encoder_embed_dim=768,
        encoder_ffn_embed_dim=3072,
        encoder_attention_heads=12,
        max_distance=800,
    )
    beats = evt.make_beats_checkpoint(tmp / "beats.pt", beats_cfg)
    tagger = tmp / "tagger.pth"
    save_tagger(
        EventTagger(num_classes=5), {"sample_rate": 16000}, list("abcde"), tagger
    )
    models = [
        ("speaker", "resemblyzer"),
        ("speaker", f"ecapa:{ecapa_dir}"),
        ("event", f"tagger:{tagger}"),
        ("event", f"beats:{beats}"),
    ]
    print(
        f"{len(wavs)} utterances, {seconds:.1f} s audio, torch threads {threads}, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )
    for kind, model in models:
        ext = build_extractor(kind, model)
        ext.embed(wavs[:1])  # warm-up (lazy init, numba JIT in resemblyzer)
        start, cpu = time.perf_counter(), time.process_time()
        ext.embed(wavs)
        took, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(
            f"{type(ext).__name__:22s} dim {ext.dim:4d}: "
            f"{len(wavs) / took:6.1f} utt/s, "
            f"RTF {took / seconds:.4f}, CPU {cpu / len(wavs):.3f} s/utt "
            f"(load average {os.getloadavg()[0]:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["quality", "speed"], help="What to measure.")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(args.threads)
        if args.what == "quality":
            quality(Path(tmp))
        else:
            speed(Path(tmp), args.threads)


if __name__ == "__main__":
    main()
