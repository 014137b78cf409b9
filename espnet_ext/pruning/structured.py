"""Stock E-Branchformer / Transformer modules with HardConcrete masks (L0 pruning).

Structured pruning as in DPHuBERT (arXiv 2302.14132): a HardConcrete mask
(``espnet_ext.pruning.hardconcrete``) per prunable structure of every layer,

- ``heads``: attention heads (encoder self-attention; decoder self- and
  source attention), applied to the input of ``linear_out``;
- ``ffn``: FFN intermediate units (macaron and second FFN; decoder FFN),
  applied to the input of ``w_2``;
- ``cgmlp``: cgMLP channels (the CSGU's D/2 channels), applied to the input
  of ``channel_proj2``; the CSGU LayerNorm normalises over the kept channels
  only, so that removing the others later changes nothing;
- ``subsampling`` (encoder): the channels of both Conv2d layers of the conv2d
  subsampling, applied after each ReLU.

Registered as ``encoder: e_branchformer_l0`` and ``decoder:
transformer_decoder_l0``; parameter names are the stock ones plus
``l0_masks.*``, so a stock checkpoint initialises them (``--init_param``).

Uniform sizes: stock ESPnet has one ``linear_units`` / ``cgmlp_linear_units``
/ ``attention_heads`` per encoder or decoder. In eval mode every layer keeps
the same number of units of a group (``round`` of the mean expected L0 over
the group's masks), each layer choosing its own units by ``log_alpha``; this
is exactly what ``espnet_ext.pruning.prune`` exports. Training samples every
mask freely.
"""

from typing import Dict, List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.subsampling import Conv2dSubsampling

from espnet_ext import flops
from espnet_ext.pruning.hardconcrete import HardConcrete

ENCODER_GROUPS = ("heads", "ffn", "cgmlp", "subsampling")
DECODER_GROUPS = ("heads", "ffn")
L0_CONF_KEYS = ("l0_prune", "l0_init_drop")


class KeptLayerNorm(LayerNorm):
    """ESPnet ``LayerNorm`` over the last dim that only looks at kept channels.

    ``keep`` (bool, (C,)) is set by the mask owner before each forward; None
    means all channels. Dropped channels output 0. Same parameters as the
    stock ``LayerNorm``.
    """

    keep: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = self.keep
        if keep is None or bool(keep.all()):
            return super().forward(x)
        idx = keep.nonzero().squeeze(1)
        out = torch.nn.functional.layer_norm(
            x.index_select(-1, idx), (idx.numel(),), self.weight[idx], self.bias[idx], self.eps
        )
        return x.new_zeros(x.shape).index_copy(-1, idx, out)


class MaskSet(torch.nn.Module):
    """The HardConcrete masks of one encoder/decoder, grouped by structure.

    Args:
        init_drop (float): ``HardConcrete`` initial drop rate.
    """

    def __init__(self, init_drop: float):
        super().__init__()
        self.init_drop = init_drop
        self.masks = torch.nn.ModuleDict()
        self.groups: Dict[str, List[str]] = {}
        self.current: Optional[Dict[str, torch.Tensor]] = None

    def add(self, group: str, key: str, n_units: int) -> None:
        self.masks[key] = HardConcrete(n_units, init_drop=self.init_drop)
        self.groups.setdefault(group, []).append(key)

    def uniform_keep(self) -> Dict[str, int]:
        """Units every layer keeps in eval mode, per group (>= 1)."""
        out = {}
        for group, keys in self.groups.items():
            expected = sum(float(self.masks[k].l0_norm().detach()) for k in keys) / len(keys)
            out[group] = max(1, int(round(expected)))
        return out

    def draw(self) -> Dict[str, torch.Tensor]:
        """Samples (training) or the uniform deterministic masks (eval)."""
        if self.training:
            return {k: m.sample() for k, m in self.masks.items()}
        keep = self.uniform_keep()
        return {
            k: self.masks[k].deterministic(keep[g]) for g, keys in self.groups.items() for k in keys
        }

    floor_mode = False  # True: every mask counts as closed (the reachable minimum)

    def expected_fraction(self, key: str) -> torch.Tensor:
        m = self.masks[key]
        if self.floor_mode:
            return m.log_alpha.new_zeros(())
        return m.l0_norm() / m.n_units


