"""Context-aware gating: predictor, straight-through Gumbel gates, schedules."""

from espnet_ext.gating.context import GateContext
from espnet_ext.gating.gated import (
    GatedModule,
    GateRecord,
    force_gates,
    gate_inputs,
    gated_branch,
    gated_modules,
    gated_residual,
    open_rows,
    pin_gates,
    row_plan,
    set_tau,
)
from espnet_ext.gating.gumbel import sample_gates
from espnet_ext.gating.predictor import GATE_CONF_KEYS, GateOptions, GatePredictor

__all__ = [
    "GATE_CONF_KEYS",
    "GateContext",
    "GateOptions",
    "GatePredictor",
    "GatedModule",
    "GateRecord",
    "force_gates",
    "gate_inputs",
    "gated_branch",
    "gated_modules",
    "gated_residual",
    "open_rows",
    "pin_gates",
    "row_plan",
    "sample_gates",
    "set_tau",
]
