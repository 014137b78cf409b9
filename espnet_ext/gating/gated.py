"""What gated encoders/decoders share: gate computation, forcing and row skipping.

A gated unit is a residual branch ``x + f(x)``. Closing it for an utterance
means ``f`` is not computed for that row: rows whose gate is open are gathered,
``f`` runs on them only, and the result is scattered back. During training the
gates come from the straight-through estimator and carry a gradient; then
``f`` runs on every row and is multiplied by the gate, so a closed unit still
receives the gradient that lets it reopen (its output value is still zero).
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import torch

from espnet_ext.gating.context import GateContext
from espnet_ext.gating.predictor import GateOptions, GatePredictor


@dataclass
class GateRecord:
    """The gate decisions of one forward, owned by its caller.

    A caller passes one to a gated module (``record=``), or to the model's
    ``forward``/``encode`` and a beam-search scorer; each gated module that
    runs puts its decisions under its ``side`` ("encoder", "decoder").

    Attributes:
        gates (dict): side -> (#batch, layers, units) hard gates, 1.0 = open
            (with gradient in training).
        probs (dict): side -> the noiseless open-probabilities (= gates when
            the gates are fixed).
    """

    gates: Dict[str, torch.Tensor] = field(default_factory=dict)
    probs: Dict[str, torch.Tensor] = field(default_factory=dict)

    def put(self, side: str, gates: torch.Tensor, probs: torch.Tensor) -> None:
        self.gates[side], self.probs[side] = gates, probs


class GatedModule(torch.nn.Module):
    """Mixin for a module with ``num_layers x len(unit_names)`` gates.

    Subclasses call ``init_gates`` in ``__init__`` and ``compute_gates`` in
    ``forward``. The model sets ``tau`` (Gumbel temperature) every step. The
    gate context arrives as the ``context`` argument of ``forward``, and the
    decisions go to the ``GateRecord`` given as ``record`` (and are returned
    by ``compute_gates``).

    Gates are fixed one way: ``fixed_gates`` (1 or #batch, layers, units).
    A statically pruned model has them from its configuration (no gate
    predictor; the closed sub-modules do not exist); ``force_gates`` and
    ``pin_gates`` set them for a scope on any other gated module.
    """

    unit_names: Sequence[str] = ()
    side: str = ""  # "encoder" or "decoder": the key of its decisions in a GateRecord

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
        self,
        xs: torch.Tensor,
        mask: torch.Tensor,
        context: Optional[GateContext],
        record: Optional[GateRecord] = None,
    ) -> torch.Tensor:
        """Gates for a batch.

        Args:
            xs (torch.Tensor): x_GP (#batch, T, D).
            mask (torch.Tensor): Valid frames (#batch, T) bool.
            context (GateContext): The batch's context (None: the predictor
                must need none, or the gates be fixed).
            record (GateRecord): Receives the gates and probabilities.

        Returns:
            torch.Tensor: (#batch, layers, units) hard gates, 1.0 = open.
        """
        shape = (xs.size(0), self.num_layers, len(self.unit_names))
        if self.fixed_gates is not None:
            gates = probs = self.fixed_gates.to(xs).expand(shape)
        else:
            if context is not None and context.speech_span is not None:
                mask = span_mask(mask, context.speech_span)
            gates, probs = self.gate_predictor(xs, mask, context, self.tau)
            gates, probs = gates.view(shape), probs.view(shape)
        if record is not None:
            record.put(self.side, gates, probs)
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
def _fix(modules: Sequence[GatedModule], gates: Sequence[torch.Tensor]) -> Iterator[None]:
    # a statically pruned module keeps its own gates (its closed units do not exist)
    pairs = [(m, g) for m, g in zip(modules, gates) if m.gate_predictor is not None]
    saved = [m.fixed_gates for m, _ in pairs]
    for m, g in pairs:
        m.fixed_gates = g
    try:
        yield
    finally:
        for (m, _), v in zip(pairs, saved):
            m.fixed_gates = v


def force_gates(model: torch.nn.Module, value: float):
    """Context manager: every gate of every gated module in ``model`` = value.

    ``1.0`` opens all (the stock network), ``0.0`` closes all (no gated unit
    runs). The gate predictors are not called and no context is needed.
    """
    if value not in (0.0, 1.0):
        raise ValueError(f"force_gates value must be 0.0 or 1.0, got {value}")
    modules = gated_modules(model)
    return _fix(modules, [torch.full((1, m.num_layers, len(m.unit_names)), float(value))
                          for m in modules])


def pin_gates(module: GatedModule, gates: torch.Tensor):
    """Context manager: fixed gates for one gated module.

    Args:
        module (GatedModule): A gated encoder or decoder.
        gates (torch.Tensor): (#batch or 1, layers, units) 0/1 gates.
    """
    shape = (module.num_layers, len(module.unit_names))
    if gates.dim() != 3 or tuple(gates.shape[1:]) != shape:
        raise ValueError(f"gates must be (#batch, {shape[0]}, {shape[1]}), got {tuple(gates.shape)}")
    return _fix([module], [gates.detach()])


@contextmanager
def gate_inputs(
    model: torch.nn.Module, context: Optional[GateContext], record: Optional[GateRecord] = None
) -> Iterator[None]:
    """Context manager: ``context`` and ``record`` as keyword arguments of every call of a
    gated module inside ``model`` that gives none (a call with ``context=`` keeps its own).

    For a model's own call of ESPnet's code (``ESPnetS2TModel.forward``/``encode``), which
    calls the encoder and decoder with their stock arguments. Forward pre-hooks, removed
    on exit: nothing is stored on the modules.
    """

    def pass_inputs(_module, args, kwargs):
        if "context" in kwargs:
            return None
        return args, {**kwargs, "context": context, "record": record}

    # prepended: an inner scope comes first (an outer one then finds context given)
    handles = [m.register_forward_pre_hook(pass_inputs, with_kwargs=True, prepend=True)
               for m in gated_modules(model)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def set_tau(model: torch.nn.Module, tau: float) -> None:
    """Sets the Gumbel-softmax temperature of every gated module."""
    for m in gated_modules(model):
        m.tau = float(tau)
