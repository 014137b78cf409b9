"""HardConcrete masks with a closed-form expected L0 norm.

Reference: Louizos et al., "Learning Sparse Neural Networks through L0
Regularization", ICLR 2018; used for structured pruning of speech SSL models
in Peng et al., "Structured Pruning of Self-Supervised Pre-trained Models for
Language Understanding and Generation" / DPHuBERT (arXiv 2302.14132), whose
defaults we keep: temperature 2/3, stretch interval (-0.1, 1.1).

A mask of ``n`` units is a vector z in [0, 1]^n. Training draws
``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``, ``u ~ U(0, 1)``,
stretches it to (l, r) and clips it to [0, 1], so exact zeros and ones occur
with non-zero probability while the sample stays differentiable in
``log_alpha``. The expected number of non-zero units is

    E[L0] = sum_i sigmoid(log_alpha_i - beta * log(-l / r)).

Evaluation uses a deterministic mask: the ``keep`` units with the largest
``log_alpha`` get ``sigmoid(0.8 * log_alpha / beta)`` (as in DPHuBERT), the
others exactly 0; ``keep`` defaults to ``round(E[L0])``.
"""

import math
from typing import Optional

import torch


class HardConcrete(torch.nn.Module):
    """A HardConcrete mask over ``n_units`` units.

    Args:
        n_units (int): Number of units (heads, FFN units, channels).
        init_drop (float): Initial drop rate: ``log_alpha`` starts at
            ``logit(1 - init_drop)`` (+ N(0, init_std) noise).
        init_std (float): Standard deviation of the initial ``log_alpha``.
        temperature (float): beta.
        stretch (float): The sample is stretched to (-stretch, 1 + stretch).
        eps (float): Keeps ``u`` away from 0 and 1.
    """

    def __init__(
        self,
        n_units: int,
        init_drop: float = 0.01,
        init_std: float = 0.01,
        temperature: float = 2.0 / 3.0,
        stretch: float = 0.1,
        eps: float = 1e-6,
    ):
        super().__init__()
        if n_units < 1:
            raise ValueError(f"n_units must be >= 1, got {n_units}")
        if not 0.0 < init_drop < 1.0:
            raise ValueError(f"init_drop must be in (0, 1), got {init_drop}")
        self.n_units = n_units
        self.beta = temperature
        self.limit_l = -stretch
        self.limit_r = 1.0 + stretch
        self.eps = eps
        self.bias = -self.beta * math.log(-self.limit_l / self.limit_r)
        self.log_alpha = torch.nn.Parameter(torch.empty(n_units))
        with torch.no_grad():
            self.log_alpha.normal_(math.log(1 - init_drop) - math.log(init_drop), init_std)

    def extra_repr(self) -> str:
        return f"n_units={self.n_units}, temperature={self.beta:.3f}, stretch=({self.limit_l}, {self.limit_r})"

    def prob_nonzero(self) -> torch.Tensor:
        """P(z_i != 0) per unit (differentiable), shape (n_units,)."""
        return torch.sigmoid(self.log_alpha + self.bias)

    def l0_norm(self) -> torch.Tensor:
        """Expected number of non-zero units (differentiable scalar)."""
        return self.prob_nonzero().sum()

    def sample(self) -> torch.Tensor:
        """A stochastic mask (training), shape (n_units,)."""
        u = torch.empty_like(self.log_alpha).uniform_(self.eps, 1.0 - self.eps)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return (s * (self.limit_r - self.limit_l) + self.limit_l).clamp(0.0, 1.0)

    def deterministic(self, keep: Optional[int] = None) -> torch.Tensor:
        """The evaluation mask: ``keep`` units non-zero (default round(E[L0])).

        Returns:
            torch.Tensor: (n_units,) values in [0, 1], exactly ``keep`` of them > 0.
        """
        if keep is None:
            keep = int(round(float(self.l0_norm().detach())))
        if not 0 <= keep <= self.n_units:
            raise ValueError(f"keep must be in [0, {self.n_units}], got {keep}")
        soft = torch.sigmoid(self.log_alpha / self.beta * 0.8)
        mask = torch.zeros_like(soft)
        if keep:
            idx = torch.topk(self.log_alpha, keep).indices
            mask[idx] = soft[idx].clamp_min(1e-6)  # kept units stay > 0
        return mask

    def forward(self, keep: Optional[int] = None) -> torch.Tensor:
        """A sample in training mode, the deterministic mask in eval mode."""
        return self.sample() if self.training else self.deterministic(keep)
