"""The pre-trained base model that ships in egs2/mini_europarl/s2t1/pretrained/mini_owsm.

It stands in for OWSM v3.1: every mini preset but tiny fine-tunes it. These tests check that
the recipe can read it: OWSM hub layout, size, the architecture of the demo and bench configs.
"""

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "mini_europarl" / "s2t1"
BASE = RECIPE / "pretrained" / "mini_owsm"
SPECIALS = ["<eng>", "<deu>", "<fra>", "<ita>", "<asr>", "<st_eng>"]


def owsm_model():
    spec = importlib.util.spec_from_file_location(
        "owsm_model", ROOT / "local" / "europarl_st" / "owsm_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layout_size_and_architecture(tmp_path):
    assert (BASE / "meta.yaml").is_file(), f"{BASE} missing: ./run.sh --preset base (README.md)"
    size = sum(p.stat().st_size for p in BASE.rglob("*") if p.is_file())
    assert size < 25 * 2**20, size
    for preset in ("demo", "bench"):  # stage 4's check: the fine-tuning configs fit the weights
        info = owsm_model().prepare(str(BASE), tmp_path / preset,
                                    RECIPE / "conf" / preset / "train_gated.yaml", SPECIALS)
        assert info["encoder"] == "e_branchformer" and info["decoder"] == "transformer"
    conf = yaml.safe_load((tmp_path / "demo" / "config.yaml").read_text())
    assert Path(conf["bpemodel"]).is_file() and Path(conf["normalize_conf"]["stats_file"]).is_file()
