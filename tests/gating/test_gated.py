"""Row skipping: ``row_plan`` decisions and ``gated_residual`` on them."""

import torch

from espnet_ext.gating import gated_residual, row_plan


def test_row_plan_decides_uniform_units_and_keeps_mixed_columns():
    gates = torch.tensor(
        [[[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
         [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
    )  # (#batch 2, layers 2, units 3)
    plan = row_plan(gates)
    assert plan[0][:2] == [True, False] and plan[1] == [False, False, True]
    assert torch.equal(plan[0][2], torch.tensor([1.0, 0.0]))


def test_row_plan_keeps_gradient_carrying_gates():
    gates = torch.ones(2, 1, 3, requires_grad=True)
    plan = row_plan(gates)
    assert all(isinstance(g, torch.Tensor) and g.requires_grad for g in plan[0])


def test_planned_gates_give_the_tensor_results_and_skip_closed_units():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 8)
    lin = torch.nn.Linear(8, 8)
    calls = []

    def fn(h):
        calls.append(h.size(0))
        return lin(h)

    for column in ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]):
        gate = torch.tensor(column)
        decided = row_plan(gate.view(3, 1, 1))[0][0]
        calls.clear()
        want = gated_residual(x, gate, fn, scale=0.5)
        got = gated_residual(x, decided, fn, scale=0.5)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got, x + 0.5 * gate.view(3, 1, 1) * lin(x))
        assert calls == ([int(sum(column))] * 2 if any(column) else [])
