"""What gated encoders/decoders share: gate computation, forcing and row skipping.

A gated unit is a residual branch ``x + f(x)``. Closing it for an utterance
means ``f`` is not computed for that row: rows whose gate is open are gathered,
``f`` runs on them only, and the result is scattered back. During training the
gates come from the straight-through estimator and carry a gradient; then
``f`` runs on every row and is multiplied by the gate, so a closed unit still
receives the gradient that lets it reopen (its output value is still zero).
"""

from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, Union

import torch

from espnet_ext.gating.context import GateContext
from espnet_ext.gating.predictor import GateOptions, GatePredictor


class GatedModule(torch.nn.Module):
    """Mixin for a module with ``num_layers x len(unit_names)`` gates.

    Subclasses call ``init_gates`` in ``__init__`` and ``compute_gates`` in
    ``forward``. The model sets ``tau`` (Gumbel temperature) every step.
    After each forward, ``last_gates`` (#batch, layers, units) holds the
    decisions (with gradient in training) and ``last_probs`` the noiseless
    open-probabilities.
    """

    unit_names: Sequence[str] = ()

    def init_gates(
        self,
        input_size: int,
        num_layers: int,
        options: Optional[GateOptions] = None,
        fixed_gates: Optional[List[List[int]]] = None,
    ) -> None:
        """Builds the gate predictor, or fixes the gates (static export).

        Args:
            input_size (int): Size of x_GP.
            num_layers (int): Gated layers.
            fixed_gates: (layers, units) 0/1 gates of a statically pruned
                model; then there is no predictor and ``remove_closed_units``
                deletes the closed sub-modules.
            options: The gate predictor's options.
        """
        self.num_layers = num_layers
        shape = (num_layers, len(self.unit_names))
        if fixed_gates is None:
            self.fixed_gates = None
            self.gate_predictor = GatePredictor(input_size, shape[0] * shape[1], options)
        else:
            fixed = torch.tensor(fixed_gates, dtype=torch.float32)
            if tuple(fixed.shape) != shape or not set(fixed.unique().tolist()) <= {0.0, 1.0}:
                raise ValueError(f"fixed_gates must be {shape[0]} x {shape[1]} 0/1 values, got {fixed_gates}")
            self.register_buffer("fixed_gates", fixed.unsqueeze(0), persistent=False)
            self.gate_predictor = None
        self.tau = 1.0
        self.forced_gates: Union[None, float, torch.Tensor] = None
        self.scoped_context: Optional[GateContext] = None
        self.primer_context: Optional[GateContext] = None  # from a stock beam search's prefix
        self.last_gates: Optional[torch.Tensor] = None
        self.last_probs: Optional[torch.Tensor] = None
        self.gate_memo = None  # per-utterance cache of modules called step by step

    def unit_costs(self, n_frames: int, n_tokens: int = 1) -> torch.Tensor:
        """MACs of each gated unit for one utterance (``sparsity_weighting: flops``).

        Args:
            n_frames (int): Encoder frames after subsampling.
            n_tokens (int): Decoder tokens (teacher forcing); encoders ignore it.

        Returns:
            torch.Tensor: (layers, units) MACs, float64.
        """
        raise NotImplementedError(f"{type(self).__name__} does not report its unit costs")

    def compute_gates(
        self, xs: torch.Tensor, mask: torch.Tensor, context: Optional[GateContext]
    ) -> torch.Tensor:
        """Gates for a batch.

        Args:
            xs (torch.Tensor): x_GP (#batch, T, D).
            mask (torch.Tensor): Valid frames (#batch, T) bool.
            context (GateContext): Explicit context; falls back to the one set
                by ``use_context``.

        Returns:
            torch.Tensor: (#batch, layers, units) hard gates, 1.0 = open.
        """
        shape = (xs.size(0), self.num_layers, len(self.unit_names))
        if self.fixed_gates is not None:  # static export: closed units are gone
            gates = self.fixed_gates.to(xs).expand(shape)
            probs = gates
        elif isinstance(self.forced_gates, torch.Tensor):
            gates = self.forced_gates.to(xs).expand(shape)
            probs = gates
        elif self.forced_gates is not None:
            gates = xs.new_full(shape, float(self.forced_gates))
            probs = gates
        else:
            ctx = context if context is not None else self.scoped_context
            if ctx is None and not self.training:
                ctx = self.primer_context  # espnet_ext.s2t.stock_inference
            if ctx is not None and ctx.speech_span is not None:
                mask = span_mask(mask, ctx.speech_span)
            gates, probs = self.gate_predictor(xs, mask, ctx, self.tau)
            gates, probs = gates.view(shape), probs.view(shape)
        self.last_gates, self.last_probs = gates, probs
        return gates


