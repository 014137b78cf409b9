"""The decoded checkpoint of a gated model is one trained at its final sparsity target."""

import re

import pytest
import torch
from tiny_corpus import s2t_train

from espnet_ext.checkpoint import TargetReporter, average_at_target


def reporter_of(epochs):
    """A reporter with ``valid`` stats {epoch: (acc, sparsity_target[, sparsity])}."""
    reporter = TargetReporter()
    for epoch, (acc, target, *measured) in epochs.items():
        with reporter.observe("valid", epoch) as sub:
            sub.register({"acc": acc, "sparsity_target": target,
                          **({"sparsity": measured[0]} if measured else {})})
    return reporter


def test_early_epochs_with_higher_accuracy_are_not_candidates():
    # the target ramps over epochs 1-3; the less pruned epochs have the best accuracy
    reporter = reporter_of({1: (0.95, 0.1), 2: (0.93, 0.2), 3: (0.90, 0.3), 4: (0.88, 0.3),
                            5: (0.91, 0.3)})
    assert reporter.sort_epochs("valid", "acc", "max") == [5, 3, 4]
    assert reporter.get_best_epoch("valid", "acc", "max") == 5


def test_epochs_whose_gates_lag_the_target_are_not_candidates():
    # the ramp ends in epoch 2, but its gates validate at 0.34 of 0.45: the most accurate
    # because the least pruned; epochs 3 and 4 have caught up (0.44 is within 0.03)
    reporter = reporter_of({1: (0.96, 0.2, 0.18), 2: (0.95, 0.45, 0.34), 3: (0.91, 0.45, 0.46),
                            4: (0.92, 0.45, 0.44)})
    assert reporter.sort_epochs("valid", "acc", "max") == [4, 3]
    # none has caught up yet: the latest epoch at the target
    reporter = reporter_of({1: (0.96, 0.2, 0.18), 2: (0.95, 0.45, 0.34), 3: (0.93, 0.45, 0.38)})
    assert reporter.sort_epochs("valid", "acc", "max") == [3]


def test_while_the_target_ramps_only_the_latest_epoch_is_a_candidate():
    reporter = reporter_of({1: (0.95, 0.1), 2: (0.93, 0.2)})
    assert reporter.sort_epochs("valid", "acc", "max") == [2]


def test_models_without_a_target_are_ranked_as_by_espnet():
    reporter = TargetReporter()
    for epoch, acc in ((1, 0.9), (2, 0.8), (3, 0.95)):
        with reporter.observe("valid", epoch) as sub:
            sub.register({"acc": acc})
    assert reporter.sort_epochs("valid", "acc", "max") == [3, 1, 2]


def test_average_holds_the_candidates_and_the_latest_counter(tmp_path):
    reporter = reporter_of({1: (0.95, 0.1), 2: (0.90, 0.3), 3: (0.92, 0.3)})
    for epoch in (1, 2, 3):
        torch.save({"w": torch.full((2,), float(epoch)),
                    "gate_schedule.forwards": torch.tensor(100 * epoch)},
                   tmp_path / f"{epoch}epoch.pth")
    average_at_target(tmp_path, reporter, [("valid", "acc", "max")], 2)
    avg = torch.load(tmp_path / "valid.acc.ave.pth")
    assert avg["w"].tolist() == [2.5, 2.5]  # epochs 2 and 3, not the more accurate epoch 1
    assert int(avg["gate_schedule.forwards"]) == 300  # ESPnet's averaging: 500 (summed)


@pytest.mark.slow
def test_training_decodes_an_average_at_the_target(tiny_corpus, tiny_config, tmp_path):
    # 4 epochs x 10 steps, target ramp over 20 steps: epoch 1 validates at s* = 0.15
    exp = tmp_path / "gated"
    log = s2t_train(tiny_corpus, tiny_config, exp, "--max_epoch", "4",
                    "--num_iters_per_epoch", "10", "--tau_cooldown_steps", "20",
                    "--sparsity_warmup_steps", "20", "--keep_nbest_models", "2")
    valid = {int(e): dict(re.findall(r"(\w+)=([-+0-9.e]+)", stats)) for e, stats in
             re.findall(r"(\d+)epoch results: .*\[valid\](.*)", log)}
    assert {e: float(v["sparsity_target"]) for e, v in valid.items()} == {1: 0.15, 2: 0.3, 3: 0.3, 4: 0.3}
    # candidates: at the final target and validated within 0.03 of it, else the latest epoch
    reached = [e for e in (2, 3, 4) if float(valid[e]["sparsity"]) >= 0.3 - 0.03] or [4]
    epochs = sorted(sorted(reached, key=lambda e: -float(valid[e]["acc"]))[:2])
    assert 1 not in epochs
    m = re.search(r"valid\.acc\.ave_2best\.pth: epochs \[([\d, ]+)\]", log)
    if len(epochs) == 2:
        assert m and sorted(int(e) for e in m.group(1).split(",")) == epochs, log[-3000:]
    else:
        assert f"only epochs {epochs} have reached the final sparsity target" in log, log[-3000:]
    avg = torch.load(exp / "valid.acc.ave.pth", map_location="cpu")
    states = [torch.load(exp / f"{e}epoch.pth", map_location="cpu") for e in epochs]
    assert int(avg["gate_schedule.forwards"]) == 10 * max(epochs)
    for k, v in avg.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, sum(st[k] for st in states) / len(states))
