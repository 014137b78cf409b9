"""Transformer encoder with input-dependent (and context-aware) dynamic depth.

References: Peng et al., "I3D: Transformer architectures with input-dependent
dynamic depth for speech recognition", ICASSP 2023 (arXiv 2303.07624);
Someki et al., ICLR 2025 (context). Registered as
``encoder: transformer_token_condition``.

Same parameters (and names) as ESPnet's ``TransformerEncoder`` plus the gate
predictor(s). Per layer, two gated units: the self-attention block (``attn``)
and the feed-forward block (``ffn``). A closed unit is the identity on the
residual stream (with ``normalize_before: false`` its post-norm is skipped
too). The input layer and ``after_norm`` are never gated.

Two gate predictors, as in I3D:

- ``global``: one predictor reads the pooled encoder input (after
  subsampling) once and predicts the gates of every layer
  (``gate_predictor.*``, the ``GatePredictor`` of the E-Branchformer).
- ``local``: layer l has its own predictor, which reads the pooled input of
  layer l and predicts that layer's two gates
  (``gate_predictor.layers.<l>.*``). The decisions of a layer depend on what
  the earlier layers did for this utterance.

Both take the same optional context (speaker/event embeddings; lang/task
tokens for S2T) and use the same straight-through Gumbel gates.
"""

from functools import partial
from typing import List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.encoder_layer import EncoderLayer
from espnet.nets.pytorch_backend.transformer.subsampling import (
    Conv1dSubsampling2,
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
    GatePredictor,
    GateRecord,
    gated_residual,
)
from espnet_ext.nets import with_stock_arguments

GATE_PREDICTORS = ("global", "local")
SUBSAMPLING = (
    Conv1dSubsampling2,
    Conv2dSubsampling,
    Conv2dSubsampling1,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
)


