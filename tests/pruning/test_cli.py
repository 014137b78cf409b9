"""The CLIs on a tiny model trained with stock s2t_train (model: espnet_l0)."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow


def run(*args):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def l0_trained(tiny_corpus, l0_config, tmp_path_factory):
    from tiny_corpus import s2t_train

    exp = tmp_path_factory.mktemp("l0") / "l0_train"
    log = s2t_train(tiny_corpus, l0_config, exp, "--max_epoch", "2", "--num_iters_per_epoch", "15",
                    "--model_conf", "target_warmup_steps=20", "--model_conf", "target_flops=0.5")
    return exp, log


@pytest.fixture(scope="module")
def exported(l0_trained):
    exp, _ = l0_trained
    out = exp.parent / "l0"
    stdout = run("espnet_ext.bin.l0_export", "--config", str(exp / "config.yaml"),
                 "--model_file", str(exp / "2epoch.pth"), "--out_dir", str(out))
    return out, stdout


def test_training_reports_lagrangian(l0_trained):
    exp, log = l0_trained
    assert "flops_expected" in log and "lambda1" in log
    state = torch.load(exp / "2epoch.pth", map_location="cpu")
    assert int(state["lagrangian.step"]) == 30
    # the penalty pushed: the multiplier moved and the masks closed some units
    assert float(state["lagrangian.lambda1"]) > 0
    la = state["encoder.l0_masks.masks.ffn1_0.log_alpha"]
    assert la.mean() < 2.9  # started at logit(1 - init_drop) = logit(0.95) = 2.94


def test_export_decodes_with_stock_espnet(exported, tiny_corpus):
    out, stdout = exported
    report = json.loads((out / "l0_export.json").read_text())
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert (conf["model"], conf["encoder"], conf["decoder"]) == ("espnet", "e_branchformer", "transformer")
    assert conf["encoder_conf"]["linear_units"] == report["kept"]["encoder"]["ffn"]
    assert report["max_abs_diff"] < 1e-4
    assert report["params_m"]["pruned"] <= report["params_m"]["masked"]
    assert report["gflops"]["pruned"] <= report["gflops"]["full"]
    assert "GFLOPs/utt" in stdout
    code = (
        "import sys, soundfile as sf\n"
        "from espnet2.bin.s2t_inference import Speech2Text\n"
        f"s2t = Speech2Text({str(out / 'config.yaml')!r}, {str(out / 'valid.acc.ave.pth')!r}, "
        "device='cpu', beam_size=2, lang_sym='<eng>', task_sym='<asr>')\n"
        f"wav = sf.read(open({str(tiny_corpus['valid'] / 'wav.scp')!r}).readline().split()[1])[0]\n"
        "print('HYP', repr(s2t(wav)[0][0]))\n"
    )
    # a fresh interpreter with plain espnet2 imports (autoregistration may add our names; the
    # exported config uses none of them)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HYP" in proc.stdout


def test_convexity_and_layer_prune(exported, tiny_corpus):
    out, _ = exported
    curve = out.parent / "convexity.json"
    stdout = run("espnet_ext.bin.convexity", "--config", str(out / "config.yaml"),
                 "--model_file", str(out / "valid.acc.ave.pth"), "--data_dir", str(tiny_corpus["train"]),
                 "--num_utts", "24", "--k", "3", "--out", str(curve))
    res = json.loads(curve.read_text())
    assert len(res["encoder"]["scores"]) == 2 and len(res["decoder"]["scores"]) == 2
    assert all(0.0 <= s <= 1.0 for s in res["encoder"]["scores"] + res["decoder"]["scores"])
    assert res["encoder"]["classes"] == 2  # <eng>, <deu>
    assert "keep (up to the peak)" in stdout and stdout.count("\n") >= 4
    model = ["--config", str(out / "config.yaml"), "--model_file", str(out / "valid.acc.ave.pth")]
    # the smallest model (one layer per side) sets the reachable budgets
    run("espnet_ext.bin.layer_prune", *model, "--keep_encoder", "1", "--keep_decoder", "1",
        "--out_dir", str(out.parent / "layerprune_1_1"))
    floor = json.loads((out.parent / "layerprune_1_1" / "layer_prune.json").read_text())["flops_fraction"]
    assert 0 < floor < 1
    target = (floor + 1) / 2  # reachable, and below the full model
    pruned = out.parent / "layerprune"
    stdout = run("espnet_ext.bin.layer_prune", *model, "--convexity", str(curve),
                 "--target_fraction", f"{target:.4f}", "--out_dir", str(pruned))
    rep = json.loads((pruned / "layer_prune.json").read_text())
    conf = yaml.safe_load((pruned / "config.yaml").read_text())
    assert conf["encoder_conf"]["num_blocks"] == rep["keep"]["encoder"]
    assert conf["decoder_conf"]["num_blocks"] == rep["keep"]["decoder"]
    assert floor <= rep["flops_fraction"] <= target, (floor, rep)
    assert sum(rep["keep"].values()) < 4
    state = torch.load(pruned / "model.pth", map_location="cpu")
    assert not any(k.startswith(f"decoder.decoders.{rep['keep']['decoder']}.") for k in state)
