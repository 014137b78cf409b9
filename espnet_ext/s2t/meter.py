"""What a decode spends: MACs per part, counted from its shapes and gate decisions.

Each beam-search step of an utterance is recorded as one ``Step``: by
``espnet_ext.s2t.lean_search`` as it runs, or by ``DecodeMeter`` (forward
hooks) while ESPnet's own search runs. ``decoder_macs`` counts an utterance's
decoder MACs from its steps, ``encoder_macs`` its encoder pass. The unit costs
come from ``espnet_ext.flops``; GFLOPs follow fvcore's convention (MACs / 1e9).
"""

from contextlib import contextmanager
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch

from espnet_ext import flops
from espnet_ext.gating import GateRecord


class Step(NamedTuple):
    """One decoder call of one utterance.

    Attributes:
        n_hyps (int): Hypotheses (rows) scored.
        n_new (int): Query positions computed per row (ESPnet's search: 1).
        prefix (int): Prefix length, the new positions included.
    """

    n_hyps: int
    n_new: int
    prefix: int


class DecodeMeter:
    """Counts the MACs of one decode run by ESPnet's own beam search.

    Per part: ``subsampling`` (the encoder's conv input layer, never gated),
    ``encoder`` (its open units for the real number of frames), ``decoder``.
    Forward hooks on the encoder record its input and output shapes at every
    call; the gates are those of the decode's ``GateRecord`` (``measure(record)``,
    ``count_encoder``). Inside ``measure()``, a forward pre-hook on the
    decoder's embedding records one ``Step`` per decoder call of the search
    (#hypotheses and prefix length), counted as ESPnet's decoder runs it: one
    query position, the self-attention keys/values of the whole prefix. (Its
    first call also queries the other primer positions, <sos> <lang> <task>
    ...: not counted.)
    The source keys/values count once per utterance when the gated decoder
    caches them (``decoder.cache_src_kv``), else at every step. Not counted:
    the CTC prefix scorer and language models, when used.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.encoder, self.decoder = model.encoder, model.decoder
        self.input_shape: Optional[tuple] = None  # (B, T_in, F) of the last encoder call
        self.encoder.register_forward_pre_hook(self._encoder_in, with_kwargs=True)
        self.encoder.register_forward_hook(self._encoder_out)
        self.reset()

    def reset(self) -> None:
        self.macs: Dict[str, float] = {"subsampling": 0.0, "encoder": 0.0, "decoder": 0.0}
        self.steps: List[Step] = []
        self.frames: Optional[tuple] = None  # (input frames, feature dim, encoder frames)

    @property
    def decoder_steps(self) -> int:
        return len(self.steps)

    def _encoder_in(self, _module, args, kwargs):
        shape = tuple(args[0].shape)  # (B, T_in, F), or raw audio (B, samples)
        self.input_shape = shape if len(shape) == 3 else shape + (1,)

    def _encoder_out(self, _module, _args, out):
        _, t_in, feat_dim = self.input_shape
        self.frames = (t_in, feat_dim, int(out[1].max()))

    @staticmethod
    def unit_gates(encoder, gates: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(layers, units) gates of one utterance: row 0 of ``gates`` (#batch, layers, units),
        or all open (None: an ungated encoder)."""
        if gates is not None:
            return gates[0]
        return torch.ones(len(encoder.encoders), len(flops.encoder_unit_names(encoder)))

    def count_encoder(self, gates: Optional[torch.Tensor] = None) -> None:
        """Sets the encoder parts of ``macs`` from the last encoder call (one utterance).

        Args:
            gates (torch.Tensor): (1, layers, units) its gates, or None (all open).
        """
        self.macs.update(encoder_macs(self.encoder, *self.frames, self.unit_gates(self.encoder, gates)))

    @contextmanager
    def measure(self, record: GateRecord):
        """Counts one utterance's decode by ESPnet's search run inside the block.

        Each step only records its shapes; the MACs are summed at the end from
        the decode's gates, so counting adds next to nothing to the decode time.

        Args:
            record (GateRecord): Where the decode puts its gates (read on exit).
        """
        self.reset()
        steps = self.steps

        def count_step(_module, args):
            tgt = args[0]  # (#hyps, prefix) token ids
            steps.append(Step(tgt.size(0), 1, tgt.size(1)))

        hook = self.decoder.embed.register_forward_pre_hook(count_step)
        try:
            yield self
        finally:
            hook.remove()
            if self.frames is not None:
                self.count_encoder(record.gates.get("encoder"))
            dec_gates = record.gates.get("decoder")
            if steps:
                self.macs["decoder"] = decoder_macs(
                    self.decoder, steps, self.frames[2], None if dec_gates is None else dec_gates[0].detach(),
                    cached_prefix=False, cached_source=getattr(self.decoder, "cache_src_kv", False),
                )

    def dense_macs(self, model: Optional[torch.nn.Module] = None) -> Dict[str, float]:
        """MACs of the last measured decode's trajectory with every unit open.

        Same input frames, decoder steps, hypotheses and prefix lengths, counted
        on ``model`` (default: the measured one) as a stock decoder runs them
        (source K/V at every step). Gated / dense is the compute fraction of a
        decode independent of its output length: a full model that loops on an
        utterance does not make the gated model look cheaper.

        Args:
            model: A model of the same input and frame rate (e.g. the full fine-tune).
        """
        if self.frames is None:
            raise RuntimeError("dense_macs needs a decode measured by measure()")
        model = self.model if model is None else model
        t_in, feat_dim, n_frames = self.frames
        all_open = torch.ones(len(model.encoder.encoders), len(flops.encoder_unit_names(model.encoder)))
        return {**encoder_macs(model.encoder, t_in, feat_dim, n_frames, all_open),
                "decoder": decoder_macs(model.decoder, self.steps, n_frames, None,
                                        cached_prefix=False, cached_source=False)}

    @property
    def gflops(self) -> Dict[str, float]:
        """GFLOPs (fvcore: MACs / 1e9) per part and in total."""
        return gflops(self.macs)


