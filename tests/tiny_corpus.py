"""A tiny learnable S2T corpus made of tones, for training tests.

Every word is a short tone whose frequency depends on the word and on the
language (German words sound an octave lower), so a small model can learn
ASR (same words) and ST (word-by-word translation) in a few hundred steps.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from espnet_ext.tokens import special_tokens, text_lines, train_bpe

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
GERMAN = dict(zip(WORDS, ["anton", "berta", "caesar", "dora", "emil", "friedrich"]))
FS = 16000


def _tone(word: str, lang: str) -> np.ndarray:
    f = 300.0 + 120.0 * WORDS.index(word)
    f = f / 2 if lang == "deu" else f
    t = np.arange(int(0.18 * FS)) / FS
    return 0.3 * np.sin(2 * np.pi * f * t) * np.hanning(t.size)


def make_tiny_corpus(root: Path, n_train: int = 48, n_valid: int = 8, seed: int = 0) -> dict:
    """Writes ``train``/``valid`` Kaldi dirs, wavs and a BPE token list.

    Returns:
        dict with paths: "train", "valid", "tokens", "bpe".
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    out = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        d = root / "data" / split
        (d / "wav").mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            lang, task = [("eng", "asr"), ("deu", "asr"), ("deu", "st_eng")][i % 3]
            words = list(rng.choice(WORDS, size=rng.integers(2, 5)))
            audio = np.concatenate([np.concatenate([_tone(w, lang), np.zeros(800)]) for w in words])
            audio = audio + 0.01 * rng.standard_normal(audio.size)
            utt = f"spk{i % 4}_{split}{i:04d}_{lang}_{task}"
            wav = d / "wav" / f"{utt}.wav"
            sf.write(wav, audio.astype(np.float32), FS, subtype="PCM_16")
            source = " ".join(GERMAN[w] if lang == "deu" else w for w in words)
            target = " ".join(words) if task == "st_eng" else source
            rows.append((utt, str(wav), f"<{lang}><{task}><notimestamps> {target}", source))
        rows.sort()
        files = {
            "wav.scp": [f"{u} {w}" for u, w, _, _ in rows],
            "text": [f"{u} {t}" for u, _, t, _ in rows],
            "text.ctc": [f"{u} {s}" for u, _, _, s in rows],
            "text.prev": [f"{u} <na>" for u, _, _, _ in rows],
            "utt2spk": [f"{u} {u.split('_')[0]}" for u, _, _, _ in rows],
            "speech_shape": [f"{u} {sf.info(w).frames}" for u, w, _, _ in rows],
        }
        for name, lines in files.items():
            (d / name).write_text("\n".join(lines) + "\n")
        out[split] = d
    nlsyms = special_tokens(langs=("eng", "deu"), time_tokens=False)
    texts = text_lines([out["train"] / "text", out["train"] / "text.ctc"])
    out["tokens"] = train_bpe(texts, root / "token_list", vocab_size=60, nlsyms=nlsyms)
    out["bpe"] = root / "token_list" / "bpe.model"
    n_tokens = len(out["tokens"].read_text().split())
    for split in ("train", "valid"):
        d = out[split]
        utts = [line.split()[0] for line in (d / "text").read_text().splitlines()]
        for name in ("text_shape.bpe", "text_prev_shape.bpe", "text_ctc_shape.bpe"):
            (d / name).write_text("".join(f"{u} 16,{n_tokens}\n" for u in utts))
    return out


def train_args(data: dict, config: Path, out_dir: Path) -> list:
    """Arguments of ``s2t_train`` for this corpus (ESPnet's stage-11 layout)."""
    args = [
        "--config", str(config),
        "--output_dir", str(out_dir),
        "--ngpu", "0",
        "--use_preprocessor", "true",
        "--token_type", "bpe",
        "--bpemodel", str(data["bpe"]),
        "--token_list", str(data["tokens"]),
        "--use_tensorboard", "true",
        "--use_matplotlib", "false",
        "--resume", "true",
    ]
    for split, mode in (("train", "train"), ("valid", "valid")):
        d = data[split]
        args += [
            f"--{mode}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
            f"--{mode}_data_path_and_name_and_type", f"{d}/text.prev,text_prev,text",
            f"--{mode}_data_path_and_name_and_type", f"{d}/text.ctc,text_ctc,text",
            f"--{mode}_data_path_and_name_and_type", f"{d}/text,text,text",
            f"--{mode}_shape_file", f"{d}/speech_shape",
            f"--{mode}_shape_file", f"{d}/text_shape.bpe",
        ]
    return args


def s2t_train(data: dict, config: Path, out_dir: Path, *extra: str) -> str:
    """Runs ESPnet's stock ``s2t_train`` entry point; returns its log."""
    cmd = [sys.executable, "-m", "espnet2.bin.s2t_train"]
    cmd += train_args(data, config, out_dir) + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def stock_copy(exp: Path, out: Path) -> Path:
    """The same weights as a stock ESPnet model (gate keys dropped)."""
    import torch
    import yaml

    from espnet_ext.gating import GATE_CONF_KEYS

    conf = yaml.safe_load((exp / "config.yaml").read_text())
    conf.update(encoder="e_branchformer", decoder="transformer", model="espnet")
    for key in ("encoder_conf", "decoder_conf"):
        conf[key] = {k: v for k, v in conf[key].items() if k not in GATE_CONF_KEYS}
    conf["model_conf"] = {k: v for k, v in conf["model_conf"].items()
                          if k not in ("prune_scope", "sparsity_weighting")}
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(conf))
    state = torch.load(exp / "10epoch.pth", map_location="cpu")
    torch.save({k: v for k, v in state.items() if not k.startswith("gate_")},
               out / "model.pth")
    return out
