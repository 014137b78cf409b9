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
