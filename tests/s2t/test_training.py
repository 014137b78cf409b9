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
    short = ("--schedule_check", "warn")  # 120 steps of a 150-step schedule, on purpose
    whole = tmp_path / "whole"
    s2t_train(tiny_corpus, tiny_config, whole, "--max_epoch", "4", *short)
    split = tmp_path / "split"
    s2t_train(tiny_corpus, tiny_config, split, "--max_epoch", "2", *short)
    log = s2t_train(tiny_corpus, tiny_config, split, "--max_epoch", "4", *short)
    assert "1epoch results" not in log  # really resumed, epochs 3-4 only
    a = torch.load(whole / "4epoch.pth", map_location="cpu")
    b = torch.load(split / "4epoch.pth", map_location="cpu")
    assert int(a["gate_schedule.forwards"]) == int(b["gate_schedule.forwards"]) == 120
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff < 1e-5, diff


def accum2_config(tiny_config, path, **changes):
    """The tiny gated config with accum_grad 2: 10 batches = 5 optimizer steps per epoch."""
    import yaml

    conf = yaml.safe_load(tiny_config.read_text())
    conf.update(accum_grad=2, num_iters_per_epoch=10, max_epoch=3, tau_cooldown_steps=10,
                sparsity_warmup_steps=10, keep_nbest_models=2, scheduler_conf={"warmup_steps": 3})
    conf.update(changes)
    path.write_text(yaml.safe_dump(conf))
    return path


def optimizer_steps(exp):
    """How often ESPnet stepped the optimizer: its LR scheduler's count (checkpoint.pth)."""
    return torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["schedulers"][0]["last_epoch"]


def test_accum_grad_2_schedules_count_optimizer_steps_and_start_up_says_so(tiny_corpus, tiny_config, tmp_path):
    exp = tmp_path / "accum2"
    log = s2t_train(tiny_corpus, accum2_config(tiny_config, tmp_path / "accum2.yaml"), exp)
    assert re.findall(r"INFO: schedule (.*)", log) == [
        "optimizer steps: 15 = 3 epochs x 5 (10 batches per epoch / accum_grad 2; "
        "the number of GPUs does not change it)",
        "lr warm-up: 3 optimizer steps (20% of the run)",
        "tau: 1 -> 0.1 at optimizer step 10 (end of epoch 2 of 3)",
        "sparsity target: 0 -> 0.3 at optimizer step 10 (end of epoch 2 of 3)",
        "checkpoint selection: 2 epochs (2-3) validated at the final target; keep_nbest_models 2 averages 2",
    ]
    assert log.index("INFO: schedule optimizer steps") < log.index("1epoch results")
    assert optimizer_steps(exp) == 15
    state = torch.load(exp / "3epoch.pth", map_location="cpu")
    assert int(state["gate_schedule.forwards"]) == 30
    schedule = GateSchedule(tau_cooldown_steps=10, sparsity_warmup_steps=10)
    for epoch, s in epoch_stats(log).items():
        # batch i (0-9) of an epoch runs after (epoch - 1) * 5 + i // 2 optimizer steps
        steps = [(epoch - 1) * 5 + i // 2 for i in range(10)]
        assert s["gate_step"] == pytest.approx(sum(steps) / 10), epoch
        assert s["tau"] == pytest.approx(sum(schedule.tau(k) for k in steps) / 10, abs=2e-3), epoch
        assert s["sparsity_target"] == pytest.approx(sum(schedule.target(k) for k in steps) / 10,
                                                     abs=2e-3), epoch
    valid = {e: s["sparsity_target"] for e, s in epoch_stats(log, "valid").items()}
    assert valid == {1: pytest.approx(0.15), 2: pytest.approx(0.3), 3: pytest.approx(0.3)}


def test_odd_epochs_under_accum_grad_count_espnets_steps_across_a_resume(tiny_corpus, tiny_config, tmp_path):
    # 5 batches, accum_grad 2: ESPnet steps twice an epoch, the 5th batch joins the next epoch's
    # first step; forwards // accum_grad would run ahead by one step every two epochs
    config = accum2_config(tiny_config, tmp_path / "odd.yaml", num_iters_per_epoch=5,
                           tau_cooldown_steps=4, sparsity_warmup_steps=4, keep_nbest_models=1)
    exp = tmp_path / "odd"
    log = s2t_train(tiny_corpus, config, exp, "--max_epoch", "2")
    assert "schedule warning: 5 batches per epoch is not a multiple of accum_grad 2" in log
    log = s2t_train(tiny_corpus, config, exp)  # resumed: epoch 3
    assert "1epoch results" not in log and "3epoch results" in log
    state = torch.load(exp / "3epoch.pth", map_location="cpu")
    assert int(state["gate_schedule.forwards"]) == 15
    assert optimizer_steps(exp) == 6 == GateSchedule(accum_grad=2, batches_per_epoch=5).steps_after(15)
    steps = [4, 4, 5, 5, 6]  # epoch 3's batches
    assert epoch_stats(log)[3]["gate_step"] == pytest.approx(sum(steps) / 5)


def test_a_target_beyond_the_run_is_a_one_line_error_before_any_step(tiny_corpus, tiny_config, tmp_path):
    import subprocess
    import sys

    from tiny_corpus import train_args

    exp = tmp_path / "never"
    config = accum2_config(tiny_config, tmp_path / "never.yaml", sparsity_warmup_steps=100)
    proc = subprocess.run([sys.executable, "-m", "espnet2.bin.s2t_train",
                           *train_args(tiny_corpus, config, exp)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "s2t_train: error: sparsity_warmup_steps 100 > the run's 15 optimizer steps (3 epochs x 10 "
        "batches / accum_grad 2): sparsity target never reaches sparsity_end 0.3; set "
        "num_iters_per_epoch >= 68 (= 34 steps x accum_grad 2) or raise max_epoch, or lower "
        "sparsity_warmup_steps (--schedule_check warn: run anyway)")
    assert "Traceback" not in proc.stderr and "epoch results" not in proc.stderr
    assert not list(exp.glob("*epoch.pth"))
