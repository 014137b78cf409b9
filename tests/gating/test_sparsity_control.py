"""Sparsity control: the Lagrangian reaches its target whatever the task loss's scale."""

import argparse

import pytest
import torch

from espnet_ext.gating.schedule import GateSchedule
from espnet_ext.task import split_gate_params

STEPS, RAMP = 400, 200
GATE_LR = 0.05


class Toy(torch.nn.Module):
    """20 gates whose opening lowers a task loss of scale ``scale``, as in a fine-tune."""

    def __init__(self, control: str, **conf):
        super().__init__()
        self.gate_predictor = torch.nn.Module()
        self.gate_predictor.logits = torch.nn.Parameter(torch.full((20,), 3.0))  # open bias
        self.weight = torch.nn.Parameter(torch.ones(()))  # stands for the model's weights
        self.gate_schedule = GateSchedule(tau_cooldown_steps=RAMP, sparsity_end=0.3,
                                          sparsity_control=control, **conf)

    def forward(self, scale: float) -> torch.Tensor:
        target = self.gate_schedule.target()
        self.gate_schedule.tick()
        closed = 1.0 - torch.sigmoid(self.gate_predictor.logits).mean()
        task = scale * self.weight.pow(2) * (1.0 + closed)  # a closed unit costs accuracy
        self.closed = float(closed.detach())
        return task + self.gate_schedule.loss(closed, target, task)


def train(control: str, scale: float, **conf):
    torch.manual_seed(0)
    model = Toy(control, **conf)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=1e-6)  # OWSM's fine-tune
    split_gate_params(opt, model, argparse.Namespace(gate_lr=GATE_LR, gate_lr_scale=1.0))
    curve = []
    for _ in range(STEPS):
        opt.zero_grad()
        model(scale).backward()
        opt.step()
        curve.append(model.closed)
    return model, curve


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_lagrangian_holds_the_target_after_the_ramp(scale):
    model, curve = train("lagrangian", scale)
    after = curve[RAMP + 50:]
    assert max(abs(g - 0.3) for g in after) < 0.03, (min(after), max(after))
    assert float(model.gate_schedule.multipliers.lambda1) < 0  # pushing units closed


def test_fixed_penalty_loses_against_a_summed_loss():
    _, small = train("penalty", 1.0, sparsity_loss_weight=1.0)
    _, large = train("penalty", 1000.0, sparsity_loss_weight=1.0)
    assert abs(small[-1] - 0.3) < 0.05  # alpha = 1 is enough for a loss of scale 1 ...
    assert large[-1] < 0.05  # ... but a loss in the hundreds keeps every gate open


def test_multipliers_ascend_without_weight_decay():
    model = Toy("lagrangian", sparsity_lambda_lr=0.2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1)
    split_gate_params(opt, model, argparse.Namespace(gate_lr=None, gate_lr_scale=10.0))
    groups = {tuple(id(p) for p in g["params"]): g for g in opt.param_groups}
    lambdas = groups[tuple(id(p) for p in model.gate_schedule.multipliers.parameters())]
    assert lambdas["maximize"] and lambdas["weight_decay"] == 0.0 and lambdas["lr"] == 0.2
    assert groups[(id(model.gate_predictor.logits),)]["lr"] == pytest.approx(1e-4)
    assert groups[(id(model.weight),)]["lr"] == 1e-5


def test_unknown_control_is_a_clear_error():
    with pytest.raises(ValueError, match="sparsity_control"):
        GateSchedule(sparsity_control="l1")



def test_lagrangian_loss_value_is_scaled_by_the_task_loss():
    s = GateSchedule(sparsity_control="lagrangian", tau_cooldown_steps=10)
    with torch.no_grad():
        s.multipliers.lambda1.fill_(-2.0)
        s.multipliers.lambda2.fill_(3.0)
    g = torch.tensor(0.1, requires_grad=True)
    loss = s.loss(g, 0.3, torch.tensor(-5.0, requires_grad=True))
    assert loss.item() == pytest.approx((-2.0 * -0.2 + 3.0 * 0.04) * 5.0)  # |L_task| = 5
    loss.backward()
    assert g.grad.item() == pytest.approx((-2.0 + 2 * 3.0 * -0.2) * 5.0)
    assert s.loss(torch.tensor(0.1), 0.3).item() == pytest.approx(0.52)  # no task loss: 1
    assert s.ramp_steps == 10  # sparsity_warmup_steps None: the tau cooldown