def _scale_input(get):
    def hook(_module, args):
        mask = get()
        if mask is None:
            return None
        return (args[0] * mask,) + tuple(args[1:])

    return hook


def _scale_output(get):
    def hook(_module, _args, out):
        mask = get()
        return out if mask is None else out * mask

    return hook


class _L0Mixin:
    """Hooks a ``MaskSet`` into stock sub-modules."""

    def _init_l0(self, init_drop: float) -> None:
        self.l0_masks = MaskSet(init_drop)

    def _get(self, key: str, expand=None):
        def get():
            cur = self.l0_masks.current
            if cur is None:
                return None
            m = cur[key]
            return expand(m) if expand is not None else m

        return get

    def _mask_heads(self, group: str, key: str, attn: torch.nn.Module) -> None:
        if not isinstance(attn, MultiHeadedAttention):
            raise ValueError(f"heads pruning needs ESPnet's MultiHeadedAttention, got {type(attn).__name__}")
        self.l0_masks.add(group, key, attn.h)
        d_k = attn.d_k
        attn.linear_out.register_forward_pre_hook(
            _scale_input(self._get(key, lambda m: m.repeat_interleave(d_k)))
        )

    def _mask_ffn(self, group: str, key: str, ffn: torch.nn.Module) -> None:
        self.l0_masks.add(group, key, ffn.w_1.out_features)
        ffn.w_2.register_forward_pre_hook(_scale_input(self._get(key)))

    def set_masks(self) -> None:
        """Draws the masks for the next forward (``KeptLayerNorm`` included)."""
        self.l0_masks.current = self.l0_masks.draw()
        self._after_draw(self.l0_masks.current)

    def clear_masks(self) -> None:
        self.l0_masks.current = None
        self._after_draw(None)

    def _after_draw(self, current) -> None:
        pass


def _check_prune(prune: List[str], allowed: Tuple[str, ...], where: str) -> None:
    bad = [p for p in prune if p not in allowed]
    if bad:
        raise ValueError(f"unknown {where} l0_prune entries {bad} (choose from {list(allowed)})")


