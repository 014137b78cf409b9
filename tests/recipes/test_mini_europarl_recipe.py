"""egs2/mini_europarl/s2t1/run.sh --preset tiny, end to end (every stage's outputs).

The recipe writes data/dump/exp into a tmp dir (--datadir/--dumpdir/--expdir); stage 9's
profiler (espnet_ext.bin.profile) is replaced by a stub JSON when it is not installed.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "mini_europarl" / "s2t1"
MODELS = ("full", "gated", "gated_spk", "gated_event")
BASELINES = ("l0", "layerprune")  # static pruning at the gated model's FLOPs (--baselines true)
SETS = ("pretrain", "train", "dev", "test")
SUBSETS = ("test_eng_asr", "test_deu_asr", "test_fra_asr", "test_ita_asr",
           "test_deu_st_eng", "test_fra_st_eng", "test_ita_st_eng")
SPECIALS = ("<na>", "<nospeech>", "<eng>", "<deu>", "<fra>", "<ita>", "<asr>", "<st_eng>",
            "<notimestamps>", "<0.00>", "<30.00>")


def has_profiler() -> bool:
    import importlib.util

    return importlib.util.find_spec("espnet_ext.bin.profile") is not None


def stub_profile(exp: Path) -> None:
    """The JSON espnet_ext.bin.profile writes (format agreed with its author)."""
    settings = {"threads": 2, "beam_size": 5, "num_utts": 2, "repeats": 1}
    models = {m: {"gflops_mean": 1.0 - 0.1 * i, "time_median_s": 0.5, "time_min_s": 0.4,
                  "peak_rss_mb": 500.0, "gflops_ratio": 1.0 - 0.1 * i, "time_ratio": 1.0,
                  "settings": settings} for i, m in enumerate(MODELS + BASELINES)}
    (exp / "efficiency").mkdir(parents=True, exist_ok=True)
    (exp / "efficiency" / "test_deu_st_eng.json").write_text(
        json.dumps({"reference": "full", "models": models}))


def run_recipe(tmp: Path, *opts: str) -> str:
    cmd = ["./run.sh", "--preset", "tiny", "--datadir", str(tmp / "data"),
           "--dumpdir", str(tmp / "dump"), "--expdir", str(tmp / "exp"),
           "--results", str(tmp / "RESULTS.md"), "--baselines", "true", *opts]
    # the recipe's default (path.sh): one torch thread per process, --nj processes
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing (make sysdeps)")
    tmp = tmp_path_factory.mktemp("mini_europarl")
    if has_profiler():
        log = run_recipe(tmp)
    else:
        log = run_recipe(tmp, "--stop_stage", "8")
        stub_profile(tmp / "exp")
        log += run_recipe(tmp, "--stage", "9")
    return tmp, log


def read_table(path: Path) -> dict:
    lines = path.read_text(encoding="utf-8").splitlines()
    keys = [line.split(" ", 1)[0] for line in lines]
    assert keys == sorted(keys), f"{path} is not sorted"
    assert len(set(keys)) == len(keys), f"{path} has duplicate keys"
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines}


def check_kaldi_dir(d: Path, files=("wav.scp", "text", "text.ctc", "text.prev", "utt2spk")):
    tables = {f: read_table(d / f) for f in files}
    keys = list(tables["wav.scp"])
    assert keys, d
    for f, t in tables.items():
        assert list(t) == keys, f"{d}/{f}: keys differ from wav.scp"
    for utt, text in tables["text"].items():
        assert re.match(r"^<(eng|deu|fra|ita)><(asr|st_eng)><notimestamps> \S", text), (utt, text)
    spk2utt = read_table(d / "spk2utt")
    assert sorted(u for us in spk2utt.values() for u in us.split()) == keys
    return keys


def test_stage1_2_data_and_dump(recipe):
    tmp, _ = recipe
    for s in SETS:
        check_kaldi_dir(tmp / "data" / s)
        keys = check_kaldi_dir(tmp / "dump" / "raw" / s)
        shapes = read_table(tmp / "dump" / "raw" / s / "speech_shape")
        assert list(shapes) == keys and all(int(v) > 1600 for v in shapes.values())
    all_test = set(read_table(tmp / "dump" / "raw" / "test" / "wav.scp"))
    seen = set()
    for sub in SUBSETS:
        keys = check_kaldi_dir(tmp / "dump" / "raw" / sub)
        _, lang, task = sub.split("_", 2)
        assert all(t.startswith(f"<{lang}><{task}>")
                   for t in read_table(tmp / "dump" / "raw" / sub / "text").values())
        seen |= set(keys)
    assert seen == all_test


def test_stage3_context_embeddings(recipe):
    tmp, _ = recipe
    for d in ["train", "dev", "test", *SUBSETS]:
        keys = list(read_table(tmp / "dump" / "raw" / d / "wav.scp"))
        for name, dim in (("spk_embed", 256), ("event_embed", None)):
            scp = read_table(tmp / "dump" / "raw" / d / f"{name}.scp")
            assert list(scp) == keys, (d, name)
            for path in list(scp.values())[:4]:
                x = np.load(path)
                assert x.dtype == np.float32 and x.ndim == 1 and np.isfinite(x).all()
                if dim:
                    assert x.shape == (dim,)
    assert (tmp / "exp" / "event_tagger" / "tagger.pth").is_file()


def test_stage4_token_list(recipe):
    tmp, _ = recipe
    (tok_dir,) = (tmp / "data" / "token_list").iterdir()
    tokens = (tok_dir / "tokens.txt").read_text().split("\n")
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-4:-1] == ["<sos>", "<eos>", "<sop>"]
    for t in SPECIALS:
        assert t in tokens, t
    assert (tok_dir / "bpe.model").is_file()


def test_stage5_stats(recipe):
    tmp, _ = recipe
    (stats,) = tmp.joinpath("exp").glob("s2t_stats_*")
    for s in ("pretrain", "train"):
        for mode in ("train", "valid"):
            for f in ("speech_shape", "text_shape.bpe", "text_ctc_shape.bpe"):
                assert (stats / s / mode / f).stat().st_size > 0, (s, mode, f)
    npz = np.load(stats / "pretrain" / "train" / "feats_stats.npz")
    assert int(npz["count"]) > 0


def test_stage6_models(recipe):
    import torch

    tmp, _ = recipe
    exp = tmp / "exp"
    for m in ("base",) + MODELS:
        state = torch.load(exp / m / "valid.acc.ave.pth", map_location="cpu")
        assert all(torch.isfinite(v.float()).all() for v in state.values()), m
        assert (exp / m / "config.yaml").is_file()
        gates = [k for k in state if "gate_predictor" in k]
        assert bool(gates) == m.startswith("gated"), m
    conf = (exp / "gated_spk" / "config.yaml").read_text()
    assert "spk_embed_dim: 256" in conf and "- spk" in conf
    assert "- event" in (exp / "gated_event" / "config.yaml").read_text()


def test_stage6_baselines(recipe):
    import torch
    import yaml

    tmp, log = recipe
    exp = tmp / "exp"
    target = float((exp / "baseline_target").read_text())
    assert 0.2 < target < 1.0, target  # gated / full GFLOPs on the same decodes
    assert f"baselines' FLOPs target: {target:.4f}" in log
    full = yaml.safe_load((exp / "full" / "config.yaml").read_text())
    # L0: trained with the matched target, exported to a stock model with fewer units
    l0_train = yaml.safe_load((exp / "l0_train" / "config.yaml").read_text())
    assert l0_train["model_conf"]["target_flops"] == pytest.approx(target, abs=1e-4)
    l0 = yaml.safe_load((exp / "l0" / "config.yaml").read_text())
    assert (l0["model"], l0["encoder"], l0["decoder"]) == ("espnet", "e_branchformer", "transformer")
    report = json.loads((exp / "l0" / "l0_export.json").read_text())
    assert report["max_abs_diff"] < 1e-4 and report["gflops"]["pruned"] < report["gflops"]["full"]
    # layer pruning: convexity curve, fewer layers, fine-tuned from the base model's layers
    curve = json.loads((exp / "layerprune_init" / "convexity.json").read_text())
    n_enc, n_dec = full["encoder_conf"]["num_blocks"], full["decoder_conf"]["num_blocks"]
    assert (len(curve["encoder"]["scores"]), len(curve["decoder"]["scores"])) == (n_enc, n_dec)
    lp = yaml.safe_load((exp / "layerprune" / "config.yaml").read_text())
    kept = (lp["encoder_conf"]["num_blocks"], lp["decoder_conf"]["num_blocks"])
    assert sum(kept) < n_enc + n_dec, kept
    for m in BASELINES:
        state = torch.load(exp / m / "valid.acc.ave.pth", map_location="cpu")
        assert all(torch.isfinite(v.float()).all() for v in state.values()), m
        assert not any("gate_predictor" in k or "log_alpha" in k for k in state), m


def test_stage7_decoding(recipe):
    tmp, _ = recipe
    for m in MODELS + BASELINES:
        for sub in SUBSETS:
            d = tmp / "exp" / m / f"decode_{sub}"
            keys = list(read_table(tmp / "dump" / "raw" / sub / "wav.scp"))
            assert list(read_table(d / "1best_recog" / "text")) == keys
            gflops = read_table(d / "gflops")
            assert list(gflops) == keys and all(float(v) > 0 for v in gflops.values())
            if m.startswith("gated"):
                gates = read_table(d / "gates" / "encoder")
                assert list(gates) == keys
                assert set("".join(gates.values())) <= set("01 ")


def test_stage8_scores(recipe):
    tmp, _ = recipe
    for m in MODELS + BASELINES:
        scores = json.loads((tmp / "exp" / m / "scores.json").read_text())
        assert sorted(scores["subsets"]) == sorted(SUBSETS)
        for sub, s in scores["subsets"].items():
            keys = ("bleu", "chrf") if "_st_" in sub else ("wer", "cer")
            for k in keys:
                assert isinstance(s[k], float) and math.isfinite(s[k]), (m, sub, k)
        assert "nrefs:1" in scores["signatures"]["bleu"]


def test_stage9_results_md(recipe):
    tmp, _ = recipe
    md = (tmp / "RESULTS.md").read_text()
    assert "preset `tiny`" in md
    for m in MODELS + BASELINES:
        assert re.search(rf"^\| {m} \|", md, re.M), m
    for col in ("deu_st_eng bleu", "fra_st_eng chrf", "ita_asr wer", "eng_asr cer"):
        assert col in md, col
    assert "GFLOPs / utt" in md and "Wall time per stage" in md
    assert "## Do the models listen?" in md and "## Difference vs full (paired bootstrap" in md
    assert "| 1 | data preparation (corpus synthesis) |" in md and "| 4 | token list |" in md
    assert "espnet_ext.bin.s2t_train" in md  # the commands
    for k in range(1, 10):
        assert re.search(rf"^\| {k} \| .* \| \d+ \|$", md, re.M), k
    for png in ("tradeoff.png", "gates_gated_task.png", "gates_gated_language.png"):
        assert (tmp / "exp" / "plots" / png).stat().st_size > 1000, png
        assert png in md, png


def test_rerun_of_stages_2_to_4_is_a_no_op(recipe):
    tmp, _ = recipe
    before = {p: p.stat().st_mtime for p in (tmp / "dump").rglob("*") if p.is_file()}
    start = time.time()
    log = run_recipe(tmp, "--stage", "2", "--stop_stage", "4")
    assert time.time() - start < 15, log
    for k in (2, 3, 4):
        assert f"Stage {k}: nothing to do" in log, log
    after = {p: p.stat().st_mtime for p in (tmp / "dump").rglob("*") if p.is_file()}
    assert after == before


def test_fine_tunes_a_packed_base(recipe, tmp_path):
    """Stage 10 packs a base model in the OWSM hub layout; --base <dir> fine-tunes it.

    The path every preset but tiny takes with pretrained/mini_owsm, on the tiny base model.
    """
    import torch
    import yaml

    tmp, _ = recipe
    exp = tmp / "exp"
    packed = tmp_path / "mini_owsm"
    (stats,) = exp.glob("s2t_stats_*/pretrain/train/feats_stats.npz")
    proc = subprocess.run([sys.executable, "local/pack_base.py", "--exp", str(exp / "base"),
                           "--stats", str(stats), "--out", str(packed)],
                          cwd=RECIPE, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = yaml.safe_load((packed / "meta.yaml").read_text())
    conf = yaml.safe_load((packed / meta["yaml_files"]["s2t_train_config"]).read_text())
    assert (packed / conf["bpemodel"]).is_file()
    assert (packed / conf["normalize_conf"]["stats_file"]).is_file()
    state = torch.load(packed / meta["files"]["s2t_model_file"], map_location="cpu")
    orig = torch.load(exp / "base" / "valid.acc.ave.pth", map_location="cpu")
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    for k, v in orig.items():  # float16 rounding: 2^-11 relative
        assert ((state[k].float() - v).abs() <= 1e-3 * v.abs().clamp(min=1)).all(), k
    assert "M parameters" in (packed / "README.md").read_text()

    new = tmp_path / "run"
    log = run_recipe(new, "--base", str(packed), "--gated_models", "gated", "--baselines", "false",
                     "--stop_stage", "8")
    assert "Stage 6a" not in log  # nothing pre-trained
    assert not (new / "dump" / "raw" / "pretrain").exists()
    base = new / "exp" / "base"
    assert (base / "tokens.txt").read_text().split() == conf["token_list"]
    assert os.path.realpath(base / "model.pth") == str((packed / meta["files"]["s2t_model_file"]).resolve())
    train_conf = yaml.safe_load((new / "exp" / "full" / "config.yaml").read_text())
    assert train_conf["init_param"] == [str(base / "model.pth")]
    assert train_conf["normalize_conf"]["stats_file"] == str(base / "feats_stats.npz")
    for m in ("full", "gated"):
        scores = json.loads((new / "exp" / m / "scores.json").read_text())
        assert sorted(scores["subsets"]) == sorted(SUBSETS), m
