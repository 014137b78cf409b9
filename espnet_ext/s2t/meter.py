"""What a decode spends: MACs per part, counted from its shapes and gate decisions.

``DecodeMeter`` hooks a model's encoder and counts every ``forward_one_step``
of ESPnet's beam search; ``cached_decoder_macs`` counts what
``espnet_ext.s2t.lean_search`` runs. The unit costs come from
``espnet_ext.flops``; GFLOPs follow fvcore's convention (MACs / 1e9).
"""

from contextlib import contextmanager
from typing import Dict, List, Optional

import torch

from espnet_ext import flops
from espnet_ext.gating import GatedModule


class DecodeMeter:
    """Counts the MACs one decode spends.

    Per part: ``subsampling`` (the encoder's conv input layer, never gated),
    ``encoder`` (its open units for the real number of frames), ``decoder``.
    Decoder: every ``forward_one_step`` call of the beam search, for the real
    number of hypotheses, prefix length and encoder frames, with its open
    units, plus the output layer; with ``decoder.cache_src_kv`` the source
    keys/values once per utterance. (The CTC prefix scorer, when used, is not
    counted.)
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
        self.decoder_steps = 0
        self.steps: List[tuple] = []  # (#hyps, prefix length, memory frames, gates) per step
        self.frames: Optional[tuple] = None  # (input frames, feature dim, encoder frames)

    def _encoder_in(self, _module, args, kwargs):
        shape = tuple(args[0].shape)  # (B, T_in, F), or raw audio (B, samples)
        self.input_shape = shape if len(shape) == 3 else shape + (1,)

    def _encoder_out(self, _module, _args, out):
        n_frames = int(out[1].max())
        _, t_in, feat_dim = self.input_shape
        self.frames = (t_in, feat_dim, n_frames)
        gates = self.unit_gates(self.encoder, flops.encoder_unit_names(self.encoder))
        for part, macs in encoder_macs(self.encoder, t_in, feat_dim, n_frames, gates).items():
            self.macs[part] += macs

    def unit_gates(self, module, names) -> torch.Tensor:
        """(layers, units) gates of the module's last forward (one utterance); all open if ungated."""
        if isinstance(module, GatedModule) and module.last_gates is not None:
            return module.last_gates[0]  # one utterance: every row is the same
        return torch.ones(len(getattr(module, "encoders", getattr(module, "decoders", []))), len(names))

    @contextmanager
    def measure(self):
        """Counts the decoder steps run inside the block.

        Each step only records its shapes and gates; the MACs are summed at
        the end, so counting adds next to nothing to the decode time.
        """
        self.reset()
        decoder = self.decoder
        step = decoder.forward_one_step
        steps = []

        def counted(tgt, tgt_mask, memory, *args, **kwargs):
            out = step(tgt, tgt_mask, memory, *args, **kwargs)
            gates = decoder.last_gates if isinstance(decoder, GatedModule) else None
            steps.append((tgt.size(0), tgt.size(1), memory.size(1), gates))
            return out

        decoder.forward_one_step = counted
        try:
            yield self
        finally:
            del decoder.forward_one_step  # back to the class method
            self.macs["decoder"] = decoder_macs(self.decoder, steps)
            self.decoder_steps = len(steps)
            self.steps = steps

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
        steps = [(n, t, frames, None) for n, t, frames, _ in self.steps]
        return {**encoder_macs(model.encoder, t_in, feat_dim, n_frames, all_open),
                "decoder": decoder_macs(model.decoder, steps, cache_src_kv=False)}

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


def decoder_macs(decoder, steps, cache_src_kv: Optional[bool] = None) -> float:
    """MACs of decoder steps.

    Args:
        decoder: The (gated) decoder.
        steps: (#hyps, prefix length, memory frames, gates (#hyps, layers, 3)
            or None = all open) per ``forward_one_step`` call.
        cache_src_kv: Source K/V once per utterance (None: the decoder's setting).
    """
    if not steps:
        return 0.0
    # one query position: unit MACs are linear in the prefix t and frames T
    base = flops.decoder_units(decoder, 1, 0, 0)
    per_t = flops.decoder_units(decoder, 1, 1, 0) - base
    per_frame = flops.decoder_units(decoder, 1, 0, 1) - base
    total = 0.0
    if cache_src_kv is None:
        cache_src_kv = getattr(decoder, "cache_src_kv", False)
    if cache_src_kv:
        # source K/V projected once per utterance (for layers where some row
        # has the source attention open), not at every step
        kv = torch.zeros_like(per_frame)
        for i, layer in enumerate(decoder.decoders):
            if layer.src_attn is not None and hasattr(layer.src_attn, "linear_k"):
                kv[i, 1] = 2 * layer.src_attn.linear_k.in_features * layer.src_attn.linear_k.out_features
        per_frame = per_frame - kv
        n, _, frames, gates = steps[0]
        used = (gates.sum(0) > 0).double().cpu() if gates is not None else 1.0
        total += float((frames * kv * used).sum())
    for n, t, frames, gates in steps:
        open_rows = gates.sum(0).double().cpu() if gates is not None else float(n)
        total += float(((base + t * per_t + frames * per_frame) * open_rows).sum())
    out_layer = decoder.output_layer
    if out_layer is not None:
        total += sum(n for n, *_ in steps) * out_layer.in_features * out_layer.out_features
    return total


def _kv_macs(attn) -> int:
    # key + value projections of one position
    linear = getattr(attn, "linear_k", None)
    return 0 if linear is None else 2 * linear.in_features * linear.out_features


def cached_decoder_macs(decoder, steps, n_frames: int, gates: Optional[torch.Tensor]) -> float:
    """MACs of one utterance decoded by ``LeanBeamSearch``.

    Keys/values are projected once: the source ones per utterance, the
    self-attention ones per new position.

    Args:
        decoder: The (gated) decoder.
        steps: (#hyps, new positions, prefix length) per step (``LeanBeamSearch.steps``).
        n_frames (int): Encoder frames attended.
        gates (torch.Tensor): (layers, 3) 0/1 gates, or None (all open).
    """
    kv = torch.tensor(
        [[_kv_macs(layer.self_attn), _kv_macs(layer.src_attn), 0] for layer in decoder.decoders],
        dtype=torch.float64,
    )
    is_open = torch.ones_like(kv) if gates is None else (gates > 0.5).double().cpu()
    total = float((n_frames * kv[:, 1] * is_open[:, 1]).sum())

    def units(n_new, prefix):
        u = flops.decoder_units(decoder, n_new, prefix, n_frames)
        u[:, 0] -= (prefix - n_new) * kv[:, 0]  # cached prefix positions
        u[:, 1] -= n_frames * kv[:, 1]  # cached source
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
    return total + sum(n for n, *_ in steps) * out_layer.in_features * out_layer.out_features
