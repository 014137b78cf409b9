"""Transformer decoder with context-aware dynamic gates.

Reference: Someki et al., "Context-aware Dynamic Pruning for Speech Foundation
Models", ICLR 2025. Registered as ``decoder: transformer_decoder_token_condition``.

Same parameters (and names) as ESPnet's ``TransformerDecoder`` plus
``gate_predictor.*``. Per layer, 3 gated units: self-attention, source
attention and FFN; a closed unit is the identity on the residual stream. The
gates are predicted from the pooled encoder output and the context, once per
utterance; in incremental decoding every layer, open or not, still appends its
output to the cache, so ESPnet's (Batch)BeamSearch works unchanged. In a beam
search the decoder runs as ``GatedScorer``: the scorer of one utterance, which
carries its gate context, computes its gates (and source keys/values) once and
records them.
"""

import math
from contextlib import contextmanager
from functools import partial
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch
from typeguard import typechecked

from espnet2.asr.decoder.transformer_decoder import BaseTransformerDecoder, TransformerDecoder
from espnet.nets.scorer_interface import BatchScorerInterface
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.decoder_layer import DecoderLayer
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask

from espnet_ext import flops
from espnet_ext.gating import (
    GateContext,
    GatedModule,
    GateOptions,
    GateRecord,
    gated_residual,
    row_plan,
)
from espnet_ext.nets import with_stock_arguments


def _self_attn(layer: DecoderLayer, last_only: bool, x, kv, mask):
    kv = layer.norm1(kv)
    q = kv[:, -1:] if last_only else kv
    return layer.dropout(layer.self_attn(q, kv, kv, mask))


def _src_attn(layer: DecoderLayer, x, memory, memory_mask):
    return layer.dropout(layer.src_attn(layer.norm2(x), memory, memory, memory_mask))


def attend(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask) -> torch.Tensor:
    """``MultiHeadedAttention.forward`` from projected queries, keys and values.

    Args:
        attn: The ESPnet ``MultiHeadedAttention`` (its output projection,
            sdpa setting and ``forward_attention`` are used).
        q (torch.Tensor): (#batch, H, L_q, d_k) normalised queries.
        k, v (torch.Tensor): (#batch, H, L_k, d_k) keys (normalised) and values.
        mask (torch.Tensor): (#batch, 1 or L_q, L_k) or None.

    Returns:
        torch.Tensor: (#batch, L_q, D).
    """
    n = q.size(0)
    if getattr(attn, "use_sdpa", False):
        out = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, mask.unsqueeze(1) if mask is not None else None
        )
        return attn.linear_out(out.transpose(1, 2).reshape(n, -1, attn.h * attn.d_k))
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(attn.d_k)
    return attn.forward_attention(v, scores, mask)


