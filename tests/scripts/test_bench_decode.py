"""scripts/bench/bench_decode.py on the tiny trained gated model: the report it writes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "bench_decode.py"


def bench(exp, data, out, *extra):
    cmd = [sys.executable, str(SCRIPT), "--model", f"{exp}/config.yaml:{exp}/10epoch.pth",
           "--data_dir", str(data), "--n_utts", "3", "--batch_size", "3", "--beam_size", "3",
           "--warmup", "0", "--repeats", "1", "--out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_all_modes_report_ratios_and_equal_hypotheses(trained, tiny_corpus, tmp_path):
    exp, _ = trained
    report, stdout = bench(exp, tiny_corpus["valid"], tmp_path / "all.json")
    s = report["settings"]
    assert (s["n_utts"], s["beam_size"], s["batch_size"], s["threads"]) == (3, 3, 3, 1)
    assert "padded" in s["padding"] and len(s["raw_seconds"]) == 3
    modes = report["modes"]
    assert set(modes) == {"gated_one_by_one", "gated_batched", "full_one_by_one", "full_batched"}
    for v in modes.values():
        assert v["min_s"] > 0 and v["median_s"] >= v["min_s"] and v["peak_mib"] > 100
    # batching changes neither the hypotheses nor the GFLOPs; the trained gates close units
    r = report["ratios"]
    assert r["same_hyps_batched_vs_one_by_one"] is True
    assert modes["gated_batched"]["gflops"] == pytest.approx(modes["gated_one_by_one"]["gflops"])
    assert r["gflops_gated/full"] < 1.0
    for v in modes.values():  # the parts add up; gating does not touch the subsampling
        assert sum(v["gflops_parts"].values()) == pytest.approx(v["gflops"])
    assert modes["gated_batched"]["gflops_parts"]["subsampling"] == pytest.approx(
        modes["full_batched"]["gflops_parts"]["subsampling"])
    assert {"time_gated/full_one_by_one", "time_gated/full_batched",
            "time_batched/one_by_one_gated", "time_batched/one_by_one_full"} <= set(r)
    assert "gflops_gated/full" in stdout


def test_selected_modes(trained, tiny_corpus, tmp_path):
    exp, _ = trained
    report, _ = bench(exp, tiny_corpus["valid"], tmp_path / "one.json",
                      "--modes", "gated_one_by_one", "full_one_by_one")
    assert set(report["modes"]) == {"gated_one_by_one", "full_one_by_one"}
    assert set(report["ratios"]) == {"gflops_gated/full", "time_gated/full_one_by_one"}