class LocalGatePredictor(torch.nn.Module):
    """I3D's local gate predictors: one ``GatePredictor`` per layer.

    Args:
        input_size (int): Feature size D of each layer's input.
        num_layers (int): Layers (one predictor each).
        num_units (int): Gated units per layer.
        options (GateOptions): The predictors' options (context, pooling, ...).
    """

    def __init__(self, input_size: int, num_layers: int, num_units: int, options: GateOptions):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            GatePredictor(input_size, num_units, options) for _ in range(num_layers)
        )

    @property
    def context(self):
        """The context embedding of the first layer (all layers take the same sources)."""
        return self.layers[0].context

    def forward(
        self,
        layer: int,
        xs: torch.Tensor,
        mask: torch.Tensor,
        context: Optional[GateContext],
        tau: float = 1.0,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Gates (#batch, units) and open-probabilities of layer ``layer``."""
        return self.layers[layer](xs, mask, context, tau)


def transformer_unit_costs(encoder: TransformerEncoder, n_frames: int) -> torch.Tensor:
    """MACs of the (attn, ffn) units of every layer of a (gated or stock)
    Transformer encoder for one utterance of ``n_frames`` (after subsampling).

    Returns:
        torch.Tensor: (layers, 2) MACs, float64.
    """
    rows = []
    for layer in encoder.encoders:
        attn = flops.attention(layer.self_attn, n_frames, n_frames)
        if layer.concat_after:
            attn += n_frames * flops.per_position([layer.concat_linear])
        rows.append([attn, n_frames * flops.per_position([layer.feed_forward])])
    return torch.tensor(rows, dtype=torch.float64)


def _attn(layer: EncoderLayer, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The self-attention block's change to the residual stream."""
    if not layer.normalize_before:  # post-norm: LN(x + att(x)) - x
        out = layer.self_attn(x, x, x, mask)
        if layer.concat_after:
            y = x + layer.concat_linear(torch.cat((x, out), dim=-1))
        else:
            y = x + layer.dropout(out)
        return layer.norm1(y) - x
    h = layer.norm1(x)
    out = layer.self_attn(h, h, h, mask)
    if layer.concat_after:
        return layer.concat_linear(torch.cat((h, out), dim=-1))
    return layer.dropout(out)


def _ffn(layer: EncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """The feed-forward block's change to the residual stream."""
    if not layer.normalize_before:
        return layer.norm2(x + layer.dropout(layer.feed_forward(x))) - x
    return layer.dropout(layer.feed_forward(layer.norm2(x)))


@with_stock_arguments(TransformerEncoder)
class TransformerTokenConditionEncoder(TransformerEncoder, GatedModule):
    """Transformer encoder whose attention and FFN blocks are switched per utterance.

    Args:
        input_size (int): Input feature size.
        gate_predictor (str): "global" (one predictor on the encoder input)
            or "local" (one predictor per layer on the layer's input), I3D.
        gate_context (List[str]): Context of the gate predictor(s), subset of
            ("lang", "task", "spk", "event"); empty (default) = the input only.
        context_vocab_size (int): Token vocabulary size, for lang/task context.
        context_dim (int): Size of each context embedding.
        spk_embed_dim (int): Speaker embedding size (for "spk").
        event_embed_dim (int): Acoustic-event embedding size (for "event").
        gate_pooling (str): "mean" or "attention" pooling over valid frames.
        gate_hidden_units (int): 0 = linear gate predictor, else MLP hidden size.
        gate_init_bias (float): Initial logit margin towards "open".
        fixed_gates (List[List[int]]): (layers, 2) 0/1 gates of a statically
            pruned (or a pre-trained, all-open) model: no gate predictor, and
            the closed units' modules do not exist.
        **kwargs: ``TransformerEncoder`` arguments.
    """

    unit_names = ("attn", "ffn")
    side = "encoder"

    @typechecked
    def __init__(
        self,
        input_size: int,
        gate_predictor: str = "global",
        gate_context: List[str] = [],
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
        if gate_predictor not in GATE_PREDICTORS:
            raise ValueError(
                f"unknown gate_predictor: {gate_predictor} (choose from {GATE_PREDICTORS})"
            )
        super().__init__(input_size, **kwargs)
        options = GateOptions(
            gate_context=list(gate_context), context_vocab_size=context_vocab_size,
            context_dim=context_dim, spk_embed_dim=spk_embed_dim, event_embed_dim=event_embed_dim,
            gate_pooling=gate_pooling, gate_hidden_units=gate_hidden_units,
            gate_init_bias=gate_init_bias)
        self.gate_predictor_type = gate_predictor
        # init_gates builds the global predictor (and the gate state of the mixin);
        # I3D's local predictors replace it under the same name (gate_predictor.*).
        self.init_gates(self.output_size(), len(self.encoders), options, fixed_gates=fixed_gates)
        if fixed_gates is not None:
            self.remove_closed_units()
        elif gate_predictor == "local":
            self.gate_predictor = LocalGatePredictor(
                self.output_size(), len(self.encoders), len(self.unit_names), options
            )

    def remove_closed_units(self) -> None:
        """Deletes the sub-modules that the fixed gates close (static export)."""
        modules = {"attn": ("self_attn", "norm1"), "ffn": ("feed_forward", "norm2")}
        for layer, gates in zip(self.encoders, self.fixed_gates[0]):
            for unit, value in zip(self.unit_names, gates.tolist()):
                if value == 0:
                    for name in modules[unit]:
                        setattr(layer, name, None)

    def unit_costs(self, n_frames: int, n_tokens: int = 1) -> torch.Tensor:
        """MACs of each gated unit for one utterance of ``n_frames`` (after subsampling).

        Returns:
            torch.Tensor: (layers, units) MACs, float64.
        """
        return transformer_unit_costs(self, n_frames)

    def _embed(self, xs_pad: torch.Tensor, masks: torch.Tensor):
        if self.embed is None:
            return xs_pad, masks
        if isinstance(self.embed, SUBSAMPLING):
            short, limit = check_short_utt(self.embed, xs_pad.size(1))
            if short:
                raise TooShortUttError(
                    f"has {xs_pad.size(1)} frames and is too short for subsampling "
                    + f"(it needs more than {limit} frames), return empty results",
                    xs_pad.size(1),
                    limit,
                )
            return self.embed(xs_pad, masks)
        return self.embed(xs_pad), masks

    def _local_gates(
        self, layer_idx: int, xs: torch.Tensor, mask: torch.Tensor, context: Optional[GateContext]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(#batch, units) gates and open-probabilities of one layer (local predictors)."""
        return self.gate_predictor(layer_idx, xs, mask, context, self.tau)

    def layer_forward(
        self, layer: EncoderLayer, x: torch.Tensor, mask: torch.Tensor, gates: torch.Tensor
    ) -> torch.Tensor:
        """One Transformer layer with its attention and FFN blocks gated.

        Args:
            layer (EncoderLayer): The stock layer (its modules are used).
            x (torch.Tensor): Input (#batch, T, D).
            mask (torch.Tensor): (#batch, 1, T) valid frames.
            gates (torch.Tensor): (#batch, 2) gates of (attn, ffn).

        Returns:
            torch.Tensor: Output (#batch, T, D).
        """
        x = gated_residual(x, gates[:, 0], partial(_attn, layer), mask)
        return gated_residual(x, gates[:, 1], partial(_ffn, layer))

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        masks: torch.Tensor = None,
        ctc: CTC = None,
        return_all_hs: bool = False,
        context: Optional[GateContext] = None,
        record: Optional[GateRecord] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Encode with gated layers.

        Args:
            xs_pad (torch.Tensor): Input tensor (#batch, L, input_size).
            ilens (torch.Tensor): Input lengths (#batch).
            prev_states (torch.Tensor): Not used.
            masks (torch.Tensor): Optional padding mask (#batch, L), True = pad.
            ctc (CTC): Intermediate CTC module (self-conditioning).
            return_all_hs (bool): Also return every layer's output.
            context (GateContext): The batch's gate context (None when the
                gates use no context).
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
        valid = masks.squeeze(1)
        local = self.gate_predictor_type == "local" and self.fixed_gates is None
        if not local:
            gates = self.compute_gates(xs_pad, valid, context, record)
        layer_gates, layer_probs = [], []

        intermediate_outs = []
        for layer_idx, layer in enumerate(self.encoders):
            if local:
                g, p = self._local_gates(layer_idx, xs_pad, valid, context)
                layer_gates.append(g)
                layer_probs.append(p)
            else:
                g = gates[:, layer_idx]
            xs_pad = self.layer_forward(layer, xs_pad, masks, g)
            if return_all_hs:
                intermediate_outs.append(xs_pad)
            elif layer_idx + 1 in self.interctc_layer_idx:
                out = self.after_norm(xs_pad) if self.normalize_before else xs_pad
                intermediate_outs.append((layer_idx + 1, out))
                if self.interctc_use_conditioning:
                    xs_pad = xs_pad + self.conditioning_layer(ctc.softmax(out))
        if local and record is not None:
            record.put(self.side, torch.stack(layer_gates, dim=1), torch.stack(layer_probs, dim=1))

        if self.normalize_before:
            xs_pad = self.after_norm(xs_pad)
        olens = valid.sum(1)
        if len(intermediate_outs) > 0:
            return (xs_pad, intermediate_outs), olens, None
        return xs_pad, olens, None
