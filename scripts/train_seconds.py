#!/usr/bin/env python3
"""Training time of an ESPnet trainer log, summed over its epochs; prints whole seconds.

Each epoch counts from its "N/Mepoch started" line to its "Nepoch results" line (training
and validation); an epoch begun again after a kill counts from the restart, and the part of
an epoch a kill cut off is not counted. So the figure is what the model cost, however often
the run was resumed. A resumed run's log lines reach ``train.log`` in one of two ways:
- single process (run.sh): appended to ``train.log``;
- through ``espnet2.bin.launch`` (multi-GPU / multi-node): the launcher first renames
  ``train.log`` to ``train.1.log`` (``train.1.log`` to ``train.2.log``, ...) and writes the
  new run to a fresh ``train.log``.
So this reads ``train.<N>.log``, ..., ``train.1.log``, then ``train.log`` (oldest first), as
one log.

Usage: python scripts/train_seconds.py exp/base/train.log
"""

import re
import sys
from datetime import datetime
from pathlib import Path
from typing import List

LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) \(trainer:\d+\) INFO: (\d+)(/\d+)?epoch (started|results)")


def train_seconds(lines) -> float:
    started, total = {}, 0.0
    for line in lines:
        m = LINE.search(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        epoch = int(m.group(2))
        if m.group(4) == "started":
            started[epoch] = t
        elif epoch in started:
            total += (t - started.pop(epoch)).total_seconds()
    return total


def run_logs(log: Path) -> List[Path]:
    """``log`` and the launcher's rotated copies of it (``<stem>.<N><suffix>``), oldest first."""
    log = Path(log)
    rotated = re.compile(re.escape(log.stem) + r"\.(\d+)" + re.escape(log.suffix) + "$")
    siblings = log.parent.iterdir() if log.parent.is_dir() else []
    older = sorted(((int(m.group(1)), p) for p in siblings if (m := rotated.match(p.name))),
                   reverse=True)
    return [p for _, p in older] + ([log] if log.exists() else [])


def lines_of(paths):
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f


if __name__ == "__main__":
    logs = run_logs(Path(sys.argv[1]))
    if not logs:
        sys.exit(f"train_seconds: no {sys.argv[1]} (nor rotated train.<N>.log next to it)")
    print(round(train_seconds(lines_of(logs))))
