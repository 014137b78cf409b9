"""espnet_ext.gating.plan: a run's schedule in optimizer steps, checked before the first step."""

import subprocess
import sys
from pathlib import Path

import pytest

from espnet_ext.gating.plan import ScheduleError, plan_lines
from espnet_ext.gating.schedule import GateSchedule

ROOT = Path(__file__).resolve().parents[2]
GATED = ROOT / "conf" / "train_s2t_ebf_gated.yaml"


def paper_schedule():
    return GateSchedule(tau_cooldown_steps=15000, sparsity_warmup_steps=15000)


def test_accum_grad_2_halves_the_run_unless_the_epoch_doubles():
    one = plan_lines(paper_schedule(), 30, 1000, 1, 5, num_gpus=4, warmup_steps=6000)
    assert one == [
        "optimizer steps: 30000 = 30 epochs x 1000 (1000 batches per epoch / accum_grad 1; "
        "batch_size is split over 4 GPUs, which does not change it)",
        "lr warm-up: 6000 optimizer steps (20% of the run)",
        "tau: 1 -> 0.1 at optimizer step 15000 (end of epoch 15 of 30)",
        "sparsity target: 0 -> 0.3 at optimizer step 15000 (end of epoch 15 of 30)",
        "checkpoint selection: 16 epochs (15-30) validated at the final target; "
        "keep_nbest_models 5 averages 5",
    ]
    # the advice of old: batch_size 16 + accum_grad 2, nothing else changed
    half = plan_lines(paper_schedule(), 30, 1000, 2, 5, num_gpus=4, warmup_steps=6000)
    assert half[0].startswith("optimizer steps: 15000 = 30 epochs x 500 ")
    assert half[1] == "lr warm-up: 6000 optimizer steps (40% of the run)"
    assert half[2:4] == ["tau: 1 -> 0.1 at optimizer step 15000 (end of epoch 30 of 30)",
                         "sparsity target: 0 -> 0.3 at optimizer step 15000 (end of epoch 30 of 30)"]
    assert half[4] == ("checkpoint selection: 1 epoch (30-30) validated at the final target; "
                       "keep_nbest_models 5 averages 1")
    assert half[5] == ("warning: only 1 epoch at the final sparsity target for keep_nbest_models 5: "
                       "set num_iters_per_epoch >= 1154 or raise max_epoch")
    # the advice now: num_iters_per_epoch doubles with accum_grad -> the same run in steps
    kept = plan_lines(paper_schedule(), 30, 2000, 2, 5, num_gpus=4, warmup_steps=6000)
    assert kept[0] == one[0].replace("(1000 batches per epoch / accum_grad 1",
                                     "(2000 batches per epoch / accum_grad 2")
    assert kept[1:] == one[1:]


@pytest.mark.parametrize("warmup, cooldown, epoch_batches, accum, message", [
    (20000, 15000, 1000, 2, "sparsity_warmup_steps 20000 > the run's 15000 optimizer steps "
     "(30 epochs x 1000 batches / accum_grad 2): sparsity target never reaches sparsity_end 0.3; "
     "set num_iters_per_epoch >= 1334 (= 667 steps x accum_grad 2) or raise max_epoch, "
     "or lower sparsity_warmup_steps"),
    (15000, 31000, 1000, 1, "tau_cooldown_steps 31000 > the run's 30000 optimizer steps"),
    (10, 10, 3, 4, "accum_grad 4 > the 3 batches of an epoch: ESPnet never steps the optimizer"),
])
def test_an_end_beyond_the_run_is_a_one_line_error(warmup, cooldown, epoch_batches, accum, message):
    s = GateSchedule(tau_cooldown_steps=cooldown, sparsity_warmup_steps=warmup)
    with pytest.raises(ScheduleError) as e:
        plan_lines(s, 30, epoch_batches, accum, 5)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_epoch_not_a_multiple_of_accum_grad_counts_as_espnet_steps():
    # 5 batches per epoch, accum_grad 2: ESPnet steps after batches 2 and 4; batch 5's
    # gradient is stepped with batches 1-2 of the next epoch (iiter restarts at 1)
    s = GateSchedule(accum_grad=2, batches_per_epoch=5)
    assert [s.steps_after(n) for n in range(11)] == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    lines = plan_lines(GateSchedule(tau_cooldown_steps=4, sparsity_warmup_steps=4), 3, 5, 2, 1)
    assert lines[0].startswith("optimizer steps: 6 = 3 epochs x 2 (5 batches per epoch")
    assert lines[1] == ("warning: 5 batches per epoch is not a multiple of accum_grad 2: ESPnet "
                        "steps the last 1 of each epoch with the next epoch's first")
    # without the epoch length, and with a multiple, step = forwards // accum_grad (as before)
    assert GateSchedule(accum_grad=2).steps_after(9) == 4
    assert GateSchedule(accum_grad=2, batches_per_epoch=4).steps_after(9) == 4
    assert GateSchedule(accum_grad=1, batches_per_epoch=7).steps_after(9) == 9


def test_stock_model_and_unknown_epoch_length():
    assert plan_lines(None, 10, 30, 1) == [
        "optimizer steps: 300 = 10 epochs x 30 (30 batches per epoch / accum_grad 1; "
        "the number of GPUs does not change it)"]
    assert plan_lines(paper_schedule(), 10, None, 1)[0].startswith("optimizer steps: unknown")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "espnet_ext.gating.plan", "--config", str(GATED),
                           *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_prints_the_europarl_gated_config_and_its_memory_advice():
    full = run_cli()
    assert full.returncode == 0, full.stderr
    lines = full.stdout.splitlines()
    assert lines[0].startswith("optimizer steps: 30000 = 30 epochs x 1000 ")
    assert "checkpoint selection: 16 epochs (15-30)" in lines[-1]
    # docs/europarl_st.md's 40 GB advice: batch_size 16, accum_grad 2, num_iters_per_epoch 2000
    advice = run_cli("--accum_grad", "2", "--num_iters_per_epoch", "2000")
    assert advice.stdout.splitlines()[1:] == lines[1:]
    bad = run_cli("--accum_grad", "2", "--sparsity_warmup_steps", "20000")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("plan: error: sparsity_warmup_steps 20000 > the run's 15000")
    assert len(bad.stderr.strip().splitlines()) == 1
