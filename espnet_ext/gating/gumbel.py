"""Straight-through Gumbel-softmax estimator (SGSE) for binary gates.

Reference: Someki et al., "Context-aware Dynamic Pruning for Speech Foundation
Models", ICLR 2025, Algorithm 1; Jang et al., "Categorical Reparameterization
with Gumbel-Softmax", ICLR 2017.
"""

from typing import Tuple

import torch


def sample_gates(
    logits: torch.Tensor, tau: float, training: bool
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Turns (closed, open) logits into hard 0/1 gates.

    Training: forward value ``one_hot(argmax(logits + g))`` with Gumbel noise g,
    gradient of ``softmax((logits + g) / tau)`` (straight-through).
    Inference: no noise, ``argmax(logits)``; the gates carry no gradient.

    Args:
        logits (torch.Tensor): (..., 2) logits of (closed, open).
        tau (float): Gumbel-softmax temperature (> 0).
        training (bool): Sample with noise and straight-through gradient.

    Returns:
        torch.Tensor: Hard gates (...), 1.0 = open, 0.0 = closed.
        torch.Tensor: Soft open-probabilities (...), softmax(logits / tau)[..., 1]
            without noise (for logging).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    prob = torch.softmax(logits.detach() / tau, dim=-1)[..., 1]
    if not training:
        return (logits[..., 1] > logits[..., 0]).to(logits.dtype), prob
    noise = -torch.empty_like(logits).exponential_().log()
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), 2).to(soft.dtype)
    gates = (hard - soft.detach() + soft)[..., 1]
    return gates, prob
