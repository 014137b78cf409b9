"""The pre-trained base model that ships in egs2/mini_europarl/s2t1/pretrained/mini_owsm.

It stands in for OWSM v3.1: every mini preset but tiny fine-tunes it. These tests check that
the recipe can read it: OWSM hub layout, size, the architecture of the demo and bench configs.
"""

from pathlib import Path

import yaml

from script_loader import load_file, load_script

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "mini_europarl" / "s2t1"
BASE = RECIPE / "pretrained" / "mini_owsm"
SPECIALS = ["<eng>", "<deu>", "<fra>", "<ita>", "<asr>", "<st_eng>"]


def owsm_model():
    return load_script("owsm_model")


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


def test_sparsity_pilot_takes_the_owsm_gate_settings_verbatim():
    """local/pilot_sparsity.py: the OWSM config's optimizer and gate options, steps scaled."""
    pilot = load_file(RECIPE / "local" / "pilot_sparsity.py")
    owsm = yaml.safe_load((ROOT / "conf" / "train_s2t_ebf_gated.yaml").read_text())
    arch = yaml.safe_load((RECIPE / "conf" / "demo" / "train_gated.yaml").read_text())
    conf = pilot.pilot_config(arch, owsm, 0.01, 50)
    assert conf["optim"] == "adamw" and conf["optim_conf"] == owsm["optim_conf"]
    assert conf["optim_conf"]["lr"] == 1e-5 and conf["model_conf"]["length_normalized_loss"] is False
    assert (conf["sparsity_control"], conf["gate_lr"]) == ("lagrangian", 1e-3)
    assert (conf["tau_cooldown_steps"], conf["sparsity_warmup_steps"]) == (150, 150)
    assert conf["scheduler_conf"] == {"warmup_steps": 60}
    assert conf["max_epoch"] * conf["num_iters_per_epoch"] == 300
    assert conf["encoder_conf"]["output_size"] == arch["encoder_conf"]["output_size"]  # the mini model
    assert conf["encoder_conf"]["context_dim"] == owsm["encoder_conf"]["context_dim"]
    old = pilot.pilot_config(arch, owsm, 0.01, 50, **pilot.PENALTY)
    assert (old["sparsity_control"], old["gate_lr"], old["sparsity_loss_weight"]) == ("penalty", None, 1.0)
    assert "gate_lr_scale" not in conf and arch["gate_lr_scale"] == 10  # the demo's own: dropped
