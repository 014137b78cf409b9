"""Static export of one context: smaller model, stock Speech2Text, same outputs."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow


def test_export_context(trained, tiny_corpus, tmp_path):
    exp, _ = trained
    data = tmp_path / "data"
    data.mkdir()
    lines = [l for l in (tiny_corpus["valid"] / "wav.scp").read_text().splitlines() if "_deu_st_eng" in l]
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    out = tmp_path / "export"
    cmd = [sys.executable, "-m", "espnet_ext.bin.export", "--s2t_train_config", str(exp / "config.yaml"),
           "--s2t_model_file", str(exp / "10epoch.pth"), "--lang_sym", "deu", "--task_sym", "st_eng",
           "--data_dir", str(data), "--beam_size", "3", "--out_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["model"] == "espnet"
    assert conf["encoder_conf"]["fixed_gates"] == report["patterns"]["encoder"]
    state = torch.load(out / "model.pth", map_location="cpu")
    assert not any(k.startswith("gate_") for k in state)
    closed = report["closed_units"]["encoder"] + report["closed_units"]["decoder"]
    assert closed > 0  # the trained model prunes this context
    assert report["params_m"]["static"] < report["params_m"]["gated"]
    assert report["file_mb"]["static"] < report["file_mb"]["gated"]
    v = report["verified"]
    assert v["utterances"] > 0 and v["identical"] == v["utterances"]
