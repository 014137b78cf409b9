"""Analytic multiply-accumulate (MAC) counts of the gated units.

Counts the matrix products that dominate the cost (linear layers,
convolutions, attention scores and weighted sums); norms, activations and
softmax are left out, as fvcore does. GFLOPs follow fvcore's convention (the
papers' tool): one multiply-add counts as one flop, ``GFLOPs = MACs / 1e9``
(``to_gflops``); tools that count 2 flops per multiply-add give twice our
figures. The counts are checked against fvcore in ``tests/test_flops.py``.

Used for: the FLOPs-weighted sparsity (``sparsity_weighting: flops``), the
GFLOPs each decoded utterance actually spends, and the efficiency report.
"""

import weakref
from typing import Dict, Iterable, Tuple

import torch

from espnet.nets.pytorch_backend.transformer.attention import (
    LegacyRelPositionMultiHeadedAttention,
    MultiHeadedAttention,
)


def to_gflops(macs: float) -> float:
    """GFLOPs in fvcore's convention: one multiply-add = one flop."""
    return macs / 1e9


def per_position(modules: Iterable[torch.nn.Module]) -> int:
    """MACs per position of every Linear and Conv1d layer inside ``modules``."""
    total = 0
    for module in modules:
        if module is None:  # removed by a static export
            continue
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                total += m.in_features * m.out_features
            elif isinstance(m, torch.nn.Conv1d):
                total += m.weight.numel()  # out * in / groups * kernel
    return total


def attention(attn: torch.nn.Module, n_query: int, n_key: int) -> int:
    """MACs of one attention call: projections, scores and weighted sum.

    Args:
        attn: An ESPnet attention module.
        n_query (int): Query positions.
        n_key (int): Key/value positions (K/V projections run on all of them).
    """
    if attn is None:  # removed by a static export
        return 0
    if not isinstance(attn, MultiHeadedAttention):  # e.g. FastSelfAttention: linear in T
        return n_query * per_position([attn])
    d = attn.linear_q.in_features
    macs = 2 * n_query * d * d + 2 * n_key * d * d + 2 * n_query * n_key * d
    if hasattr(attn, "linear_pos"):  # relative positions: 2T-1 of them (legacy: T)
        legacy = isinstance(attn, LegacyRelPositionMultiHeadedAttention)
        n_pos = n_key if legacy else 2 * n_key - 1
        macs += n_pos * d * d + n_query * n_pos * d
    return macs


def _stock_transformer(encoder) -> bool:
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

    return isinstance(encoder, TransformerEncoder) and not hasattr(encoder, "unit_costs")


def encoder_unit_names(encoder) -> tuple:
    """Unit names of a gated encoder, a stock E-Branchformer or a stock Transformer."""
    if hasattr(encoder, "unit_names"):
        return tuple(encoder.unit_names)
    if _stock_transformer(encoder):  # as transformer_encoder_token_condition
        return ("attn", "ffn")
    first = encoder.encoders[0]
    names = ("attn", "cgmlp")
    if first.feed_forward_macaron is not None:
        names = ("ffn1",) + names
    return names + (("ffn2",) if first.feed_forward is not None else ())


def encoder_units(encoder, n_frames: int) -> torch.Tensor:
    """MACs of each gated unit of a gated E-Branchformer for one utterance.

    The merge runs when either branch is open; its cost is split evenly
    between the attention and cgMLP units here.

    Args:
        encoder: ``EBranchformerTokenConditionEncoder``.
        n_frames (int): Frames after subsampling.

    Returns:
        torch.Tensor: (layers, units) MACs, float64.
    """
    rows = []
    for layer in encoder.encoders:
        merge = n_frames * per_position([layer.depthwise_conv_fusion, layer.merge_proj])
        cost = {
            "ffn1": n_frames * per_position([layer.feed_forward_macaron])
            if layer.feed_forward_macaron is not None
            else 0,
            "attn": attention(layer.attn, n_frames, n_frames) + merge / 2,
            "cgmlp": n_frames * per_position([layer.cgmlp]) + merge / 2,
            "ffn2": n_frames * per_position([layer.feed_forward])
            if layer.feed_forward is not None
            else 0,
        }
        rows.append([cost[u] for u in encoder_unit_names(encoder)])
    return torch.tensor(rows, dtype=torch.float64)


