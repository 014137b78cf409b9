"""scripts/train_seconds.py: a model's training time over resumed runs of one train.log."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_seconds.py"


def line(t, text):
    return f"[vm] 2026-12-01 {t},000 (trainer:336) INFO: {text}\n"


def test_epochs_of_resumed_runs_add_up_and_a_killed_epoch_does_not_count(tmp_path):
    log = [
        line("10:00:00", "1/3epoch started"),
        line("10:05:00", "1epoch results: [train] ..."),
        line("10:05:01", "2/3epoch started. Estimated time to finish: ..."),
        line("10:07:00", "2epoch:train:1-10batch: loss=1.0"),  # killed in epoch 2
        line("11:00:00", "2/3epoch started"),  # the resumed run
        line("11:04:00", "2epoch results: [train] ..."),
        line("11:04:00", "3/3epoch started"),
        line("11:10:30", "3epoch results: [train] ..."),
    ]
    (tmp_path / "train.log").write_text("".join(log))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "train.log")],
                         capture_output=True, text=True, check=True).stdout
    assert int(out) == 300 + 240 + 390


def test_a_run_resumed_through_espnets_launcher_counts_every_rotated_log(tmp_path):
    # espnet2.bin.launch renames train.log -> train.1.log (-> train.2.log ...) before each run
    ddp = "[gpu-node-3:0/4] "  # a DDP rank-0 prefix
    runs = {
        "train.2.log": [line("09:00:00", "1/4epoch started"), line("09:10:00", "1epoch results: ..."),
                        line("09:10:00", "2/4epoch started"), line("09:12:00", "2epoch:train:1-50batch")],
        "train.1.log": [line("10:00:00", "2/4epoch started"), line("10:09:00", "2epoch results: ..."),
                        line("10:09:00", "3/4epoch started")],  # killed in epoch 3
        "train.log": [ddp + line("11:00:00", "3/4epoch started"), ddp + line("11:11:00", "3epoch results: ..."),
                      ddp + line("11:11:00", "4/4epoch started"), ddp + line("11:20:00", "4epoch results: ...")],
    }
    for name, lines in runs.items():
        (tmp_path / name).write_text("".join(lines))
    (tmp_path / "train.log.bak").write_text(line("08:00:00", "1/4epoch started") + line("08:59:00", "1epoch results"))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "train.log")],
                         capture_output=True, text=True, check=True).stdout
    assert int(out) == 600 + 540 + 660 + 540  # epochs 1, 2, 3, 4; the killed parts not
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none" / "train.log")],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("train_seconds: no ")
    assert len(missing.stderr.strip().splitlines()) == 1