class EBranchformerL0Encoder(EBranchformerEncoder, _L0Mixin):
    """ESPnet's ``EBranchformerEncoder`` with HardConcrete structure masks.

    Args:
        input_size (int): Input feature size.
        l0_prune (List[str]): Structures to mask, subset of
            ("heads", "ffn", "cgmlp", "subsampling").
        l0_init_drop (float): Initial drop rate of every mask.
        **kwargs: ``EBranchformerEncoder`` arguments.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        l0_prune: List[str] = ["heads", "ffn", "cgmlp"],
        l0_init_drop: float = 0.01,
        **kwargs,
    ):
        super().__init__(input_size, **kwargs)
        _check_prune(l0_prune, ENCODER_GROUPS, "encoder")
        self.l0_prune = list(l0_prune)
        self._init_l0(l0_init_drop)
        self._kept_norms: List[Tuple[str, KeptLayerNorm]] = []
        if "subsampling" in l0_prune:
            if type(self.embed) is not Conv2dSubsampling:
                raise ValueError(
                    f"subsampling pruning needs input_layer: conv2d, got {type(self.embed).__name__}"
                )
            for key, idx in (("sub1", 1), ("sub2", 3)):  # the two ReLUs
                self.l0_masks.add("subsampling", key, self.embed.conv[idx - 1].out_channels)
                self.embed.conv[idx].register_forward_hook(
                    _scale_output(self._get(key, lambda m: m[None, :, None, None]))
                )
        for i, layer in enumerate(self.encoders):
            if "heads" in l0_prune:
                self._mask_heads("heads", f"attn{i}", layer.attn)
            if "ffn" in l0_prune:
                if layer.feed_forward_macaron is not None:
                    self._mask_ffn("ffn", f"ffn1_{i}", layer.feed_forward_macaron)
                if layer.feed_forward is not None:
                    self._mask_ffn("ffn", f"ffn2_{i}", layer.feed_forward)
            if "cgmlp" in l0_prune:
                csgu = layer.cgmlp.csgu
                if csgu.linear is not None:
                    raise ValueError("cgmlp pruning needs use_linear_after_conv: false")
                key = f"cgmlp{i}"
                self.l0_masks.add("cgmlp", key, csgu.conv.in_channels)
                norm = KeptLayerNorm(csgu.norm.weight.numel())
                norm.load_state_dict(csgu.norm.state_dict())
                csgu.norm = norm
                self._kept_norms.append((key, norm))
                layer.cgmlp.channel_proj2.register_forward_pre_hook(_scale_input(self._get(key)))
        if not self.l0_masks.masks:
            raise ValueError("l0_prune is empty: nothing to prune")

    def _after_draw(self, current) -> None:
        for key, norm in self._kept_norms:
            norm.keep = None if current is None else current[key] > 0

    def forward(self, xs_pad: torch.Tensor, ilens: torch.Tensor, *args, **kwargs):
        """``EBranchformerEncoder.forward`` with masks drawn for this batch."""
        self.set_masks()
        try:
            return super().forward(xs_pad, ilens, *args, **kwargs)
        finally:
            self.clear_masks()

    def expected_macs(self, n_input_frames: int, feat_dim: int) -> Tuple[torch.Tensor, float]:
        """Expected and full MACs of one utterance under the current masks.

        Each masked module's MACs are linear in its number of units (attention:
        in its inner size), so its expected MACs are full * E[L0] / n; the
        subsampling's second conv is bilinear in the channels of both convs.

        Args:
            n_input_frames (int): Feature frames before subsampling.
            feat_dim (int): Feature size.

        Returns:
            torch.Tensor: Expected MACs (differentiable scalar).
            float: MACs of the unpruned encoder.
        """
        frac = self.l0_masks.expected_fraction
        have = set(self.l0_masks.masks)
        sub, n_frames = self._subsampling_macs(n_input_frames, feat_dim)
        full = sum(sub.values())
        if "sub1" in have:
            f1, f2 = frac("sub1"), frac("sub2")
            expected = sub["conv1"] * f1 + sub["conv2"] * f1 * f2 + sub["out"] * f2
            expected = expected + sub["other"]
        else:
            expected = torch.tensor(float(full))
        for i, layer in enumerate(self.encoders):
            merge = n_frames * flops.per_position([layer.depthwise_conv_fusion, layer.merge_proj])
            parts = [
                (f"attn{i}", flops.attention(layer.attn, n_frames, n_frames)),
                (f"cgmlp{i}", n_frames * flops.per_position([layer.cgmlp])),
                (f"ffn1_{i}", n_frames * flops.per_position([layer.feed_forward_macaron])),
                (f"ffn2_{i}", n_frames * flops.per_position([layer.feed_forward])),
            ]
            full += merge + sum(c for _, c in parts)
            expected = expected + merge
            for key, cost in parts:
                expected = expected + (cost * frac(key) if key in have else cost)
        return expected, float(full)

    def _subsampling_macs(self, n_input_frames: int, feat_dim: int) -> Tuple[Dict[str, float], int]:
        cache = getattr(self, "_sub_cache", {})
        key = (n_input_frames, feat_dim)
        if key not in cache:
            macs, n_frames = {}, None
            if type(self.embed) is Conv2dSubsampling:
                p = next(self.parameters())
                x = torch.zeros(1, n_input_frames, feat_dim, dtype=p.dtype, device=p.device)
                conv1, conv2, out = self.embed.conv[0], self.embed.conv[2], self.embed.out[0]
                with torch.no_grad():
                    h1 = torch.relu(conv1(x.unsqueeze(1)))
                    n_frames = conv2(h1).size(2)
                macs["conv1"] = float(flops.traced(conv1, x.unsqueeze(1)))
                macs["conv2"] = float(flops.traced(conv2, h1))
                macs["out"] = float(n_frames * out.in_features * out.out_features)
                macs["other"] = 0.0
            else:
                macs["other"] = float(flops.subsampling(self, n_input_frames, feat_dim))
                mask = torch.ones(1, 1, n_input_frames, dtype=torch.bool)
                p = next(self.parameters())
                with torch.no_grad():
                    out = self.embed(torch.zeros(1, n_input_frames, feat_dim, dtype=p.dtype), mask)
                n_frames = (out[0][0] if isinstance(out[0], tuple) else out[0]).size(1)
            cache[key] = (macs, n_frames)
            self._sub_cache = cache
        return cache[key]


class TransformerDecoderL0(TransformerDecoder, _L0Mixin):
    """ESPnet's ``TransformerDecoder`` with HardConcrete structure masks.

    Args:
        vocab_size (int): Output vocabulary size.
        encoder_output_size (int): Encoder output size.
        l0_prune (List[str]): Subset of ("heads", "ffn"); heads covers the
            self- and source attention of every layer.
        l0_init_drop (float): Initial drop rate of every mask.
        **kwargs: ``TransformerDecoder`` arguments.
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        l0_prune: List[str] = ["heads", "ffn"],
        l0_init_drop: float = 0.01,
        **kwargs,
    ):
        super().__init__(vocab_size, encoder_output_size, **kwargs)
        _check_prune(l0_prune, DECODER_GROUPS, "decoder")
        self.l0_prune = list(l0_prune)
        self._init_l0(l0_init_drop)
        for i, layer in enumerate(self.decoders):
            if "heads" in l0_prune:
                self._mask_heads("heads", f"self{i}", layer.self_attn)
                self._mask_heads("heads", f"src{i}", layer.src_attn)
            if "ffn" in l0_prune:
                self._mask_ffn("ffn", f"ffn{i}", layer.feed_forward)
        if not self.l0_masks.masks:
            raise ValueError("l0_prune is empty: nothing to prune")

    def forward(self, *args, **kwargs):
        """``TransformerDecoder.forward`` with masks drawn for this batch."""
        self.set_masks()
        try:
            return super().forward(*args, **kwargs)
        finally:
            self.clear_masks()

    def forward_one_step(self, *args, **kwargs):
        """``TransformerDecoder.forward_one_step`` with the (eval) masks."""
        self.set_masks()
        try:
            return super().forward_one_step(*args, **kwargs)
        finally:
            self.clear_masks()

    def expected_macs(
        self, n_tokens: int, n_memory: int, beam: int = 0
    ) -> Tuple[torch.Tensor, float]:
        """Expected and full MACs of one sequence under the current masks.

        Args:
            n_tokens (int): Decoder positions.
            n_memory (int): Encoder frames.
            beam (int): 0: one teacher-forced pass. > 0: ESPnet's beam search
                with ``beam`` hypotheses over ``n_tokens`` steps, as
                ``espnet_ext.s2t.meter.DecodeMeter`` counts it (every step
                runs one query position against the prefix and recomputes the
                source-attention K/V over all encoder frames).
        """
        frac = self.l0_masks.expected_fraction
        have = set(self.l0_masks.masks)
        names = [("self", 0), ("src", 1), ("ffn", 2)]
        if beam > 0:
            # per step t (prefix t): base + t * per_t, summed over t = 1..n_tokens
            base = flops.decoder_units(self, 1, 0, n_memory)
            per_t = flops.decoder_units(self, 1, 1, n_memory) - base
            costs = beam * (n_tokens * base + per_t * n_tokens * (n_tokens + 1) / 2)
            n_out = beam * n_tokens
        else:
            costs = flops.decoder_units(self, n_tokens, n_tokens, n_memory)
            n_out = n_tokens
        full = 0.0
        if self.output_layer is not None:
            full += n_out * self.output_layer.in_features * self.output_layer.out_features
        expected = torch.tensor(full)
        for i in range(len(self.decoders)):
            for name, col in names:
                key, cost = f"{name}{i}", float(costs[i, col])
                full += cost
                expected = expected + (cost * frac(key) if key in have else cost)
        return expected, float(full)


def l0_modules(model: torch.nn.Module) -> List[_L0Mixin]:
    """The masked encoder/decoder inside ``model``."""
    return [m for m in (getattr(model, "encoder", None), getattr(model, "decoder", None))
            if isinstance(m, _L0Mixin)]
