"""GateSchedule: tau and sparsity-target schedules, step counting, and the sparsity loss."""

import math

import pytest
import torch

from espnet_ext.gating.schedule import GateSchedule


def test_linear_tau_and_target_ramp_then_stay():
    s = GateSchedule(tau_ini=1.0, tau_end=0.1, tau_cooldown_steps=100, sparsity_init=0.0,
                     sparsity_end=0.3, sparsity_warmup_steps=50)
    assert s.tau(0) == 1.0 and s.tau(50) == pytest.approx(0.55) and s.tau(100) == pytest.approx(0.1)
    assert s.tau(10_000) == pytest.approx(0.1)
    assert s.target(0) == 0.0 and s.target(25) == pytest.approx(0.15)
    assert s.target(50) == pytest.approx(0.3) and s.target(80) == pytest.approx(0.3)


def test_exp_tau_is_geometric_and_warmup_defaults_to_cooldown():
    s = GateSchedule(tau_ini=1.0, tau_end=0.01, tau_cooldown_steps=100, tau_schedule="exp",
                     sparsity_end=0.4)
    assert s.tau(50) == pytest.approx(0.1)  # sqrt(1 * 0.01)
    assert s.target(50) == pytest.approx(0.2)  # sparsity_warmup_steps None: over 100 steps


def test_steps_count_optimizer_steps_with_gradient_accumulation():
    s = GateSchedule(accum_grad=4)
    for _ in range(10):
        s.tick()
    assert int(s.forwards) == 10 and s.step == 2
    state = s.state_dict()  # the counter is saved with the model
    t = GateSchedule(accum_grad=4)
    t.load_state_dict(state)
    assert t.step == 2


def test_loss_values():
    g = torch.tensor(0.1, requires_grad=True)
    s = GateSchedule(sparsity_loss_weight=2.0)
    loss = s.loss(g, 0.3)
    assert loss.item() == pytest.approx(2.0 * (0.2 + 0.04))
    loss.backward()
    assert g.grad.item() == pytest.approx(2.0 * (-1.0 - 0.4))  # alpha * (sign + 2 (g - s*))
    sq = GateSchedule(sparsity_loss_weight=1.0, sparsity_loss_type="squared")
    assert sq.loss(torch.tensor(0.5), 0.3).item() == pytest.approx(0.04)
    assert s.loss(torch.tensor(0.3), 0.3).item() == 0.0


@pytest.mark.parametrize("conf, message", [
    ({"tau_end": 0.0}, "tau_ini/tau_end must be > 0"),
    ({"tau_schedule": "cosine"}, "unknown tau_schedule"),
    ({"sparsity_loss_type": "l1"}, "unknown sparsity_loss_type"),
    ({"sparsity_end": 1.5}, "sparsity_end must be in"),
    ({"accum_grad": 0}, "accum_grad must be >= 1"),
])
def test_bad_options_are_clear_errors(conf, message):
    with pytest.raises(ValueError, match=message):
        GateSchedule(**conf)


def test_configure_keeps_the_step():
    s = GateSchedule(tau_cooldown_steps=10)
    for _ in range(5):
        s.tick()
    s.configure(tau_cooldown_steps=20)
    assert s.step == 5 and math.isclose(s.tau(), 1.0 + 0.25 * (0.1 - 1.0))
