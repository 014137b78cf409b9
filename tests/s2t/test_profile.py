"""The side-by-side profiler on a tiny gated model and its stock twin."""

import json
import subprocess
import sys

import pytest
from tiny_corpus import stock_copy

pytestmark = pytest.mark.slow


def test_profile_reports_ratios_settings_and_matches_fvcore(trained, tiny_corpus, tmp_path):
    exp, _ = trained
    stock = stock_copy(exp, tmp_path / "stock")
    data = tmp_path / "data"
    data.mkdir()
    lines = [l for l in (tiny_corpus["valid"] / "wav.scp").read_text().splitlines() if "_deu_asr" in l]
    (data / "wav.scp").write_text("\n".join(lines[:2]) + "\n")
    out = tmp_path / "prof.json"
    cmd = [
        sys.executable, "-m", "espnet_ext.bin.profile",
        "--model", f"full={stock}/config.yaml:{stock}/model.pth",
        "--model", f"gated={exp}/config.yaml:{exp}/10epoch.pth",
        "--reference", "full", "--data_dir", str(data), "--lang_sym", "deu", "--task_sym", "asr",
        "--num_utts", "2", "--warmup", "1", "--repeats", "1", "--beam_size", "2", "--out", str(out),
        "--espnet_reference",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GFLOPs/utt" in proc.stdout
    report = json.loads(out.read_text())
    s = report["settings"]
    assert (s["beam_size"], s["batch_size"], s["threads"], s["num_utts"]) == (2, 1, 2, 2)
    full, gated = report["models"]["full"], report["models"]["gated"]
    # the reference once more with ESPnet's search: same model, no K/V caching -> more compute
    espnet = report["models"]["full@espnet"]
    assert s["searches"] == {"full": "lean", "gated": "lean", "full@espnet": "espnet"}
    assert espnet["gflops_mean"] > 1.2 * full["gflops_mean"]
    # ratios are each model's figure over the reference's, measured in the same run
    assert gated["gflops_ratio"] == pytest.approx(gated["gflops_mean"] / full["gflops_mean"], rel=1e-3)
    assert gated["time_ratio"] == pytest.approx(gated["time_median_s"] / full["time_median_s"], rel=1e-2)
    # the trained gates close units: less compute than the same weights all open
    assert gated["gflops_mean"] < full["gflops_mean"]
    # per part: the parts add up; the conv subsampling is never gated (the same in both)
    assert gated["gflops_parts"]["subsampling"] == pytest.approx(full["gflops_parts"]["subsampling"])
    assert "subsampling" in proc.stdout
    for r in (full, gated):
        assert sum(r["gflops_parts"].values()) == pytest.approx(r["gflops_mean"])
        assert 0 < r["gflops_parts"]["subsampling"] < r["gflops_mean"]
        assert abs(r["fvcore_encoder_gap"]) < 0.01
        assert r["peak_rss_mb"] > 100 and r["time_min_s"] <= r["time_median_s"]
        assert r["settings"]["speech_length_s"] == 2


def test_profile_of_a_short_set_says_so_and_its_log_is_quiet(trained, tiny_corpus, tmp_path):
    """5 utterances asked of a 3-utterance set: the count and the reason in the log, the table
    and the JSON; and no line of ESPnet's flash-attention import or g2p_en's NLTK download in
    its output, the peak-memory worker's included (espnet_ext/quiet.py)."""
    exp, _ = trained
    data = tmp_path / "test_deu_asr"
    data.mkdir()
    lines = [l for l in (tiny_corpus["valid"] / "wav.scp").read_text().splitlines() if "_deu_asr" in l]
    assert len(lines) >= 3
    (data / "wav.scp").write_text("\n".join(lines[:3]) + "\n")
    out = tmp_path / "prof.json"
    proc = subprocess.run([
        sys.executable, "-m", "espnet_ext.bin.profile", "--model", f"gated={exp}/config.yaml:{exp}/10epoch.pth",
        "--data_dir", str(data), "--lang_sym", "deu", "--task_sym", "asr", "--num_utts", "5",
        "--warmup", "0", "--repeats", "1", "--beam_size", "1", "--threads", "1", "--out", str(out),
    ], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    note = "3 utterances, not the 5 asked: test_deu_asr has only 3"
    s = json.loads(out.read_text())["settings"]
    assert (s["num_utts"], s["num_utts_asked"], s["num_utts_note"]) == (3, 5, note)
    assert f"WARNING: profiling {note}" in proc.stderr and f"# {note}" in proc.stdout
    log = proc.stdout + proc.stderr
    assert "nltk" not in log.lower() and "flash" not in log.lower(), log[-3000:]
