#!/usr/bin/env python3
"""Training time of an ESPnet trainer log, summed over its epochs; prints whole seconds.

Each epoch counts from its "N/Mepoch started" line to its "Nepoch results" line (training
and validation); an epoch begun again after a kill counts from the restart, and the part of
an epoch a kill cut off is not counted. So the figure is what the model cost, however often
the run was resumed (``train.log`` is appended to by every resumed run of run.sh).

Usage: python scripts/train_seconds.py exp/base/train.log
"""

import re
import sys
from datetime import datetime

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


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        print(round(train_seconds(f)))
