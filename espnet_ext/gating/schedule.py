"""Gumbel temperature and sparsity-target schedules, and the sparsity loss.

tau(step) goes from ``tau_ini`` to ``tau_end`` over ``tau_cooldown_steps`` and
then stays; the sparsity target s*(step) ramps linearly from ``sparsity_init``
to ``sparsity_end`` over ``sparsity_warmup_steps``. Steps are optimizer steps:
the buffer ``forwards`` counts training forward passes (saved with the model, so
``--resume true`` continues both schedules where they were) and ``step``
turns it into the optimizer steps ESPnet's trainer has taken, one per
``accum_grad`` batches, restarting its count every epoch of
``batches_per_epoch`` batches (``espnet_ext.gating.plan`` sets it at start-up
and checks that the run reaches both ends).

Two ways to hold the fraction of closed units g at s*:
- "penalty" (ICLR 2025): ``alpha * (|g - s*| + (g - s*)^2)``. Whether it wins
  against the task loss depends on alpha, the task loss's scale (ESPnet's S2T
  loss is summed over tokens) and the learning rates.
- "lagrangian" (as DPHuBERT, arXiv 2302.14132): ``(lambda1 (g - s*) + lambda2
  (g - s*)^2) * |L_task|``, the multipliers trained by gradient ascent: they
  grow until g meets s*. The factor ``|L_task|`` (detached) makes the needed
  multipliers O(1) whatever the loss's scale, so one ``sparsity_lambda_lr``
  serves summed and mean losses and any batch size. (How closely g follows a
  short ramp still depends on it: docs/sparsity_control.md.)
"""

import math
from typing import Optional

import torch
from typeguard import typechecked

TAU_SCHEDULES = ("linear", "exp")
SPARSITY_LOSSES = ("abs_squared", "squared")
SPARSITY_CONTROLS = ("penalty", "lagrangian")