def encoder_macs(encoder, t_in: int, feat_dim: int, n_frames: int, gates: torch.Tensor) -> Dict[str, float]:
    """MACs of one utterance's encoder pass: the (never gated) subsampling and the open units.

    Args:
        t_in (int), feat_dim (int): Input feature frames and size.
        n_frames (int): Encoder frames after subsampling.
        gates (torch.Tensor): (layers, units) 0/1 gates.
    """
    return {"subsampling": flops.subsampling(encoder, t_in, feat_dim),
            "encoder": flops.encoder_spent(encoder, n_frames, gates)}


def gflops(macs: Dict[str, float]) -> Dict[str, float]:
    """MACs per part -> GFLOPs (fvcore: MACs / 1e9) per part and in total."""
    out = {k: flops.to_gflops(v) for k, v in macs.items()}
    out["total"] = sum(out.values())
    return out


def _kv_macs(attn) -> int:
    # key + value projections of one position
    linear = getattr(attn, "linear_k", None)
    return 0 if linear is None else 2 * linear.in_features * linear.out_features


def decoder_macs(
    decoder,
    steps: Sequence[Step],
    n_frames: int,
    gates: Optional[torch.Tensor] = None,
    cached_prefix: bool = True,
    cached_source: bool = True,
) -> float:
    """MACs of one utterance's decoder steps, plus the output layer.

    Args:
        decoder: The (gated) Transformer decoder.
        steps: The utterance's ``Step`` records.
        n_frames (int): Encoder frames attended.
        gates (torch.Tensor): (layers, 3) 0/1 gates of the utterance, or None (all open).
        cached_prefix (bool): Self-attention keys/values projected once per
            position (``LeanBeamSearch``), not for the whole prefix at every
            step (ESPnet's decoder).
        cached_source (bool): Source keys/values projected once per utterance
            (for the layers whose source attention is open), not at every step.
    """
    if not steps:
        return 0.0
    kv = torch.tensor(
        [[_kv_macs(layer.self_attn), _kv_macs(layer.src_attn), 0] for layer in decoder.decoders],
        dtype=torch.float64,
    )
    is_open = torch.ones_like(kv) if gates is None else (gates > 0.5).double().cpu()
    total = float((n_frames * kv[:, 1] * is_open[:, 1]).sum()) if cached_source else 0.0

    def units(n_new, prefix):
        u = flops.decoder_units(decoder, n_new, prefix, n_frames)
        if cached_prefix:
            u[:, 0] -= (prefix - n_new) * kv[:, 0]
        if cached_source:
            u[:, 1] -= n_frames * kv[:, 1]
        return u

    # one new position: MACs are linear in the prefix length (summed in closed form)
    ones = [(n, prefix) for n, n_new, prefix in steps if n_new == 1]
    if ones:
        base, per_t = units(1, 0), units(1, 1) - units(1, 0)
        rows, rows_t = sum(n for n, _ in ones), sum(n * t for n, t in ones)
        total += float(((rows * base + rows_t * per_t) * is_open).sum())
    for n, n_new, prefix in steps:
        if n_new != 1:
            total += n * float((units(n_new, prefix) * is_open).sum())
    out_layer = decoder.output_layer
    if out_layer is not None:
        total += sum(n for n, *_ in steps) * out_layer.in_features * out_layer.out_features
    return total
