"""egs2/mini_europarl/s2t1/run.sh --preset tiny, stages 1-2: idempotence, changed inputs,
bad audio and --skip_bad_utts, validation after data prep.

A finished stage reruns as a no-op ("nothing to do", no file rewritten); a stage whose
inputs changed (a table, an audio file, an option) redoes exactly the units concerned.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "mini_europarl" / "s2t1"


def run_recipe(tmp: Path, *opts: str, ok: bool = True) -> str:
    cmd = ["./run.sh", "--preset", "tiny", "--datadir", str(tmp / "data"),
           "--dumpdir", str(tmp / "dump"), "--expdir", str(tmp / "exp"), *opts]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True, env=env, timeout=600)
    log = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, log[-4000:]
    return log


def mtimes(*dirs: Path) -> dict:
    return {p: p.stat().st_mtime_ns for d in dirs for p in d.rglob("*") if p.is_file()}


def test_stages_1_2_rerun_redo_and_bad_audio(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing (make sysdeps)")
    log = run_recipe(tmp_path, "--stop_stage", "2")
    raw = tmp_path / "dump" / "raw"
    # validate_data_dir.py ran on every data dir after stage 1 and stage 2
    for d in ("data/pretrain", "data/test", "dump/raw/train", "dump/raw/test_ita_st_eng"):
        assert f"{tmp_path / d}: 14 utterances, OK" in log or f"{tmp_path / d}: 2 utterances, OK" \
            in log, d
    # 1. a rerun is a no-op
    before = mtimes(tmp_path / "data", raw)
    log = run_recipe(tmp_path, "--stop_stage", "2")
    assert "Stage 1: nothing to do" in log and "Stage 2: nothing to do" in log, log
    assert mtimes(tmp_path / "data", raw) == before

    # 2. a changed input table redoes that set only
    text = tmp_path / "data" / "train" / "text"
    first = text.read_text().splitlines(True)
    utt, _, old = first[0].partition(" ")
    first[0] = f"{utt} {old.split(' ')[0]} changed transcript\n"
    text.write_text("".join(first))
    before = mtimes(raw)
    log = run_recipe(tmp_path, "--stage", "2", "--stop_stage", "2")
    assert "Stage 2 done" in log
    assert f"{utt} <" in (raw / "train" / "text").read_text()
    assert "changed transcript" in (raw / "train" / "text").read_text()
    changed = {p.relative_to(raw).parts[0] for p in before if before[p] != p.stat().st_mtime_ns}
    assert changed == {"train"}, changed

    # 3. corrupt audio in dev: stage 2 stops with one line naming the utterances' file
    dev_scp = (tmp_path / "data" / "dev" / "wav.scp").read_text().splitlines()
    wav = Path(dev_scp[0].split(" ", 1)[1])
    bad_utts = sorted(line.split()[0] for line in dev_scp if line.endswith(str(wav)))
    assert len(bad_utts) in (1, 2)  # ASR and ST utterances share a recording
    wav.write_bytes(b"not audio at all")
    log = run_recipe(tmp_path, "--stage", "2", "--stop_stage", "2", ok=False)
    errors = [line for line in log.splitlines() if line.startswith("format_data: error:")]
    assert errors == [
        f"format_data: error: {len(bad_utts)} bad utterance(s) in {tmp_path / 'data' / 'dev'}, "
        f"first: {bad_utts[0]}: {wav}: unreadable audio (Format not recognised.); re-encode it "
        f"as 16 kHz mono WAV/FLAC (all listed in {raw / 'dev' / 'bad_utts'}; fix them or rerun "
        "with --skip_bad_utts)"], log[-3000:]
    # ... and --skip_bad_utts true leaves them out, each listed with its reason
    log = run_recipe(tmp_path, "--stage", "2", "--stop_stage", "2", "--skip_bad_utts", "true")
    report = (raw / "dev" / "bad_utts").read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in report] == bad_utts
    assert all("unreadable audio" in line for line in report)
    kept = (raw / "dev" / "wav.scp").read_text()
    assert all(u not in kept for u in bad_utts) and len(kept.splitlines()) == 14 - len(bad_utts)
    assert f"{raw / 'dev'}: {14 - len(bad_utts)} utterances, OK" in log
    # the option is an input too: pretrain/train/test were redone once, and now nothing
    log = run_recipe(tmp_path, "--stage", "2", "--stop_stage", "2", "--skip_bad_utts", "true")
    assert "Stage 2: nothing to do" in log