def optimizer_steps(forwards: int, accum_grad: int = 1,
                    batches_per_epoch: Optional[int] = None) -> int:
    """Optimizer steps ESPnet's trainer has taken after ``forwards`` training batches.

    Within an epoch it steps after every ``accum_grad``-th batch (its count
    restarts every epoch); the last ``batches_per_epoch % accum_grad`` batches of
    an epoch are stepped with the next epoch's first ``accum_grad`` (ESPnet does
    not zero their gradients). ``batches_per_epoch`` None: forwards // accum_grad.
    """
    if batches_per_epoch is None or batches_per_epoch % accum_grad == 0:
        return forwards // accum_grad
    epochs, rest = divmod(forwards, batches_per_epoch)
    return epochs * (batches_per_epoch // accum_grad) + rest // accum_grad


class Multipliers(torch.nn.Module):
    """``lambda1 * d + lambda2 * d^2`` of a constraint d = 0.

    The optimizer must *maximise* over lambda1 and lambda2 (a parameter group of
    their own with ``maximize=True``): lambda1 follows the sign of d, lambda2
    grows while d != 0, so the penalty becomes as strong as it has to be.
    """

    def __init__(self):
        super().__init__()
        self.lambda1 = torch.nn.Parameter(torch.zeros(()))
        self.lambda2 = torch.nn.Parameter(torch.zeros(()))

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        return self.lambda1 * diff + self.lambda2 * diff * diff


class GateSchedule(torch.nn.Module):
    """Step-driven schedules of context-aware dynamic pruning.

    Args:
        tau_ini (float): Initial Gumbel-softmax temperature.
        tau_end (float): Final temperature.
        tau_cooldown_steps (int): Optimizer steps from tau_ini to tau_end.
        tau_schedule (str): "linear" or "exp" (geometric) interpolation.
        sparsity_init (float): Initial target fraction of closed units.
        sparsity_end (float): Final target.
        sparsity_warmup_steps (int): Steps of the linear ramp; None = tau_cooldown_steps.
        sparsity_loss_weight (float): alpha of the "penalty" sparsity loss.
        sparsity_loss_type (str): "abs_squared" = |g - s*| + (g - s*)^2, or
            "squared" = (g - s*)^2 ("penalty" only).
        sparsity_control (str): "penalty" (alpha * the above) or "lagrangian"
            (multipliers trained by ascent, see the module docstring).
        sparsity_lambda_lr (float): Learning rate of the multipliers ("lagrangian").
        accum_grad (int): Forward passes per optimizer step.
        batches_per_epoch (int): Training batches per epoch (ESPnet's
            ``num_iters_per_epoch``); None: ``step`` = forwards // accum_grad.
            ESPnet counts ``accum_grad`` from 1 again every epoch, so with
            ``batches_per_epoch % accum_grad != 0`` the last batches of an epoch
            join the next epoch's first step.
    """

    KEYS = (
        "tau_ini tau_end tau_cooldown_steps tau_schedule sparsity_init sparsity_end "
        "sparsity_warmup_steps sparsity_loss_weight sparsity_loss_type sparsity_control "
        "sparsity_lambda_lr accum_grad batches_per_epoch"
    ).split()

    @typechecked
    def __init__(
        self,
        tau_ini: float = 1.0,
        tau_end: float = 0.1,
        tau_cooldown_steps: int = 15000,
        tau_schedule: str = "linear",
        sparsity_init: float = 0.0,
        sparsity_end: float = 0.3,
        sparsity_warmup_steps: Optional[int] = None,
        sparsity_loss_weight: float = 1.0,
        sparsity_loss_type: str = "abs_squared",
        sparsity_control: str = "penalty",
        sparsity_lambda_lr: float = 0.2,
        accum_grad: int = 1,
        batches_per_epoch: Optional[int] = None,
    ):
        super().__init__()
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long))
        self.configure(
            tau_ini=tau_ini,
            tau_end=tau_end,
            tau_cooldown_steps=tau_cooldown_steps,
            tau_schedule=tau_schedule,
            sparsity_init=sparsity_init,
            sparsity_end=sparsity_end,
            sparsity_warmup_steps=sparsity_warmup_steps,
            sparsity_loss_weight=sparsity_loss_weight,
            sparsity_loss_type=sparsity_loss_type,
            sparsity_control=sparsity_control,
            sparsity_lambda_lr=sparsity_lambda_lr,
            accum_grad=accum_grad,
            batches_per_epoch=batches_per_epoch,
        )

    def configure(self, **conf) -> None:
        """Sets schedule options (keys as in ``__init__``); the step is kept."""
        for key, value in conf.items():
            if key not in self.KEYS:
                raise ValueError(f"unknown gate schedule option: {key}")
            setattr(self, key, value)
        if self.tau_ini <= 0 or self.tau_end <= 0:
            raise ValueError(f"tau_ini/tau_end must be > 0, got {self.tau_ini}, {self.tau_end}")
        if self.tau_schedule not in TAU_SCHEDULES:
            raise ValueError(f"unknown tau_schedule: {self.tau_schedule} (choose from {TAU_SCHEDULES})")
        if self.sparsity_loss_type not in SPARSITY_LOSSES:
            raise ValueError(
                f"unknown sparsity_loss_type: {self.sparsity_loss_type} (choose from {SPARSITY_LOSSES})"
            )
        if self.sparsity_control not in SPARSITY_CONTROLS:
            raise ValueError(
                f"unknown sparsity_control: {self.sparsity_control} (choose from {SPARSITY_CONTROLS})"
            )
        # created once the task configures "lagrangian" (before the optimizer is built)
        if self.sparsity_control == "lagrangian" and not hasattr(self, "multipliers"):
            self.multipliers = Multipliers()
        for key in ("sparsity_init", "sparsity_end"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        if self.accum_grad < 1:
            raise ValueError(f"accum_grad must be >= 1, got {self.accum_grad}")
        if self.batches_per_epoch is not None and self.batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch must be >= 1, got {self.batches_per_epoch}")

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (before the current forward's)."""
        return self.steps_after(int(self.forwards))

    def steps_after(self, forwards: int) -> int:
        """Optimizer steps after ``forwards`` training batches (``optimizer_steps``)."""
        return optimizer_steps(forwards, self.accum_grad, self.batches_per_epoch)

    def tick(self) -> None:
        """Counts one training forward pass."""
        self.forwards += 1

    @staticmethod
    def _progress(step: int, steps: int) -> float:
        return 1.0 if steps <= 0 else min(step / steps, 1.0)

    def tau(self, step: Optional[int] = None) -> float:
        p = self._progress(self.step if step is None else step, self.tau_cooldown_steps)
        if self.tau_schedule == "exp":
            return self.tau_ini * math.exp(p * math.log(self.tau_end / self.tau_ini))
        return self.tau_ini + p * (self.tau_end - self.tau_ini)

    @property
    def ramp_steps(self) -> int:
        """Steps of the sparsity target's ramp."""
        steps = self.sparsity_warmup_steps
        return self.tau_cooldown_steps if steps is None else steps

    def target(self, step: Optional[int] = None) -> float:
        p = self._progress(self.step if step is None else step, self.ramp_steps)
        return self.sparsity_init + p * (self.sparsity_end - self.sparsity_init)

    def loss(
        self, sparsity: torch.Tensor, target: float, task_loss: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The sparsity loss of the fraction closed ``sparsity`` (g) at target s*.

        "penalty": alpha * (|g - s*| + (g - s*)^2) (or the squared term only);
        "lagrangian": (lambda1 (g - s*) + lambda2 (g - s*)^2) * |task_loss| (detached; 1 if None).
        """
        diff = sparsity - target
        if self.sparsity_control == "lagrangian":
            scale = 1.0 if task_loss is None else task_loss.detach().abs()
            return self.multipliers(diff) * scale
        loss = diff.pow(2)
        if self.sparsity_loss_type == "abs_squared":
            loss = loss + diff.abs()
        return self.sparsity_loss_weight * loss
