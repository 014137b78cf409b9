"""scripts/plot_gates.py and scripts/plot_tradeoff.py on synthetic decoding outputs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUBSETS = ["test_deu_asr", "test_eng_asr", "test_deu_st_eng"]


def write(path: Path, rows: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in rows.items()))


def fake_exp(tmp: Path) -> None:
    """Gates depend on the task only: ASR closes the decoder FFN of layer 2, ST never does."""
    for subset in SUBSETS:
        task = subset.split("_", 2)[2]
        utts = [f"{subset}_u{i}" for i in range(6)]
        d = tmp / "exp" / "gated" / f"decode_{subset}"
        dec = "111 110" if task == "asr" else "111 111"
        write(d / "gates" / "encoder", {u: "1111 1011" for u in utts})
        write(d / "gates" / "decoder", {u: dec for u in utts})
        write(d / "gates" / "units", {"encoder": "ffn1 attn cgmlp ffn2", "decoder": "self_attn src_attn ffn"})
        write(tmp / "dump" / subset / "utt2spk", {u: f"spk{i % 2}" for i, u in enumerate(utts)})
        write(tmp / "dump" / subset / "utt2event", {u: ["rain", "dog", "none"][i % 3] for i, u in enumerate(utts)})
        for model, g in (("gated", 1.5), ("full", 2.0), ("l0", 1.6)):
            write(tmp / "exp" / model / f"decode_{subset}" / "gflops", {u: g for u in utts})
    for model, (bleu, wer) in {"gated": (20.0, 30.0), "full": (22.0, 25.0), "l0": (15.0, 40.0)}.items():
        scores = {s: ({"bleu": bleu} if "_st_" in s else {"wer": wer}) for s in SUBSETS}
        (tmp / "exp" / model / "scores.json").write_text(json.dumps({"subsets": scores}))


def run(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_plot_gates_finds_the_task_factor(tmp_path):
    fake_exp(tmp_path)
    out = tmp_path / "plots"
    stdout = run("plot_gates.py", "--exp", str(tmp_path / "exp"), "--dump", str(tmp_path / "dump"),
                 "--test_sets", *SUBSETS, "--out_dir", str(out))
    rep = json.loads((out / "gate_factors_gated.json").read_text())
    f = rep["factors"]
    assert f["task"]["eta2"] == pytest.approx(1.0)  # the task determines the only varying gate
    assert f["speaker"]["eta2"] == pytest.approx(0.0)
    assert 0.0 < f["language"]["eta2"] < 1.0  # deu has both tasks
    assert f["task"]["open_rate"]["asr"]["decoder"] == [[1, 1, 1], [1, 1, 0]]
    assert f["task"]["open_rate"]["st_eng"]["decoder"] == [[1, 1, 1], [1, 1, 1]]
    assert rep["utterances"] == 18
    for factor in ("language", "task", "speaker", "event"):
        png = out / f"gates_gated_{factor}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert stdout.splitlines()[2].startswith("task")  # sorted by eta^2
    assert "1/14 gates vary" in stdout.splitlines()[0]
    assert rep["closed_fraction"] == pytest.approx((18 + 12) / (18 * 14))  # enc: 1 of 8 always; dec: ASR


def test_plot_tradeoff(tmp_path):
    fake_exp(tmp_path)
    out = tmp_path / "plots" / "tradeoff.png"
    run("plot_tradeoff.py", "--exp", str(tmp_path / "exp"), "--models", "full", "gated", "l0",
        "--test_sets", *SUBSETS, "--out", str(out))
    assert out.read_bytes()[:4] == b"\x89PNG"
    pts = json.loads(out.with_suffix(".json").read_text())
    assert pts["ST"]["l0"]["gflops"] == pytest.approx(1.6) and pts["ST"]["l0"]["bleu"] == 15.0
    assert pts["ASR"]["full"]["wer"] == 25.0 and pts["ASR"]["gated"]["gflops"] == 1.5


def test_eta_squared_adjusts_for_many_small_groups():
    import numpy as np

    from script_loader import load_script

    mod = load_script("plot_gates")
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (40, 3)).astype(float)
    per_utt = np.arange(40)  # one group per utterance: explains everything by construction
    assert mod.eta_squared(bits, per_utt, adjusted=False) == pytest.approx(1.0)
    assert mod.eta_squared(bits, per_utt) is None
    noise = rng.integers(0, 10, 40)  # 10 random groups: raw eta^2 ~ 9/39 by chance, adjusted ~ 0
    assert mod.eta_squared(bits, noise, adjusted=False) > 0.1
    assert mod.eta_squared(bits, noise) < 0.1
    assert mod.eta_squared(np.ones((5, 2)), np.arange(5) % 2) is None  # nothing varies


def test_plot_gates_names_the_utterances_without_a_speaker_or_event(tmp_path):
    """Sets without utt2event (and one utterance without a speaker): the group is `no event` /
    `no spk`, explained in the JSON, the plot and the printout; never `?`."""
    fake_exp(tmp_path)
    for subset in SUBSETS[1:]:
        (tmp_path / "dump" / subset / "utt2event").unlink()
    spk = tmp_path / "dump" / SUBSETS[0] / "utt2spk"
    spk.write_text("".join(spk.read_text().splitlines(keepends=True)[1:]))
    out = tmp_path / "plots"
    stdout = run("plot_gates.py", "--exp", str(tmp_path / "exp"), "--dump", str(tmp_path / "dump"),
                 "--test_sets", *SUBSETS, "--out_dir", str(out))
    f = json.loads((out / "gate_factors_gated.json").read_text())["factors"]
    assert set(f["event"]["open_rate"]) == {"no event", "rain", "dog", "none"}
    assert f["event"]["unlabelled"] == "no event: utterances without a line in <dump>/<set>/utt2event"
    assert "no spk" in f["speaker"]["open_rate"]
    assert f["speaker"]["unlabelled"] == "no spk: utterances without a line in <dump>/<set>/utt2spk"
    assert "event: no event: utterances without a line in <dump>/<set>/utt2event" in stdout.splitlines()
    assert "?" not in json.dumps(f)
