"""egs2/librispeech_100/asr1 end to end (preset tiny) on a miniature LibriSpeech tree."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from script_loader import load_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2/librispeech_100/asr1"
MODELS = ("base", "gated", "gated_local")
SETS = ("test_clean", "test_other")


def table(path: Path) -> dict:
    return dict(
        (line.split(maxsplit=1) + [""])[:2] for line in path.read_text().splitlines() if line
    )


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox")
    tmp = tmp_path_factory.mktemp("librispeech")
    load_file(ROOT / "local/librispeech/make_mini.py").make_mini(tmp / "corpus", utts=6)
    cmd = ["./run.sh", "--preset", "tiny", "--nbpe", "30", "--librispeech_root",
           str(tmp / "corpus"), "--datadir", str(tmp / "data"), "--expdir", str(tmp / "exp"),
           "--results", str(tmp / "RESULTS.md")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return tmp, out.stdout + out.stderr, (cmd, env)


def test_data_and_token_list(recipe):
    tmp, _, _ = recipe
    data = tmp / "data"
    assert len(table(data / "train_clean_100/text")) == 12
    assert len(table(data / "dev/text")) == 6 and len(table(data / "test_other/text")) == 3
    tokens = (data / "token_list/bpe_unigram30/tokens.txt").read_text().split()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"


def test_models_are_the_configured_ones(recipe):
    tmp, _, _ = recipe
    exp = tmp / "exp"
    confs = {m: yaml.safe_load((exp / m / "config.yaml").read_text()) for m in MODELS}
    assert confs["base"]["encoder"] == "transformer" and confs["base"]["model"] == "espnet"
    for m in ("gated", "gated_local"):
        assert confs[m]["encoder"] == "transformer_token_condition"
        assert confs[m]["model"] == "espnet_gated" and confs[m]["tau_cooldown_steps"] == 8
        assert confs[m]["init_param"] == [str(exp / "base/valid.acc.ave.pth")]
    assert confs["gated"]["encoder_conf"]["gate_predictor"] == "global"
    assert confs["gated_local"]["encoder_conf"]["gate_predictor"] == "local"
    state = torch.load(exp / "gated_local/valid.acc.ave.pth", map_location="cpu")
    assert "encoder.gate_predictor.layers.1.net.weight" in state
    # the gated fine-tunes start from the base model's weights
    base = torch.load(exp / "base/valid.acc.ave.pth", map_location="cpu")
    assert set(base) < set(state)


def test_gated_training_reports_the_schedule(recipe):
    tmp, _, _ = recipe
    log = (tmp / "exp/gated/train.log").read_text()
    epochs = re.findall(r"(\d+)epoch results: \[train\] (.*?)\[valid\]", log)
    assert [int(e) for e, _ in epochs] == [1, 2]
    last = dict(re.findall(r"(\w+)=([-0-9.e+]+)", epochs[-1][1]))
    for key in ("loss_sparsity", "sparsity", "sparsity_enc", "tau", "sparsity_target"):
        assert key in last, key
    # 2 epochs x 4 steps: tau 1 -> 0.1 and s* 0 -> 0.3 over 8 steps; epoch 2 = steps 4..7
    assert float(last["tau"]) == pytest.approx(sum(1 - 0.9 * k / 8 for k in range(4, 8)) / 4, abs=2e-3)
    assert float(last["sparsity_target"]) == pytest.approx(sum(0.3 * k / 8 for k in range(4, 8)) / 4, abs=2e-3)


def test_decoding_outputs_parse(recipe):
    tmp, _, _ = recipe
    exp, data = tmp / "exp", tmp / "data"
    gflops = {}
    for m in MODELS:
        for s in SETS:
            dec = exp / m / f"decode_{s}"
            refs = table(data / s / "text")
            assert set(table(dec / "1best_recog/text")) == set(refs)
            gates = table(dec / "gates")
            assert set(gates) == set(refs)
            for bits in gates.values():  # 2 layers x (attn, ffn)
                assert re.fullmatch(r"[01]{2} [01]{2}", bits), bits
            if m == "base":
                assert set(gates.values()) == {"11 11"}
            g = {u: float(v) for u, v in table(dec / "gflops").items()}
            assert set(g) == set(refs) and all(v > 0 for v in g.values())
            gflops[m, s] = g
            assert (dec / "wer.json").exists()
    # same encoder shape: an utterance costs at most the base model's GFLOPs
    for s in SETS:
        for m in ("gated", "gated_local"):
            for u, v in gflops[m, s].items():
                assert v <= gflops["base", s][u] * (1 + 1e-6)


def test_results_table(recipe):
    tmp, _, _ = recipe
    rows = (tmp / "RESULTS.md").read_text().splitlines()
    assert rows[2] == ("| model | test_clean WER (%) | test_other WER (%) | "
                       "encoder GFLOPs/utt | gate sparsity |")
    body = [r for r in rows[4:] if r.startswith("| ")]
    assert [r.split(" | ")[0][2:] for r in body] == list(MODELS)
    exp, data = tmp / "exp", tmp / "data"
    for model, r in zip(MODELS, body):
        cells = [float(c) for c in r.strip("| ").split(" | ")[1:]]
        # each figure recomputed here from the decoding outputs and the references
        for s, wer in zip(SETS, cells[:2]):
            refs = table(data / s / "text")
            hyps = table(exp / model / f"decode_{s}" / "1best_recog" / "text")
            errors = sum(edit_distance(refs[u].upper().split(), hyps.get(u, "").upper().split())
                         for u in refs)
            words = sum(len(v.split()) for v in refs.values())
            assert wer == pytest.approx(100 * errors / words, abs=0.006), (model, s)
        gflops = [float(v) for s in SETS for v in table(exp / model / f"decode_{s}" / "gflops").values()]
        assert cells[2] == pytest.approx(sum(gflops) / len(gflops), rel=1e-3)
        bits = [b.replace(" ", "") for s in SETS for b in table(exp / model / f"decode_{s}" / "gates").values()]
        assert cells[3] == pytest.approx(sum(b.count("0") / len(b) for b in bits) / len(bits), abs=6e-4)
    assert body[0].endswith("| 0.000 |")  # the base model has no gates


def edit_distance(ref, hyp) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def test_rerun_skips_finished_work(recipe):
    tmp, _, (cmd, env) = recipe
    out = subprocess.run(cmd + ["--stop_stage", "5"], cwd=RECIPE, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "trained before" in out.stdout and "decoding" not in out.stdout.replace("Decoding", "")
