"""Gated fine-tuning through ESPnet's stock training entry point."""

import re

import pytest
import torch
from tiny_corpus import s2t_train

from espnet_ext.gating.schedule import GateSchedule

pytestmark = pytest.mark.slow


def epoch_stats(log: str, split: str = "train"):
    """{epoch: {key: value}} from the trainer's 'Nepoch results' lines."""
    out = {}
    for m in re.finditer(r"(\d+)epoch results: \[train\] (.*?)\[valid\] (.*)", log):
        part = m.group(2) if split == "train" else m.group(3)
        out[int(m.group(1))] = {
            k: float(v) for k, v in re.findall(r"(\w+)=([-0-9.e+]+)", part)
        }
    return out


def test_loss_falls_and_sparsity_tracks_target(trained):
    exp, log = trained
    stats = epoch_stats(log)
    assert sorted(stats) == list(range(1, 11))
    first, last = stats[1], stats[10]
    assert last["loss_att"] < 0.5 * first["loss_att"], (first, last)
    assert last["sparsity_target"] == pytest.approx(0.3)
    assert abs(last["sparsity"] - 0.3) < 0.05, last
    # the closed units are real: per-side sparsity is reported and adds up
    n_enc, n_dec = 2 * 4, 2 * 3
    mix = (n_enc * last["sparsity_enc"] + n_dec * last["sparsity_dec"]) / (n_enc + n_dec)
    assert mix == pytest.approx(last["sparsity"], abs=0.02)


def test_tau_and_target_follow_the_schedule(trained):
    exp, log = trained
    schedule = GateSchedule(tau_cooldown_steps=150, sparsity_warmup_steps=150)
    for epoch, s in epoch_stats(log).items():
        # reported values are epoch means over steps (epoch-1)*30 .. epoch*30-1
        steps = range((epoch - 1) * 30, epoch * 30)
        tau = sum(schedule.tau(k) for k in steps) / 30
        target = sum(schedule.target(k) for k in steps) / 30
        assert s["tau"] == pytest.approx(tau, abs=2e-3), epoch
        assert s["sparsity_target"] == pytest.approx(target, abs=2e-3), epoch
    state = torch.load(exp / "10epoch.pth", map_location="cpu")
    assert int(state["gate_schedule.forwards"]) == 300


def test_stats_reach_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp, _ = trained
    tags = set()
    for run in (exp / "tensorboard" / "train").glob("events*"):
        acc = EventAccumulator(str(run))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    for key in ("tau", "sparsity_target", "sparsity_enc", "sparsity_dec", "loss_sparsity"):
        assert any(t.endswith(key) for t in tags), (key, sorted(tags))


def test_resume_continues_schedules_exactly(tiny_corpus, tiny_config, tmp_path):
    whole = tmp_path / "whole"
    s2t_train(tiny_corpus, tiny_config, whole, "--max_epoch", "4")
    split = tmp_path / "split"
    s2t_train(tiny_corpus, tiny_config, split, "--max_epoch", "2")
    log = s2t_train(tiny_corpus, tiny_config, split, "--max_epoch", "4")
    assert "1epoch results" not in log  # really resumed, epochs 3-4 only
    a = torch.load(whole / "4epoch.pth", map_location="cpu")
    b = torch.load(split / "4epoch.pth", map_location="cpu")
    assert int(a["gate_schedule.forwards"]) == int(b["gate_schedule.forwards"]) == 120
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff < 1e-5, diff
