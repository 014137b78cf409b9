import math

import pytest
import torch

from espnet_ext.pruning.hardconcrete import HardConcrete


def test_expected_l0_closed_form_value():
    m = HardConcrete(3)
    with torch.no_grad():
        m.log_alpha.copy_(torch.tensor([0.0, 2.0, -2.0]))
    # P(z != 0) = sigmoid(log_alpha - beta * log(-l / r)), beta = 2/3, l = -0.1, r = 1.1
    expected = [1 / (1 + math.exp(-(a - 2 / 3 * math.log(0.1 / 1.1)))) for a in (0.0, 2.0, -2.0)]
    assert m.prob_nonzero().tolist() == pytest.approx(expected, abs=1e-6)
    assert float(m.l0_norm()) == pytest.approx(sum(expected), abs=1e-6)
    assert expected[0] == pytest.approx(0.8318, abs=1e-4)


def test_samples_match_expected_l0():
    torch.manual_seed(0)
    m = HardConcrete(4)
    with torch.no_grad():
        m.log_alpha.copy_(torch.tensor([-3.0, -0.5, 0.5, 3.0]))
    z = torch.stack([m.sample() for _ in range(20000)])
    assert z.min() == 0.0 and z.max() == 1.0  # exact zeros and ones occur
    assert ((z > 0).float().mean(0) - m.prob_nonzero()).abs().max() < 0.01


def test_sample_is_differentiable():
    torch.manual_seed(0)
    m = HardConcrete(8, init_drop=0.5)  # log_alpha ~ 0: samples inside (0, 1)
    m.train()
    (m() * torch.arange(8.0)).sum().backward()
    assert m.log_alpha.grad is not None and m.log_alpha.grad.abs().sum() > 0
    m.log_alpha.grad = None
    m.l0_norm().backward()
    assert (m.log_alpha.grad > 0).all()


def test_deterministic_mask_keeps_top_units():
    m = HardConcrete(5).eval()
    with torch.no_grad():
        m.log_alpha.copy_(torch.tensor([5.0, -5.0, 1.0, -1.0, 3.0]))
    mask = m(keep=2)
    assert (mask > 0).tolist() == [True, False, False, False, True]
    assert float(mask[0]) == pytest.approx(torch.sigmoid(torch.tensor(5.0 / (2 / 3) * 0.8)).item())
    assert int((m() > 0).sum()) == round(float(m.l0_norm()))
    assert torch.equal(m(), m())  # no noise in eval mode
    with pytest.raises(ValueError, match="keep must be"):
        m.deterministic(6)


def test_invalid_args():
    with pytest.raises(ValueError, match="n_units"):
        HardConcrete(0)
    with pytest.raises(ValueError, match="init_drop"):
        HardConcrete(3, init_drop=1.0)
