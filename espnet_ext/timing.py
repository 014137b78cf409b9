"""Side-by-side timing: the one loop behind the profile and the benchmarks.

Variants run interleaved (each variant on item 1, then each on item 2, ...), so
that drift of a noisy machine hits them alike. A pass is every item once; the
first ``warmup`` passes are not timed. On CUDA the device is synchronised
around every call, so a time covers the work, not its launch.
"""

import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch


def sync(device: str) -> None:
    """Waits for the device's queued work (CUDA); no-op on the CPU."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(
    fns: Dict[str, Callable],
    items: Optional[Sequence] = None,
    warmup: int = 1,
    repeats: int = 3,
    device: str = "cpu",
    on_pass: Optional[Callable[[int, bool, Dict[str, float]], None]] = None,
) -> Dict[str, List[float]]:
    """Seconds of every timed pass of each variant.

    Args:
        fns: Variant name -> callable; called as ``fn(item)``, or ``fn()`` without items.
        items: What one pass goes over (e.g. utterances); None: one call per pass.
        warmup: Untimed passes first.
        repeats: Timed passes.
        device: "cpu" or "cuda" (synchronised around each call).
        on_pass: Called after every pass with (pass index, timed, {name: seconds}).

    Returns:
        {name: [seconds of timed pass 1, ..., pass ``repeats``]}.
    """
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        totals = dict.fromkeys(fns, 0.0)
        for item in (None,) if items is None else items:
            for name, fn in fns.items():
                sync(device)
                start = time.perf_counter()
                fn() if items is None else fn(item)
                sync(device)
                totals[name] += time.perf_counter() - start
        timed = i >= warmup
        if timed:
            for name, seconds in totals.items():
                times[name].append(seconds)
        if on_pass is not None:
            on_pass(i, timed, totals)
    return times


def summary(seconds: List[float]) -> Dict[str, float]:
    """{"min_s", "median_s"} of timed passes."""
    return {"min_s": min(seconds), "median_s": statistics.median(seconds)}
