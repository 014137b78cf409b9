"""Test helpers: gates that follow their context in a tiny model, and the gates modules run with."""

from contextlib import contextmanager
from unittest import mock

import torch

from espnet_ext.gating import GatedModule


def sharpen(model):
    """Large predictor weights (the same in every copy): the tiny model's gates, open at
    init, then follow the context."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, GatedModule) and m.gate_predictor is not None:
            for lin in m.gate_predictor.modules():
                if isinstance(lin, torch.nn.Linear):
                    torch.nn.init.normal_(lin.weight, std=3.0)


@contextmanager
def seen_gates():
    """The gates each gated module computes and runs with, by side (row 0 of its last call)."""
    seen = {}
    compute = GatedModule.compute_gates

    def spy(self, *args, **kwargs):
        gates = compute(self, *args, **kwargs)
        seen[self.side] = gates[0].detach().cpu().clone()
        return gates

    with mock.patch.object(GatedModule, "compute_gates", spy):
        yield seen