def span_mask(mask: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """``mask`` (#batch, T) narrowed to ``span`` (#batch, 2): start and end as fractions
    of each row's valid frames; at least one frame stays."""
    n = mask.sum(-1, keepdim=True).to(span.dtype)
    t = torch.arange(mask.size(-1), device=mask.device)
    start = (span[:, :1] * n).floor().clamp(max=n - 1)
    end = torch.maximum((span[:, 1:] * n).ceil(), start + 1)
    return mask & (t >= start) & (t < end)


def _rows(a, idx: torch.Tensor, batch: int):
    # Tensors with a batch dim follow the rows; broadcast ones (size 1) and
    # None pass through unchanged.
    if isinstance(a, torch.Tensor) and a.size(0) == batch:
        return a[idx]
    return a


def open_rows(gate: torch.Tensor) -> Optional[torch.Tensor]:
    """Indices of open rows of a (#batch,) gate; None when every row is open."""
    is_open = gate > 0.5
    if bool(is_open.all()):
        return None
    return is_open.nonzero(as_tuple=True)[0]


def row_plan(gates: torch.Tensor) -> List[List[Union[bool, torch.Tensor]]]:
    """Decides once what each unit does for a batch, for ``gated_residual``.

    Incremental decoding runs every unit at every step: deciding each unit's
    open rows there costs a host sync per unit (~3 % of a small model's
    decode). One sync here decides them all.

    Args:
        gates (torch.Tensor): (#batch, layers, units) 0/1 gates.

    Returns:
        Per layer and unit: True (every row open), False (every row closed),
        or the (#batch,) gate column when rows differ (or carry a gradient).
    """
    if gates.requires_grad:
        return [list(g.unbind(-1)) for g in gates.unbind(1)]
    is_open = gates > 0.5
    every, some = is_open.all(0).tolist(), is_open.any(0).tolist()
    return [
        [a if a or not s else gates[:, i, j] for j, (a, s) in enumerate(zip(all_row, some_row))]
        for i, (all_row, some_row) in enumerate(zip(every, some))
    ]


def _expand(gate: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return gate.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def gated_residual(
    x: torch.Tensor,
    gate: Union[torch.Tensor, bool],
    fn: Callable[..., torch.Tensor],
    *args,
    scale: float = 1.0,
) -> torch.Tensor:
    """``x + scale * gate * fn(x, *args)``, computing ``fn`` on open rows only.

    Args:
        x (torch.Tensor): Residual stream (#batch, ...).
        gate: (#batch,) 0/1 gates, or a bool for every row (see ``row_plan``).
        fn: The unit; called as ``fn(x_rows, *args_rows)``.
        *args: Batch-first tensors (row-selected with x) or None.
        scale (float): Residual scale (0.5 for macaron FFNs).
    """
    if isinstance(gate, bool):
        return x + scale * fn(x, *args) if gate else x
    if gate.requires_grad:
        return x + scale * (_expand(gate, x) * fn(x, *args))
    idx = open_rows(gate)
    if idx is None:
        return x + scale * fn(x, *args)
    if idx.numel() == 0:
        return x
    y = fn(x[idx], *[_rows(a, idx, x.size(0)) for a in args])
    return x.index_add(0, idx, y, alpha=scale)


def gated_branch(
    gate: torch.Tensor, fn: Callable[..., torch.Tensor], x: torch.Tensor, *args
) -> Optional[torch.Tensor]:
    """``gate * fn(x, *args)`` (zeros on closed rows); None if all rows closed."""
    if gate.requires_grad:
        return _expand(gate, x) * fn(x, *args)
    idx = open_rows(gate)
    if idx is None:
        return fn(x, *args)
    if idx.numel() == 0:
        return None
    y = fn(x[idx], *[_rows(a, idx, x.size(0)) for a in args])
    return y.new_zeros((x.size(0),) + y.shape[1:]).index_copy(0, idx, y)


def gated_modules(model: torch.nn.Module) -> List[GatedModule]:
    """Every gated module inside ``model`` (itself included)."""
    return [m for m in model.modules() if isinstance(m, GatedModule)]


@contextmanager
def _set_attr(model: torch.nn.Module, name: str, value) -> Iterator[None]:
    modules = gated_modules(model)
    saved = [getattr(m, name) for m in modules]
    for m in modules:
        setattr(m, name, value)
    try:
        yield
    finally:
        for m, v in zip(modules, saved):
            setattr(m, name, v)


def force_gates(model: torch.nn.Module, value: float):
    """Context manager: every gate of every gated module in ``model`` = value.

    ``1.0`` opens all (the stock network), ``0.0`` closes all (no gated unit
    runs). The gate predictors are not called and no context is needed.
    """
    if value not in (0.0, 1.0):
        raise ValueError(f"force_gates value must be 0.0 or 1.0, got {value}")
    return _set_attr(model, "forced_gates", float(value))


@contextmanager
def pin_gates(module: GatedModule, gates: torch.Tensor) -> Iterator[None]:
    """Context manager: fixed gates for one gated module.

    Args:
        module (GatedModule): A gated encoder or decoder.
        gates (torch.Tensor): (#batch or 1, layers, units) 0/1 gates.
    """
    shape = (module.num_layers, len(module.unit_names))
    if gates.dim() != 3 or tuple(gates.shape[1:]) != shape:
        raise ValueError(f"gates must be (#batch, {shape[0]}, {shape[1]}), got {tuple(gates.shape)}")
    saved, module.forced_gates = module.forced_gates, gates.detach()
    try:
        yield
    finally:
        module.forced_gates = saved


@contextmanager
def use_context(model: torch.nn.Module, context: Optional[GateContext]):
    """Context manager: gated modules in ``model`` read their gate context here.

    Lets stock ESPnet code paths (``ESPnetS2TModel.forward``, beam search)
    call our modules with their stock signatures. Gate memos (see the
    decoder) live no longer than the scope.
    """
    for m in gated_modules(model):
        m.gate_memo = None
    with _set_attr(model, "scoped_context", context):
        try:
            yield
        finally:
            for m in gated_modules(model):
                m.gate_memo = None


def set_tau(model: torch.nn.Module, tau: float) -> None:
    """Sets the Gumbel-softmax temperature of every gated module."""
    for m in gated_modules(model):
        m.tau = float(tau)
