"""Physical removal: an L0-masked model -> a plain, smaller ESPnet model.

Takes a trained ``espnet_l0`` model (or any model with ``e_branchformer_l0`` /
``transformer_decoder_l0``), computes the eval-mode masks (the same number of
units per layer and group, see ``espnet_ext.pruning.structured``), folds the
mask values into the next layer's weights and slices the dropped rows and
columns out. The result is a stock config (``encoder: e_branchformer``,
``decoder: transformer``, ``model: espnet``) with smaller ``linear_units`` /
``cgmlp_linear_units`` and its state dict; its outputs equal the masked
model's in eval mode.

Stock ESPnet ties the attention inner size (heads x d_k) and the conv2d
subsampling channels to ``output_size``, so pruned heads and subsampling
channels cannot be removed from a stock model: their weights are zeroed
instead (outputs unchanged, compute not). ``PruneReport`` says how many
units of each group were removed and how many only zeroed.
"""

import copy
from dataclasses import dataclass, field
from typing import Dict, Tuple

import torch

from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention

from espnet_ext.pruning.espnet_model import L0_MODEL_KEYS
from espnet_ext.pruning.structured import (
    L0_CONF_KEYS,
    EBranchformerL0Encoder,
    KeptLayerNorm,
    TransformerDecoderL0,
)

REMOVABLE = {"ffn", "cgmlp"}


@dataclass
class PruneReport:
    """Per side and group: units kept per layer, of how many, and whether removed."""

    kept: Dict[str, Dict[str, int]] = field(default_factory=dict)
    total: Dict[str, Dict[str, int]] = field(default_factory=dict)
    removed: Dict[str, Dict[str, bool]] = field(default_factory=dict)


def _linear_rows(lin: torch.nn.Linear, idx: torch.Tensor) -> None:
    lin.weight = torch.nn.Parameter(lin.weight.data[idx].clone())
    if lin.bias is not None:
        lin.bias = torch.nn.Parameter(lin.bias.data[idx].clone())
    lin.out_features = idx.numel()


def _linear_cols(lin: torch.nn.Linear, scale: torch.Tensor, idx: torch.Tensor) -> None:
    w = lin.weight.data * scale
    lin.weight = torch.nn.Parameter(w[:, idx].clone())
    lin.in_features = idx.numel()


def _kept(mask: torch.Tensor) -> torch.Tensor:
    return (mask > 0).nonzero().squeeze(1)


def _prune_ffn(ffn, mask: torch.Tensor) -> None:
    idx = _kept(mask)
    _linear_rows(ffn.w_1, idx)
    _linear_cols(ffn.w_2, mask, idx)


def _prune_cgmlp(cgmlp, mask: torch.Tensor) -> None:
    idx = _kept(mask)
    c = mask.numel()
    _linear_rows(cgmlp.channel_proj1[0], torch.cat([idx, idx + c]))
    csgu = cgmlp.csgu
    norm = torch.nn.LayerNorm(idx.numel(), eps=csgu.norm.eps)
    norm.weight.data.copy_(csgu.norm.weight.data[idx])
    norm.bias.data.copy_(csgu.norm.bias.data[idx])
    csgu.norm = norm
    conv = csgu.conv
    conv.weight = torch.nn.Parameter(conv.weight.data[idx].clone())
    conv.bias = torch.nn.Parameter(conv.bias.data[idx].clone())
    conv.in_channels = conv.out_channels = conv.groups = idx.numel()
    _linear_cols(cgmlp.channel_proj2, mask, idx)


def _zero_heads(attn, mask: torch.Tensor) -> None:
    m = mask.repeat_interleave(attn.d_k)
    with torch.no_grad():
        attn.linear_out.weight.mul_(m)
        for lin in (attn.linear_q, attn.linear_k, attn.linear_v):
            lin.weight.mul_((m > 0).to(m)[:, None])
            lin.bias.mul_((m > 0).to(m))


def _zero_subsampling(embed, m1: torch.Tensor, m2: torch.Tensor) -> None:
    conv1, conv2, out = embed.conv[0], embed.conv[2], embed.out[0]
    with torch.no_grad():
        conv1.weight.mul_((m1 > 0).to(m1)[:, None, None, None])
        conv1.bias.mul_((m1 > 0).to(m1))
        conv2.weight.mul_(m1[None, :, None, None])  # fold the first mask
        conv2.weight.mul_((m2 > 0).to(m2)[:, None, None, None])
        conv2.bias.mul_((m2 > 0).to(m2))
        f = out.in_features // m2.numel()
        out.weight.mul_(m2.repeat_interleave(f))  # input index = channel * F' + f


