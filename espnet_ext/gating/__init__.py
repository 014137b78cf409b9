"""Context-aware gating: predictor, straight-through Gumbel gates, schedules."""

from espnet_ext.gating.context import GateContext
from espnet_ext.gating.gated import (
    GatedModule,
    force_gates,
    gated_branch,
    gated_modules,
    gated_residual,
    open_rows,
    pin_gates,
    row_plan,
    set_tau,
    use_context,
)
from espnet_ext.gating.gumbel import sample_gates
from espnet_ext.gating.predictor import GATE_CONF_KEYS, GateOptions, GatePredictor

__all__ = [
    "GATE_CONF_KEYS",
    "GateContext",
    "GateOptions",
    "GatePredictor",
    "GatedModule",
    "force_gates",
    "gated_branch",
    "gated_modules",
    "gated_residual",
    "open_rows",
    "pin_gates",
    "row_plan",
    "sample_gates",
    "set_tau",
    "use_context",
]