def encoder_spent(encoder, n_frames: int, gates: torch.Tensor) -> float:
    """MACs an encoder pass spends for one utterance with these gates.

    Args:
        encoder: A gated encoder (E-Branchformer: its merge counted once per open merge).
        n_frames (int): Frames after subsampling.
        gates (torch.Tensor): (layers, units) 0/1 gates.
    """
    gates = gates.detach().double().cpu()
    if not hasattr(encoder.encoders[0], "depthwise_conv_fusion"):  # no shared merge: units add up
        if _stock_transformer(encoder):
            from espnet_ext.nets.transformer_encoder_token_condition import transformer_unit_costs

            return float((transformer_unit_costs(encoder, n_frames) * gates).sum())
        return float((encoder.unit_costs(n_frames) * gates).sum())
    names = encoder_unit_names(encoder)
    units = dict(zip(names, range(len(names))))
    costs = encoder_units(encoder, n_frames)
    # encoder_units split the merge into the branches; count it once per open merge
    merge = torch.tensor(
        [n_frames * per_position([l.depthwise_conv_fusion, l.merge_proj]) for l in encoder.encoders],
        dtype=torch.float64,
    )
    branch = costs.clone()
    branch[:, units["attn"]] -= merge / 2
    branch[:, units["cgmlp"]] -= merge / 2
    merge_open = 1.0 - (1.0 - gates[:, units["attn"]]) * (1.0 - gates[:, units["cgmlp"]])
    return float((branch * gates).sum() + (merge * merge_open).sum())


def traced(module: torch.nn.Module, *inputs) -> int:
    """MACs of the Linear/Conv layers in one real forward of ``module``.

    Output shapes are taken from forward hooks, so strides and paddings of
    e.g. a conv2d subsampling are accounted exactly.
    """
    total = 0

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, torch.nn.Linear):
            total += out[..., 0].numel() * m.in_features * m.out_features
        else:  # ConvNd
            total += out.numel() * (m.in_channels // m.groups) * m.weight[0, 0].numel()

    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, layers)]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


# input layer -> {(input frames, feature size): MACs}; the shapes, not the weights, decide
_subsampling_macs: "weakref.WeakKeyDictionary[torch.nn.Module, Dict[Tuple[int, int], int]]" = (
    weakref.WeakKeyDictionary()
)


def subsampling(encoder, n_input_frames: int, feat_dim: int) -> int:
    """MACs of the (never gated) input layer for one utterance.

    Args:
        encoder: An ESPnet encoder with ``embed`` taking (x, mask).
        n_input_frames (int): Feature frames before subsampling.
        feat_dim (int): Feature size (e.g. 80 fbank bins).
    """
    # Decoding counts every utterance: trace each input shape once, not a
    # second subsampling forward per utterance (~8 % of a small model's decode).
    embed = encoder.embed
    if hasattr(embed, "macs"):  # an input layer that counts itself (Whisper's: raw audio in)
        return embed.macs(n_input_frames)
    counts = _subsampling_macs.setdefault(embed, {})
    if (n_input_frames, feat_dim) not in counts:
        p = next(encoder.parameters())
        x = torch.zeros(1, n_input_frames, feat_dim, dtype=p.dtype, device=p.device)
        mask = torch.ones(1, 1, n_input_frames, dtype=torch.bool, device=p.device)
        counts[n_input_frames, feat_dim] = traced(embed, x, mask)
    return counts[n_input_frames, feat_dim]



def decoder_units(decoder, n_query: int, n_prefix: int, n_memory: int) -> torch.Tensor:
    """MACs of each gated unit of a gated Transformer decoder for one sequence.

    Args:
        decoder: ``TransformerDecoderTokenCondition``.
        n_query (int): Positions computed (L in teacher forcing, 1 per step
            in incremental decoding).
        n_prefix (int): Positions attended by self-attention (L, or t).
        n_memory (int): Encoder frames attended by source attention (its K/V
            projections are recomputed at every step in ESPnet's decoding).

    Returns:
        torch.Tensor: (layers, 3) MACs, float64.
    """
    rows = [
        [
            attention(layer.self_attn, n_query, n_prefix),
            attention(layer.src_attn, n_query, n_memory),
            n_query * per_position([layer.feed_forward]),
        ]
        for layer in decoder.decoders
    ]
    return torch.tensor(rows, dtype=torch.float64)
