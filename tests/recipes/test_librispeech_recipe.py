"""egs2/librispeech_100/asr1 end to end (preset tiny) on a miniature LibriSpeech tree: the
shared pipeline with --task asr."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from espnet_ext.results import read_decode
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
           str(tmp / "corpus"), "--datadir", str(tmp / "data"), "--dumpdir", str(tmp / "dump"),
           "--expdir", str(tmp / "exp"), "--results", str(tmp / "RESULTS.md")]
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
    assert not [t for t in tokens if t in ("<eng>", "<asr>", "<notimestamps>")]  # no OWSM specials
    # stage 2: every set checked and formatted (the FLACs stay where they are), every test
    # utterance kept
    raw = tmp / "dump/raw"
    for s in ("train_clean_100", "dev") + SETS:
        assert set(table(raw / s / "speech_shape")) == set(table(data / s / "text")), s
        assert table(raw / s / "wav.scp") == table(data / s / "wav.scp")


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
    # the layout of S2T decoding (one reader: espnet_ext.results.read_decode)
    tmp, _, _ = recipe
    exp, data = tmp / "exp", tmp / "data"
    for m in MODELS:
        for s in SETS:
            dec = read_decode(exp / m / f"decode_{s}")
            refs = table(data / s / "text")
            assert set(dec.hyps) == set(refs)
            if m == "base":  # a stock model: no gates
                assert not dec.gates
            else:
                gates = dec.gates["encoder"]
                assert set(gates) == set(refs) and list(dec.gates) == ["encoder"]
                for bits in gates.values():  # 2 layers x (attn, ffn)
                    assert re.fullmatch(r"[01]{2} [01]{2}", bits), bits
            assert set(dec.gflops) == set(refs) and all(v > 0 for v in dec.gflops.values())
            assert set(dec.seconds) == set(refs)


def test_results_table(recipe):
    # RESULTS.md of scripts/report.py: each figure recomputed here from the decoding outputs
    tmp, _, _ = recipe
    rows = (tmp / "RESULTS.md").read_text().splitlines()
    exp, data = tmp / "exp", tmp / "data"

    def table_after(head: str) -> dict:
        i = rows.index(head)
        body = [r for r in rows[i + 2:]]
        body = body[:next(k for k, r in enumerate(body) if not r.startswith("| "))]
        return {r.split(" | ")[0][2:]: r.strip("| ").split(" | ")[1:] for r in body}

    wers = table_after("| model | test_clean wer (raw) | test_clean cer (raw) | "
                       "test_other wer (raw) | test_other cer (raw) |")
    assert list(wers) == list(MODELS)
    for model in MODELS:
        scores = json.loads((exp / model / "scores.json").read_text())["subsets"]
        for s, wer in zip(SETS, wers[model][::2]):
            refs = table(data / s / "text")
            hyps = read_decode(exp / model / f"decode_{s}").hyps
            # --wer_norm raw: the transcripts as they are (upper case, as LibriSpeech scores)
            errors = sum(edit_distance(refs[u].split(), hyps.get(u, "").split()) for u in refs)
            words = sum(len(v.split()) for v in refs.values())
            assert float(wer) == pytest.approx(100 * errors / words, abs=0.006), (model, s)
            assert scores[s]["task"] == "asr" and scores[s]["wer_norm"] == "raw"
            assert scores[s]["wer"] == pytest.approx(float(wer), abs=0.006)
    eff = table_after("| model | closed units | GFLOPs / utt | ratio | decode s / utt | ratio |")
    assert eff["base"][:3] == ["-", eff["base"][1], "1.000"]
    for model in ("gated", "gated_local"):
        bits = [b.replace(" ", "") for s in SETS
                for b in read_decode(exp / model / f"decode_{s}").gates["encoder"].values()]
        closed = 100 * sum(b.count("0") for b in bits) / sum(len(b) for b in bits)
        assert float(eff[model][0].rstrip(" %")) == pytest.approx(closed, abs=0.06)
    assert "| gated | " in "\n".join(rows[rows.index("## Difference vs base (paired bootstrap, 95% CI, p)"):])


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
    out = subprocess.run(cmd + ["--stop_stage", "8"], cwd=RECIPE, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for k in (1, 2, 4, 5, 6, 7, 8):
        assert f"Stage {k}: nothing to do (finished before)" in out.stdout, k


def test_speaker_conditioned_gates(recipe):
    # --models "base gated_spk": stage 3 extracts a speaker embedding of every set, the variant
    # trains with them (its size from the data) and decoding reads them; base is not retrained
    tmp, _, (cmd, env) = recipe
    out = subprocess.run(cmd + ["--models", "base gated_spk"], cwd=RECIPE, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    raw, exp = tmp / "dump/raw", tmp / "exp"
    for s in ("train_clean_100", "dev") + SETS:
        assert set(table(raw / s / "spk_embed.scp")) == set(table(raw / s / "wav.scp")), s
    conf = yaml.safe_load((exp / "gated_spk/config.yaml").read_text())
    assert conf["encoder_conf"]["gate_context"] == ["spk"] and conf["encoder_conf"]["spk_embed_dim"] == 256
    assert "Stage 6a" not in out.stdout  # base trained before
    decode = [c for c in (exp / "commands.sh").read_text().splitlines() if "decode.py" in c and "gated_spk" in c]
    assert len(decode) == 1 and "--npy spk_embed" in decode[0]
    for s in SETS:
        dec = read_decode(exp / "gated_spk" / f"decode_{s}")
        assert set(dec.hyps) == set(dec.gates["encoder"]) == set(table(tmp / "data" / s / "text"))
