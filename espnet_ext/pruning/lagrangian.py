"""Lagrangian constraint on the expected model size (DPHuBERT, arXiv 2302.14132).

The size constraint "expected size s equals target t" enters the loss as

    L_size = lambda1 * (s - t) + lambda2 * (s - t)^2,

minimised by the model (so s moves towards t) and *maximised* by the
multipliers lambda1, lambda2 (gradient ascent: lambda1 grows with the sign of
s - t, lambda2 grows while s != t), which makes the penalty as strong as it
has to be to reach the target. The target is ramped linearly from
``target_init`` to ``target_end`` over ``warmup_steps`` optimizer steps.

Gradient ascent: ``param_groups`` puts lambda1, lambda2 into an optimizer
parameter group of their own with ``maximize=True`` (torch's Adam/AdamW/SGD
option) and no weight decay.
"""

from typing import List

import torch

from espnet_ext.gating.schedule import Multipliers, optimizer_steps


class Lagrangian(Multipliers):
    """lambda1 * (s - t) + lambda2 * (s - t)^2 with a linearly ramped target.

    Args:
        target_end (float): Final target of s (e.g. a FLOPs fraction, 0.7).
        target_init (float): Target at step 0 (1.0 = the unpruned size).
        warmup_steps (int): Optimizer steps of the linear ramp.

    The buffer ``step`` counts training forward passes (saved with the model, so
    ``--resume`` continues the ramp); the model calls ``tick()`` once per
    training forward, and the ramp runs on the optimizer steps they make
    (``accum_grad``, ``batches_per_epoch``: set by the task and at training
    start-up, see ``espnet_ext.gating.schedule.optimizer_steps``).
    """

    accum_grad = 1
    batches_per_epoch = None

    def __init__(self, target_end: float, target_init: float = 1.0, warmup_steps: int = 0):
        super().__init__()
        for name, v in (("target_end", target_end), ("target_init", target_init)):
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.target_end = target_end
        self.target_init = target_init
        self.warmup_steps = warmup_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def target(self, step: int = None) -> float:
        """The target t at optimizer step ``step`` (default: the current one)."""
        if step is None:
            step = optimizer_steps(int(self.step), self.accum_grad, self.batches_per_epoch)
        if self.warmup_steps == 0 or step >= self.warmup_steps:
            return self.target_end
        frac = step / self.warmup_steps
        return self.target_init + (self.target_end - self.target_init) * frac

    def tick(self) -> None:
        self.step += 1

    def forward(self, size: torch.Tensor, target: float = None) -> torch.Tensor:
        """The penalty for expected size ``size`` (scalar tensor)."""
        t = self.target() if target is None else target
        return super().forward(size - t)


def param_groups(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, lr: float, lambda_lr: float = None
) -> List[dict]:
    """Moves the HardConcrete ``log_alpha`` and the multipliers into groups of their own.

    ``log_alpha``: plain descent with learning rate ``lr`` and no weight decay;
    ``lambda1``/``lambda2``: ascent (``maximize=True``) with ``lambda_lr``
    (default ``lr``), no weight decay. (DPHuBERT trains both with its
    "reg_learning_rate", 0.02.) Call on a fresh optimizer, before a scheduler
    is built, so schedulers see the groups.

    Returns:
        The two new groups.
    """
    from espnet_ext.pruning.hardconcrete import HardConcrete
    from espnet_ext.task import move_params

    masks = [m.log_alpha for m in model.modules() if isinstance(m, HardConcrete)]
    lambdas = [p for m in model.modules() if isinstance(m, Multipliers) for p in (m.lambda1, m.lambda2)]
    if "maximize" not in optimizer.defaults:
        raise ValueError(f"{type(optimizer).__name__} has no 'maximize' option: use adam/adamw/sgd")
    move_params(optimizer, masks, lr=lr, weight_decay=0.0, maximize=False)
    move_params(optimizer, lambdas, lr=lr if lambda_lr is None else lambda_lr,
                weight_decay=0.0, maximize=True)
    new = []
    for params in (masks, lambdas):
        ids = {id(p) for p in params}
        new += [g for g in optimizer.param_groups if ids and {id(p) for p in g["params"]} <= ids]
    return new
