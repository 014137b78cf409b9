"""espnet_ext.timing: the interleaved loop of the profile and the benchmarks."""

import time

import pytest

from espnet_ext import timing


def test_interleaved_order_warmup_and_pass_sums():
    calls = []

    def variant(name, seconds):
        def fn(item):
            calls.append((name, item))
            time.sleep(seconds)
        return fn

    passes = []
    times = timing.interleaved({"a": variant("a", 0.002), "b": variant("b", 0.01)}, items=[1, 2],
                               warmup=1, repeats=2, on_pass=lambda i, t, tot: passes.append((i, t)))
    # every pass: item by item, each variant on it; the warm-up pass is run but not timed
    assert calls == [("a", 1), ("b", 1), ("a", 2), ("b", 2)] * 3
    assert passes == [(0, False), (1, True), (2, True)]
    assert len(times["a"]) == len(times["b"]) == 2
    for t_a, t_b in zip(times["a"], times["b"]):  # a pass sums its items' times
        assert 0.004 <= t_a < t_b and t_b >= 0.02
    s = timing.summary(times["b"])
    assert s["min_s"] <= s["median_s"] and s["min_s"] == min(times["b"])


def test_without_items_each_variant_is_called_once_per_pass():
    n = {"x": 0}

    def fn():
        n["x"] += 1

    times = timing.interleaved({"x": fn}, warmup=0, repeats=3)
    assert n["x"] == 3 and len(times["x"]) == 3
    with pytest.raises(ValueError):
        timing.summary([])
