"""E-Branchformer encoder with context-aware dynamic gates.

Reference: Someki et al., "Context-aware Dynamic Pruning for Speech Foundation
Models", ICLR 2025. Registered as ``encoder: e_branchformer_token_condition``.

Same parameters (and names) as ESPnet's ``EBranchformerEncoder`` plus
``gate_predictor.*``. Per layer, up to 4 gated units: the macaron FFN
(``ffn1``), the self-attention branch (``attn``), the cgMLP branch (``cgmlp``)
and the second FFN (``ffn2``). A closed branch contributes zeros to the merge;
if both branches are closed the merge is skipped too. The subsampling and the
final norms are never gated.
"""

from functools import partial
from typing import List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.e_branchformer_encoder import (
    EBranchformerEncoder,
    EBranchformerEncoderLayer,
)
from espnet2.asr.layers.fastformer import FastSelfAttention
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.subsampling import (
    Conv1dSubsampling1,
    Conv1dSubsampling2,
    Conv1dSubsampling3,
    Conv2dSubsampling,
    Conv2dSubsampling1,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
    TooShortUttError,
    check_short_utt,
)

from espnet_ext import flops
from espnet_ext.gating import (
    GateContext,
    GatedModule,
    GateOptions,
    GateRecord,
    gated_branch,
    gated_residual,
)
from espnet_ext.nets import with_stock_arguments

SUBSAMPLING = (
    Conv1dSubsampling1,
    Conv1dSubsampling2,
    Conv1dSubsampling3,
    Conv2dSubsampling,
    Conv2dSubsampling1,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
)


def _attn(layer: EBranchformerEncoderLayer, pos_emb, x, mask):
    x = layer.norm_mha(x)
    if isinstance(layer.attn, FastSelfAttention):
        out = layer.attn(x, mask)
    elif pos_emb is not None:
        out = layer.attn(x, x, x, pos_emb, mask)
    else:
        out = layer.attn(x, x, x, mask)
    return layer.dropout(out)


def _cgmlp(layer: EBranchformerEncoderLayer, pos_emb, x, mask):
    x = layer.norm_mlp(x)
    out = layer.cgmlp((x, pos_emb) if pos_emb is not None else x, mask)
    return layer.dropout(out[0] if isinstance(out, tuple) else out)


def _merge(layer: EBranchformerEncoderLayer, _x, x1, x2):
    xc = torch.cat([x1, x2], dim=-1)
    xc = xc + layer.depthwise_conv_fusion(xc.transpose(1, 2)).transpose(1, 2)
    return layer.dropout(layer.merge_proj(xc))


def _ffn(layer: EBranchformerEncoderLayer, macaron: bool, x):
    if macaron:
        return layer.dropout(layer.feed_forward_macaron(layer.norm_ff_macaron(x)))
    return layer.dropout(layer.feed_forward(layer.norm_ff(x)))