def memory_kv(attn, memory: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Source-attention keys (normalised) and values of ``memory`` (#utt, T, D), (#utt, H, T, d_k) each."""
    n = memory.size(0)
    k = attn.linear_k(memory).view(n, -1, attn.h, attn.d_k).transpose(1, 2)
    v = attn.linear_v(memory).view(n, -1, attn.h, attn.d_k).transpose(1, 2)
    return attn.k_norm(k), v


def src_attn_cached(layer: DecoderLayer, kv, x, rows, memory_mask):
    """Source attention against precomputed keys/values (``memory_kv``) of the encoder memory.

    ``rows`` (#batch,): the utterance of each row of ``x`` in ``kv`` (None:
    one utterance, or one per row).
    """
    attn = layer.src_attn
    k, v = kv
    if rows is not None:
        k, v = k[rows], v[rows]
    elif k.size(0) != x.size(0):
        k, v = k.expand(x.size(0), -1, -1, -1), v.expand(x.size(0), -1, -1, -1)
    n = x.size(0)
    q = attn.linear_q(layer.norm2(x)).view(n, -1, attn.h, attn.d_k).transpose(1, 2)
    return layer.dropout(attend(attn, attn.q_norm(q), k, v, memory_mask))


def ffn(layer: DecoderLayer, x):
    return layer.dropout(layer.feed_forward(layer.norm3(x)))


@with_stock_arguments(TransformerDecoder)
class TransformerDecoderTokenCondition(TransformerDecoder, GatedModule):
    """Transformer decoder whose sub-modules are switched per utterance.

    Args:
        vocab_size (int): Output vocabulary size (also the context token table).
        encoder_output_size (int): Encoder output (and decoder) size.
        gate_context (List[str]): Context of the gate predictor, subset of
            ("lang", "task", "spk", "event").
        context_dim (int): Size of each context embedding.
        spk_embed_dim (int): Speaker embedding size (for "spk").
        event_embed_dim (int): Acoustic-event embedding size (for "event").
        gate_pooling (str): "mean" or "attention" pooling of the encoder output.
        gate_hidden_units (int): 0 = linear gate predictor, else MLP hidden size.
        gate_init_bias (float): Initial logit margin towards "open".
        fixed_gates (List[List[int]]): (layers, 3) 0/1 gates of a statically
            pruned model (``espnet_ext.bin.export``): no gate predictor, and
            the closed units' modules do not exist.
        **kwargs: ``TransformerDecoder`` arguments.
    """

    unit_names = ("self_attn", "src_attn", "ffn")
    side = "decoder"
    # a GatedScorer computes the source keys/values once per utterance
    cache_src_kv = True

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        gate_context: List[str] = ["lang", "task"],
        context_dim: int = 64,
        spk_embed_dim: Optional[int] = None,
        event_embed_dim: Optional[int] = None,
        gate_pooling: str = "mean",
        gate_hidden_units: int = 0,
        gate_init_bias: float = 3.0,
        fixed_gates: Optional[List[List[int]]] = None,
        **kwargs,
    ):
        super().__init__(vocab_size, encoder_output_size, **kwargs)
        if not self.normalize_before or kwargs.get("concat_after", False):
            raise ValueError(
                "transformer_decoder_token_condition supports normalize_before=true "
                "and concat_after=false only (as in OWSM)"
            )
        self.init_gates(
            encoder_output_size,
            len(self.decoders),
            # the context token table is the decoder's own vocabulary
            GateOptions(gate_context=list(gate_context), context_vocab_size=vocab_size,
                        context_dim=context_dim, spk_embed_dim=spk_embed_dim,
                        event_embed_dim=event_embed_dim, gate_pooling=gate_pooling,
                        gate_hidden_units=gate_hidden_units, gate_init_bias=gate_init_bias),
            fixed_gates=fixed_gates,
        )
        if fixed_gates is not None:
            self.remove_closed_units()

    def unit_costs(self, n_frames: int, n_tokens: int = 1) -> torch.Tensor:
        """MACs of each unit for ``n_tokens`` teacher-forced tokens over ``n_frames`` frames."""
        return flops.decoder_units(self, n_tokens, n_tokens, n_frames)

    def remove_closed_units(self) -> None:
        """Deletes the sub-modules that the fixed gates close (static export)."""
        modules = {
            "self_attn": ("self_attn", "norm1"),
            "src_attn": ("src_attn", "norm2"),
            "ffn": ("feed_forward", "norm3"),
        }
        for layer, gates in zip(self.decoders, self.fixed_gates[0]):
            for unit, value in zip(self.unit_names, gates.tolist()):
                if value == 0:
                    for name in modules[unit]:
                        setattr(layer, name, None)

    def layer_forward(
        self,
        layer: DecoderLayer,
        x: torch.Tensor,
        tgt_mask: Optional[torch.Tensor],
        memory: torch.Tensor,
        memory_mask: Optional[torch.Tensor],
        gates: Union[torch.Tensor, Sequence[Union[bool, torch.Tensor]]],
        cache: Optional[torch.Tensor] = None,
        src_kv: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """One decoder layer with its units gated.

        Args:
            layer (DecoderLayer): The stock layer (its modules are used).
            x (torch.Tensor): Input (#batch, L, D).
            tgt_mask (torch.Tensor): (#batch or 1, L, L) causal mask.
            memory (torch.Tensor): Encoder output (#batch, T, D).
            memory_mask (torch.Tensor): (#batch, 1, T) or None.
            gates: (#batch, 3) gates of this layer, or its ``row_plan`` row.
            cache (torch.Tensor): (#batch, L-1, D) this layer's previous
                outputs; then only the last position is computed.
            src_kv (Tuple[torch.Tensor, torch.Tensor]): Source-attention keys
                and values of the memory, (1 or #batch, H, T, d_k) each (see
                ``source_kv``); then ``memory`` is not read.

        Returns:
            torch.Tensor: Output (#batch, L, D).
        """
        g_self, g_src, g_ffn = gates.unbind(-1) if isinstance(gates, torch.Tensor) else gates
        if cache is None:
            h, q_mask = x, tgt_mask
        else:
            h = x[:, -1:]
            q_mask = None if tgt_mask is None else tgt_mask[:, -1:, :]
        h = gated_residual(
            h, g_self, partial(_self_attn, layer, cache is not None), x, q_mask
        )
        if src_kv is None:
            h = gated_residual(h, g_src, partial(_src_attn, layer), memory, memory_mask)
        else:
            src = partial(src_attn_cached, layer, src_kv)
            h = gated_residual(h, g_src, src, None, memory_mask)
        h = gated_residual(h, g_ffn, partial(ffn, layer))
        if cache is not None:
            h = torch.cat([cache, h], dim=1)
        return h

    def gates(
        self,
        memory: torch.Tensor,
        memory_mask: Optional[torch.Tensor],
        context: Optional[GateContext],
        record: Optional[GateRecord] = None,
    ) -> torch.Tensor:
        """(#batch, layers, 3) gates from the encoder output and the context.

        Args:
            memory (torch.Tensor): Encoder output (#batch, T, D).
            memory_mask (torch.Tensor): (#batch, 1, T) valid frames, or None (all).
            context (GateContext): The batch's gate context.
            record (GateRecord): Receives the decisions.
        """
        valid = (
            memory_mask.squeeze(1)
            if memory_mask is not None
            else memory.new_ones(memory.shape[:2], dtype=torch.bool)
        )
        return self.compute_gates(memory, valid, context, record)

    def source_kv(
        self, memory: torch.Tensor, gates: Optional[torch.Tensor] = None
    ) -> Optional[List[Optional[Tuple[torch.Tensor, torch.Tensor]]]]:
        """Source-attention keys/values of the memory, once per utterance.

        ESPnet's decoder projects the whole encoder output to keys and values
        at every decoding step; they only depend on the memory, so incremental
        decoding computes them once (``layer_forward(src_kv=...)``).

        Args:
            memory (torch.Tensor): Encoder output (#utt, T, D).
            gates (torch.Tensor): (#utt, layers, 3) gates; layers whose source
                attention is closed for every utterance get None.

        Returns:
            Per layer (k, v), each (#utt, H, T, d_k), or None; None overall if
            an attention module cannot use them (flash attention).
        """
        out = []
        for i, layer in enumerate(self.decoders):
            attn = layer.src_attn
            if attn is None or (gates is not None and not bool((gates[:, i, 1] > 0.5).any())):
                out.append(None)
                continue
            if getattr(attn, "use_flash_attn", False):
                return None
            out.append(memory_kv(attn, memory))
        return out

    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        return_hs: bool = False,
        return_all_hs: bool = False,
        context: Optional[GateContext] = None,
        record: Optional[GateRecord] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced decoding with gates.

        Args:
            hs_pad (torch.Tensor): Encoder output (#batch, T, D).
            hlens (torch.Tensor): (#batch) encoder output lengths.
            ys_in_pad (torch.Tensor): (#batch, L) input token ids.
            ys_in_lens (torch.Tensor): (#batch) token lengths.
            return_hs (bool): Also return the last hidden states.
            return_all_hs (bool): Also return every layer's output.
            context (GateContext): The batch's gate context.
            record (GateRecord): Receives the gate decisions.

        Returns:
            torch.Tensor: Logits (#batch, L, vocab) (or with hidden states).
            torch.Tensor: (#batch,) output lengths.
        """
        tgt_mask = (~make_pad_mask(ys_in_lens)[:, None, :]).to(ys_in_pad.device)
        m = subsequent_mask(tgt_mask.size(-1), device=tgt_mask.device).unsqueeze(0)
        tgt_mask = tgt_mask & m
        memory = hs_pad
        memory_mask = (~make_pad_mask(hlens, maxlen=memory.size(1)))[:, None, :].to(
            memory.device
        )
        gates = self.gates(memory, memory_mask, context, record)

        x = self.embed(ys_in_pad)
        intermediate_outs = []
        for i, layer in enumerate(self.decoders):
            args = (layer, x, tgt_mask, memory, memory_mask, gates[:, i])
            if i + 1 in self.gradient_checkpoint_layers:
                x = torch.utils.checkpoint.checkpoint(
                    self.layer_forward, *args, use_reentrant=False
                )
            else:
                x = self.layer_forward(*args)
            if return_all_hs:
                intermediate_outs.append(x)
        x = self.after_norm(x)
        hidden = x
        if self.output_layer is not None:
            x = self.output_layer(x)
        olens = tgt_mask.sum(1)
        if return_hs:
            return (x, hidden), olens
        if return_all_hs:
            return (x, intermediate_outs), olens
        return x, olens

    def forward_one_step(
        self,
        tgt: torch.Tensor,
        tgt_mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor = None,
        *,
        cache: List[torch.Tensor] = None,
        return_hs: bool = False,
        context: Optional[GateContext] = None,
        gates: Optional[torch.Tensor] = None,
        src_kv: Optional[List[Optional[Tuple[torch.Tensor, torch.Tensor]]]] = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """One incremental step (used by ``score`` and ``batch_score``).

        Args:
            tgt (torch.Tensor): (#batch, L) token ids so far.
            tgt_mask (torch.Tensor): (#batch or 1, L, L) causal mask.
            memory (torch.Tensor): Encoder output (#batch, T, D).
            memory_mask (torch.Tensor): (#batch, 1, T) or None.
            cache (List[torch.Tensor]): Per layer (#batch, L-1, D).
            return_hs (bool): Also return the last hidden state.
            context (GateContext): Gate context (1 row is broadcast); not
                read when ``gates`` are given.
            gates (torch.Tensor): (1 or #batch, layers, 3) gates of the rows
                (``GatedScorer`` computes them once per utterance).
            src_kv: ``source_kv`` of the memory's utterance, or None.

        Returns:
            torch.Tensor: Log-probabilities of the next token (#batch, vocab).
            List[torch.Tensor]: New cache, one (#batch, L, D) per layer.
        """
        if gates is None:
            gates = self.gates(memory, memory_mask, context)
        plan = row_plan(gates.expand(memory.size(0), -1, -1))
        return self._step(tgt, tgt_mask, memory, memory_mask, plan, cache, return_hs, src_kv)

    def _step(self, tgt, tgt_mask, memory, memory_mask, plan, cache, return_hs, kv):
        x = self.embed(tgt)
        cache = [None] * len(self.decoders) if cache is None else cache
        new_cache = []
        for i, (c, layer) in enumerate(zip(cache, self.decoders)):
            src_kv = kv[i] if kv is not None else None
            if kv is not None and src_kv is None:  # closed for every row: never read
                src_kv = (None, None)
            x = self.layer_forward(
                layer, x, tgt_mask, memory, memory_mask, plan[i], c, src_kv
            )
            new_cache.append(x)
        y = self.after_norm(x[:, -1])
        hidden = y
        if self.output_layer is not None:
            y = torch.log_softmax(self.output_layer(y), dim=-1)
        if return_hs:
            return (y, hidden), new_cache
        return y, new_cache


class GatedScorer(BatchScorerInterface):
    """A gated decoder as the beam-search scorer of one utterance.

    ESPnet's beam search calls ``score``/``batch_score`` with the prefixes and
    the encoder output only; this scorer carries the utterance's gate context
    explicitly. Its first call computes the gates (and, unless the decoder's
    ``cache_src_kv`` is off or it trains, the source keys/values) from the
    encoder output, puts them in ``record``, and every step reuses them.
    ``score``/``batch_score`` are ESPnet's ``BaseTransformerDecoder`` methods
    (they call this scorer's ``forward_one_step``).

    Args:
        decoder (TransformerDecoderTokenCondition): The gated decoder.
        context (GateContext): One utterance's context (None: fixed gates, or
            a predictor without context).
        record (GateRecord): Receives the decoder's gates.
    """

    score = BaseTransformerDecoder.score
    batch_score = BaseTransformerDecoder.batch_score

    def __init__(
        self,
        decoder: TransformerDecoderTokenCondition,
        context: Optional[GateContext] = None,
        record: Optional[GateRecord] = None,
    ):
        self.decoder, self.context, self.record = decoder, context, record
        self.decoders = decoder.decoders
        self._gates: Optional[torch.Tensor] = None
        self._src_kv = None

    def forward_one_step(self, tgt, tgt_mask, memory, memory_mask=None, *, cache=None,
                         return_hs=False):
        """``decoder.forward_one_step`` with the utterance's gates (``memory``: its
        encoder output, expanded over the hypotheses)."""
        dec = self.decoder
        if self._gates is None:
            self._gates = dec.gates(memory[:1], None, self.context, self.record)
            if dec.cache_src_kv and not dec.training:
                self._src_kv = dec.source_kv(memory[:1], self._gates)
        return dec.forward_one_step(tgt, tgt_mask, memory, memory_mask, cache=cache,
                                    return_hs=return_hs, gates=self._gates, src_kv=self._src_kv)

    @classmethod
    @contextmanager
    def installed(
        cls, beam_search, context: Optional[GateContext], record: Optional[GateRecord] = None
    ) -> Iterator[None]:
        """Context manager: an ESPnet ``BeamSearch`` scores with ``GatedScorer(decoder, context,
        record)`` in place of its gated "decoder" scorer (none: unchanged), for one utterance."""
        scorer = beam_search.full_scorers.get("decoder")
        decoder = scorer.decoder if isinstance(scorer, GatedScorer) else scorer
        if not isinstance(decoder, TransformerDecoderTokenCondition):
            yield
            return
        beam_search.full_scorers["decoder"] = beam_search.scorers["decoder"] = cls(
            decoder, context, record
        )
        try:
            yield
        finally:
            beam_search.full_scorers["decoder"] = beam_search.scorers["decoder"] = scorer
