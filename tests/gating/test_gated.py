"""Row skipping: ``row_plan`` decisions and ``gated_residual`` on them."""

import torch

from espnet_ext import flops
from espnet_ext.gating import gated_residual, row_plan
from espnet.nets.pytorch_backend.transformer.subsampling import Conv2dSubsampling


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
        assert calls == [int(sum(column))] * 2 if any(column) else calls == []


def test_subsampling_macs_traced_once_per_shape():
    enc = torch.nn.Module()
    enc.embed = Conv2dSubsampling(20, 16, 0.0)
    runs = []
    enc.embed.register_forward_hook(lambda *_: runs.append(1))
    first = flops.subsampling(enc, 100, 20)
    # conv1 (1->16, 3x3, stride 2) over 49 x 9, conv2 (16->16) over 24 x 4, then the linear
    assert first == 49 * 9 * 16 * 9 + 24 * 4 * 16 * 16 * 9 + 24 * 16 * 4 * 16
    assert flops.subsampling(enc, 100, 20) == first and len(runs) == 1
    assert flops.subsampling(enc, 200, 20) > first and len(runs) == 2