def _masks(module) -> Tuple[Dict[str, torch.Tensor], Dict[str, int]]:
    masks = module.l0_masks
    was = masks.training
    masks.eval()
    with torch.no_grad():
        drawn = masks.draw()
    masks.train(was)
    return drawn, masks.uniform_keep()


def _report(report: PruneReport, side: str, module, keep: Dict[str, int]) -> None:
    masks = module.l0_masks.masks
    report.kept[side] = dict(keep)
    report.total[side] = {g: masks[keys[0]].n_units for g, keys in module.l0_masks.groups.items()}
    report.removed[side] = {g: g in REMOVABLE for g in keep}


@torch.no_grad()
def prune_model(model: torch.nn.Module, config: dict) -> Tuple[dict, Dict[str, torch.Tensor], PruneReport]:
    """Physically prunes a copy of ``model``.

    Args:
        model: A model whose encoder/decoder are ``e_branchformer_l0`` /
            ``transformer_decoder_l0`` (left unchanged).
        config (dict): Its training config (``config.yaml``).

    Returns:
        dict: The stock ESPnet config of the pruned model.
        dict: Its state dict (loads strictly into the stock model).
        PruneReport: What was kept/removed.
    """
    for m in model.modules():  # ESPnet attention keeps its last weights (not copyable)
        if isinstance(m, MultiHeadedAttention):
            m.attn = None
    model = copy.deepcopy(model).eval()
    conf = copy.deepcopy(config)
    report = PruneReport()
    enc, dec = model.encoder, model.decoder
    if not isinstance(enc, EBranchformerL0Encoder) and not isinstance(dec, TransformerDecoderL0):
        raise ValueError("the model has no e_branchformer_l0 encoder or transformer_decoder_l0 decoder")
    if isinstance(enc, EBranchformerL0Encoder):
        masks, keep = _masks(enc)
        _report(report, "encoder", enc, keep)
        if "sub1" in masks:
            _zero_subsampling(enc.embed, masks["sub1"], masks["sub2"])
        for i, layer in enumerate(enc.encoders):
            if f"attn{i}" in masks:
                _zero_heads(layer.attn, masks[f"attn{i}"])
            if f"ffn1_{i}" in masks:
                _prune_ffn(layer.feed_forward_macaron, masks[f"ffn1_{i}"])
            if f"ffn2_{i}" in masks:
                _prune_ffn(layer.feed_forward, masks[f"ffn2_{i}"])
            if f"cgmlp{i}" in masks:
                _prune_cgmlp(layer.cgmlp, masks[f"cgmlp{i}"])
        ec = {k: v for k, v in conf["encoder_conf"].items() if k not in L0_CONF_KEYS}
        if "ffn" in keep:
            ec["linear_units"] = keep["ffn"]
        if "cgmlp" in keep:
            ec["cgmlp_linear_units"] = 2 * keep["cgmlp"]
        conf["encoder"], conf["encoder_conf"] = "e_branchformer", ec
    if isinstance(dec, TransformerDecoderL0):
        masks, keep = _masks(dec)
        _report(report, "decoder", dec, keep)
        for i, layer in enumerate(dec.decoders):
            if f"self{i}" in masks:
                _zero_heads(layer.self_attn, masks[f"self{i}"])
                _zero_heads(layer.src_attn, masks[f"src{i}"])
            if f"ffn{i}" in masks:
                _prune_ffn(layer.feed_forward, masks[f"ffn{i}"])
        dc = {k: v for k, v in conf["decoder_conf"].items() if k not in L0_CONF_KEYS}
        if "ffn" in keep:
            dc["linear_units"] = keep["ffn"]
        conf["decoder"], conf["decoder_conf"] = "transformer", dc
    conf["model"] = "espnet"
    conf["model_conf"] = {k: v for k, v in conf.get("model_conf", {}).items() if k not in L0_MODEL_KEYS}
    for m in model.modules():
        if isinstance(m, KeptLayerNorm):
            m.keep = None
    state = {
        k: v for k, v in model.state_dict().items()
        if ".l0_masks." not in k and not k.startswith("lagrangian.")
    }
    return conf, state, report