@with_stock_arguments(EBranchformerEncoder)
class EBranchformerTokenConditionEncoder(EBranchformerEncoder, GatedModule):
    """E-Branchformer encoder whose sub-modules are switched per utterance.

    Args:
        input_size (int): Input feature size.
        gate_context (List[str]): Context of the gate predictor, subset of
            ("lang", "task", "spk", "event").
        context_vocab_size (int): Token vocabulary size, required for
            lang/task context (the size of the model's token list).
        context_dim (int): Size of each context embedding.
        spk_embed_dim (int): Speaker embedding size (for "spk").
        event_embed_dim (int): Acoustic-event embedding size (for "event").
        gate_pooling (str): "mean" or "attention" pooling of x_GP (the
            subsampled input) over valid frames.
        gate_hidden_units (int): 0 = linear gate predictor, else MLP hidden size.
        gate_init_bias (float): Initial logit margin towards "open".
        fixed_gates (List[List[int]]): (layers, units) 0/1 gates of a
            statically pruned model (``espnet_ext.bin.export``): no gate
            predictor, and the closed units' modules do not exist.
        **kwargs: ``EBranchformerEncoder`` arguments.
    """

    side = "encoder"

    @typechecked
    def __init__(
        self,
        input_size: int,
        gate_context: List[str] = ["lang", "task"],
        context_vocab_size: Optional[int] = None,
        context_dim: int = 64,
        spk_embed_dim: Optional[int] = None,
        event_embed_dim: Optional[int] = None,
        gate_pooling: str = "mean",
        gate_hidden_units: int = 0,
        gate_init_bias: float = 3.0,
        fixed_gates: Optional[List[List[int]]] = None,
        **kwargs,
    ):
        super().__init__(input_size, **kwargs)
        first = self.encoders[0]
        self.unit_names = tuple(
            name
            for name, present in [
                ("ffn1", first.feed_forward_macaron is not None),
                ("attn", True),
                ("cgmlp", True),
                ("ffn2", first.feed_forward is not None),
            ]
            if present
        )
        self.init_gates(
            self.output_size(),
            len(self.encoders),
            GateOptions(gate_context=list(gate_context), context_vocab_size=context_vocab_size,
                        context_dim=context_dim, spk_embed_dim=spk_embed_dim,
                        event_embed_dim=event_embed_dim, gate_pooling=gate_pooling,
                        gate_hidden_units=gate_hidden_units, gate_init_bias=gate_init_bias),
            fixed_gates=fixed_gates,
        )
        if fixed_gates is not None:
            self.remove_closed_units()

    def unit_costs(self, n_frames: int, n_tokens: int = 1) -> torch.Tensor:
        """MACs of each unit for one utterance of ``n_frames`` (after subsampling)."""
        return flops.encoder_units(self, n_frames)

    def remove_closed_units(self) -> None:
        """Deletes the sub-modules that the fixed gates close (static export)."""
        modules = {
            "ffn1": ("feed_forward_macaron", "norm_ff_macaron"),
            "attn": ("attn", "norm_mha"),
            "cgmlp": ("cgmlp", "norm_mlp"),
            "ffn2": ("feed_forward", "norm_ff"),
            "merge": ("depthwise_conv_fusion", "merge_proj"),
        }
        for layer, gates in zip(self.encoders, self.fixed_gates[0]):
            g = dict(zip(self.unit_names, gates.tolist()))
            closed = [u for u, v in g.items() if v == 0]
            if "attn" in closed and "cgmlp" in closed:
                closed.append("merge")
            for unit in closed:
                for name in modules[unit]:
                    setattr(layer, name, None)

    def _embed(self, xs_pad: torch.Tensor, masks: torch.Tensor):
        if isinstance(self.embed, SUBSAMPLING):
            short, limit = check_short_utt(self.embed, xs_pad.size(1))
            if short:
                raise TooShortUttError(
                    f"has {xs_pad.size(1)} frames and is too short for subsampling "
                    + f"(it needs more than {limit} frames), return empty results",
                    xs_pad.size(1),
                    limit,
                )
            if 0 in self.gradient_checkpoint_layers:
                return torch.utils.checkpoint.checkpoint(
                    self.embed, xs_pad, masks, use_reentrant=False
                )
            return self.embed(xs_pad, masks)
        if self.embed is not None:
            if 0 in self.gradient_checkpoint_layers:
                xs_pad = torch.utils.checkpoint.checkpoint(
                    self.embed, xs_pad, use_reentrant=False
                )
            else:
                xs_pad = self.embed(xs_pad)
        return xs_pad, masks

    def layer_forward(
        self,
        layer: EBranchformerEncoderLayer,
        x_input,
        mask: torch.Tensor,
        gates: torch.Tensor,
    ):
        """One E-Branchformer layer with its units gated.

        Args:
            layer (EBranchformerEncoderLayer): The stock layer (its modules are used).
            x_input: (#batch, T, D) tensor, or (tensor, pos_emb) for rel-pos.
            mask (torch.Tensor): (#batch, 1, T) valid frames.
            gates (torch.Tensor): (#batch, units) gates of this layer.

        Returns:
            Same structure as x_input, and the mask.
        """
        x, pos_emb = x_input if isinstance(x_input, tuple) else (x_input, None)
        g = dict(zip(self.unit_names, gates.unbind(-1)))
        if "ffn1" in g:
            x = gated_residual(
                x, g["ffn1"], partial(_ffn, layer, True), scale=layer.ff_scale
            )
        x1 = gated_branch(g["attn"], partial(_attn, layer, pos_emb), x, mask)
        x2 = gated_branch(g["cgmlp"], partial(_cgmlp, layer, pos_emb), x, mask)
        if x1 is not None or x2 is not None:
            x1 = torch.zeros_like(x2) if x1 is None else x1
            x2 = torch.zeros_like(x1) if x2 is None else x2
            g_merge = 1.0 - (1.0 - g["attn"]) * (1.0 - g["cgmlp"])
            x = gated_residual(x, g_merge, partial(_merge, layer), x1, x2)
        if "ffn2" in g:
            x = gated_residual(
                x, g["ffn2"], partial(_ffn, layer, False), scale=layer.ff_scale
            )
        x = layer.norm_final(x)
        return ((x, pos_emb) if pos_emb is not None else x), mask

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        masks: torch.Tensor = None,
        ctc: CTC = None,
        max_layer: int = None,
        return_all_hs: bool = False,
        context: Optional[GateContext] = None,
        record: Optional[GateRecord] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Encode with gates predicted from the subsampled input and the context.

        Args:
            xs_pad (torch.Tensor): Input tensor (#batch, L, input_size).
            ilens (torch.Tensor): Input lengths (#batch).
            prev_states (torch.Tensor): Not used.
            masks (torch.Tensor): Optional padding mask (#batch, L), True = pad.
            ctc (CTC): Intermediate CTC module (self-conditioning).
            max_layer (int): Run layers below this index only.
            return_all_hs (bool): Also return every layer's output.
            context (GateContext): The batch's gate context.
            record (GateRecord): Receives the gate decisions.

        Returns:
            torch.Tensor: Output (#batch, L', output_size) (or with intermediates).
            torch.Tensor: Output lengths (#batch).
            None
        """
        if masks is None:
            masks = (~make_pad_mask(ilens)[:, None, :]).to(xs_pad.device)
        else:
            masks = ~masks[:, None, :]
        xs_pad, masks = self._embed(xs_pad, masks)
        x_gp = xs_pad[0] if isinstance(xs_pad, tuple) else xs_pad
        gates = self.compute_gates(x_gp, masks.squeeze(1), context, record)

        intermediate_outs = []
        for layer_idx, layer in enumerate(self.encoders):
            if max_layer is not None and layer_idx >= max_layer:
                break
            if self.training and torch.empty(1).uniform_().item() < self.layer_drop_rate:
                continue
            args = (layer, xs_pad, masks, gates[:, layer_idx])
            if layer_idx + 1 in self.gradient_checkpoint_layers:
                xs_pad, masks = torch.utils.checkpoint.checkpoint(
                    self.layer_forward, *args, use_reentrant=False
                )
            else:
                xs_pad, masks = self.layer_forward(*args)

            if return_all_hs:
                intermediate_outs.append(xs_pad[0] if isinstance(xs_pad, tuple) else xs_pad)
            elif layer_idx + 1 in self.interctc_layer_idx:
                out = xs_pad[0] if isinstance(xs_pad, tuple) else xs_pad
                intermediate_outs.append((layer_idx + 1, out))
                if self.interctc_use_conditioning:
                    cond = self.conditioning_layer(ctc.softmax(out))
                    if isinstance(xs_pad, tuple):
                        xs_pad = (xs_pad[0] + cond,) + tuple(xs_pad[1:])
                    else:
                        xs_pad = xs_pad + cond

        if isinstance(xs_pad, tuple):
            xs_pad = xs_pad[0]
        xs_pad = self.after_norm(xs_pad)
        olens = masks.squeeze(1).sum(1)
        if len(intermediate_outs) > 0:
            return (xs_pad, intermediate_outs), olens, None
        return xs_pad, olens, None
