import pytest
import torch

from espnet_ext.pruning.hardconcrete import HardConcrete
from espnet_ext.pruning.lagrangian import Lagrangian, param_groups


def test_target_ramp():
    lag = Lagrangian(0.4, 1.0, warmup_steps=10)
    assert lag.target() == 1.0
    assert lag.target(5) == pytest.approx(0.7)
    assert lag.target(10) == lag.target(100) == 0.4
    for _ in range(5):
        lag.tick()
    assert lag.target() == pytest.approx(0.7)
    assert "step" in lag.state_dict()  # resumable
    with pytest.raises(ValueError, match="target_end"):
        Lagrangian(0.0)


def test_penalty_value():
    lag = Lagrangian(0.5)
    with torch.no_grad():
        lag.lambda1.fill_(2.0)
        lag.lambda2.fill_(3.0)
    assert float(lag(torch.tensor(0.7))) == pytest.approx(2.0 * 0.2 + 3.0 * 0.04)


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.mask = HardConcrete(20, init_drop=0.05)
        self.lagrangian = Lagrangian(0.5, 1.0, warmup_steps=0)


def test_param_groups_ascent_on_multipliers():
    model = Toy()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    groups = param_groups(opt, model, lr=0.1)
    assert [g["maximize"] for g in groups] == [False, True]
    assert [g["weight_decay"] for g in groups] == [0.0, 0.0]
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(model.w)}
    assert {id(p) for p in groups[1]["params"]} == {id(model.lagrangian.lambda1), id(model.lagrangian.lambda2)}
    # s = 0.95 > t = 0.5: ascent raises lambda1 (Adam's first step moves by lr), lowers log_alpha
    before = model.mask.log_alpha.detach().clone()
    s = model.mask.l0_norm() / 20
    model.lagrangian(s).backward()
    opt.step()
    assert float(model.lagrangian.lambda1) == pytest.approx(0.1, rel=1e-3)
    assert float(model.lagrangian.lambda2) == pytest.approx(0.1, rel=1e-3)  # (s - t)^2 > 0
    assert torch.equal(model.mask.log_alpha, before)  # lambdas were 0: no pull on the masks yet


def test_lagrangian_reaches_target():
    """Masks under the penalty alone (no task loss) settle at the target size."""
    torch.manual_seed(0)
    model = Toy()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    param_groups(opt, model, lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        s = model.mask.l0_norm() / 20
        model.lagrangian(s).backward()
        opt.step()
    s = float(model.mask.l0_norm()) / 20
    assert abs(s - 0.5) < 0.03, s
    assert float(model.lagrangian.lambda1) > 0  # it had to push the size down


def test_separate_multiplier_rate():
    model = Toy()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    groups = param_groups(opt, model, lr=0.1, lambda_lr=2.0)
    assert [g["lr"] for g in groups] == [0.1, 2.0]
    with pytest.raises(ValueError, match="no 'maximize' option"):
        param_groups(torch.optim.LBFGS(model.parameters()), model, lr=0.1)
