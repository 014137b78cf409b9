"""A finished recipe's experiment dir, made by hand: what stages 6-9 leave for the report.

Models ``full`` (stock), ``gated`` (gates, 10 of 50 translations wrong), ``const`` (the same
text for every utterance), ``l0`` (a static baseline); sets ``test_deu_st_eng`` and
``test_eng_asr``. Hypotheses are scored by the real ``scripts/score.py`` (scores.json,
per_utt.json); decoding outputs, the profile JSON, stage times, commands and the baselines'
files are written as the stages write them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ST, ASR = "test_deu_st_eng", "test_eng_asr"
SETS = [ST, ASR]
MODELS = ["full", "gated", "const", "l0"]
N = 20
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
UNITS = {"encoder": "ffn1 attn cgmlp ffn2", "decoder": "self_attn src_attn ffn"}


def key(i: int) -> str:
    return f"spk{i % 2}_utt{i:03d}"


def ref(i: int) -> str:
    return " ".join(WORDS[(7 * i + 3 * j) % len(WORDS)] for j in range(5)) + f" item{i}"


def hyp(model: str, subset: str, i: int) -> str:
    if model == "const":
        return "thank you very much"
    if model == "gated" and (i >= 16 if subset == ST else i % 4 == 0):
        return f"nothing of it {i}"
    return ref(i)


def gates(i: int) -> tuple:
    """2 encoder layers x 4 units, 2 decoder layers x 3 units; utterance-dependent."""
    return ("1111 1011" if i % 2 else "1111 0011", "111 110")


def write(path: Path, rows: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in rows.items()), encoding="utf-8")


def make_exp(tmp: Path) -> Path:
    """Writes ``tmp/{dump,exp}``; returns the exp dir."""
    exp, dump = tmp / "exp", tmp / "dump"
    prefix = {ST: "<deu><st_eng><notimestamps>", ASR: "<eng><asr><notimestamps>"}
    for s in SETS:
        write(dump / s / "text", {key(i): f"{prefix[s]} {ref(i)}" for i in range(N)})
    gflops = {"full": 2.0, "gated": 1.5, "const": 2.0, "l0": 1.6}
    for m in MODELS:
        for s in SETS:
            d = exp / m / f"decode_{s}"
            write(d / "1best_recog" / "text", {key(i): hyp(m, s, i) for i in range(N)})
            write(d / "gflops", {key(i): f"{gflops[m] + 0.01 * i:.4f}" for i in range(N)})
            write(d / "decode_seconds", {key(i): f"{0.1 * gflops[m]:.4f}" for i in range(N)})
            if m == "gated":
                write(d / "gates" / "units", UNITS)
                write(d / "gates" / "encoder", {key(i): gates(i)[0] for i in range(N)})
                write(d / "gates" / "decoder", {key(i): gates(i)[1] for i in range(N)})
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "score.py"), "--exp",
                               str(exp / m), "--dump", str(dump), *SETS], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))  # this tree's package
        assert proc.returncode == 0, proc.stderr[-2000:]
        (exp / m / "train_seconds").write_text(f"{100 + len(m)}\n")
    (exp / "base").mkdir()
    (exp / "base" / "train_seconds").write_text("7000\n")
    base = json.loads((exp / "full" / "scores.json").read_text())
    (tmp / "base_scores.json").write_text(json.dumps(base))
    profile = {"reference": "full", "settings": {"num_utts": 8, "beam_size": 5, "data_dir": "x"},
               "models": {m: {"gflops_mean": g, "gflops_ratio": g / 2.0, "time_median_s": g / 10,
                              "time_min_s": g / 11, "time_ratio": g / 2.0, "peak_rss_mb": 1000.0,
                              "gflops_parts": {"subsampling": 0.167}}
                          for m, g in (("full", 2.0), ("gated", 1.5), ("full@espnet", 4.0))}}
    (exp / "efficiency").mkdir()
    (exp / "efficiency" / f"{ST}.json").write_text(json.dumps(profile))
    (exp / "stage_times").mkdir()
    for k in range(1, 10):
        if k != 3:
            (exp / "stage_times" / str(k)).write_text(f"{10 * k}\n")
    (exp / "commands.sh").write_text("python a.py\npython b.py\npython a.py\n")
    (exp / "plots").mkdir()
    (exp / "plots" / "gates_gated_task.png").write_bytes(b"png")
    (exp / "plots" / "gate_factors_gated.json").write_text(json.dumps(
        {"model": "gated", "utterances": 40, "closed_fraction": 0.1, "varying_gates": 1, "gates": 14,
         "factors": {"speaker": {"eta2": 0.9, "groups": 2, "png": "gates_gated_speaker.png"},
                     "task": {"eta2": None, "groups": 2, "png": "gates_gated_task.png"}}}))
    (exp / "baseline_target.json").write_text(json.dumps(
        {"utterances": 20, "data_dir": "dump/raw/dev", "fraction": 0.75,
         "gflops": {"model": 1.5, "reference": 2.0}}))
    (exp / "l0").mkdir(exist_ok=True)
    (exp / "l0" / "l0_export.json").write_text(json.dumps(
        {"kept": {"encoder": {"ffn": "3 3"}}, "total": {"encoder": {"ffn": "4 4"}},
         "params_m": {"masked": 2.0, "pruned": 1.5}, "gflops": {"full": 1.0, "pruned": 0.8},
         "flops_fraction": 0.8, "max_abs_diff": 1e-6}))
    return exp
