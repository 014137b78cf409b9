"""scripts/bench/rehearse_owsm.py, the GPU rehearsal, at CPU size: it runs and reports what it says."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "rehearse_owsm.py"


def test_rehearsal_trains_and_decodes_both_models(tmp_path):
    out = tmp_path / "rehearsal.json"
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--num_blocks", "1", "--width", "128",
           "--vocab_size", "1600", "--batch", "2", "--seconds", "2", "--tokens", "8", "--steps", "2",
           "--decode_utts", "2", "--decode_batch", "2", "--maxlenratio", "-3", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    full, gated = report["train"]["full"], report["train"]["gated"]
    # the gated model is the full one plus gate predictors and the Lagrangian's 2 multipliers
    assert 0 < gated["params_M"] - full["params_M"] < 0.05 * full["params_M"]
    assert gated["sparsity"] is not None and full["sparsity"] is None
    for r in (full, gated):
        assert 0 < r["step_s_min"] <= r["step_s_median"] and r["peak_mib"] > 0
    decode = report["decode"]
    assert decode["settings"]["batch_size"] == 2 and decode["settings"]["device"] == "cpu"
    assert 0.3 < decode["ratios"]["gflops_gated/full"] < 1.0  # half the units closed
    assert set(report["train"]["ratios"]) == {"step_time_gated/full", "peak_memory_gated/full"}
