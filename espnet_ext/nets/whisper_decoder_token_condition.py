"""Whisper decoder with context-aware dynamic gates.

References: Radford et al., 2022 (Whisper); Someki et al., ICLR 2025 (gating).
Registered as ``decoder: whisper_decoder_token_condition``.

Whisper's text decoder is a pre-LN Transformer decoder: ESPnet's
``TransformerDecoder`` layer for layer with learned positions, GELU MLPs,
LayerNorm eps 1e-5 and the output projection tied to the token embedding
(no bias). Built that way it is our gated Transformer decoder
(``transformer_decoder_token_condition``): per block self-attention,
cross-attention (``src_attn``) and MLP (``ffn``) are gated, and incremental
decoding, the lean beam search, source key/value caching and unit costs work
unchanged. The embeddings, the final norm and the 51,865-token output
projection are never gated. With every gate open it computes openai-whisper's
``TextDecoder`` (``espnet_ext.whisper.layout`` maps the weights).
"""

from typing import List, Optional

import torch
from typeguard import typechecked

from espnet_ext.nets.transformer_decoder_token_condition import TransformerDecoderTokenCondition
from espnet_ext.nets.whisper_token_condition import as_whisper_layers


class WhisperEmbedding(torch.nn.Module):
    """Token embedding + learned positions of a whole prefix (#batch, L) -> (#batch, L, D)."""

    def __init__(self, vocab_size: int, size: int, n_ctx: int = 448):
        super().__init__()
        self.token_embedding = torch.nn.Embedding(vocab_size, size)
        self.positional_embedding = torch.nn.Parameter(torch.zeros(n_ctx, size))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.size(-1)
        if n > self.positional_embedding.size(0):
            raise ValueError(
                f"prefix of {n} tokens is longer than Whisper's {self.positional_embedding.size(0)} positions"
            )
        return self.token_embedding(tokens) + self.positional_embedding[:n]


class WhisperDecoderTokenCondition(TransformerDecoderTokenCondition):
    """Whisper's text decoder whose sub-modules are switched per utterance.

    Args:
        vocab_size (int): Whisper's vocabulary (51865 multilingual; also the
            context token table).
        encoder_output_size (int): Model size (base 512, small 768).
        attention_heads (int): Heads (base 8, small 12).
        linear_units (int): MLP size (4 x model size).
        num_blocks (int): Blocks (base 6, small 12).
        n_ctx (int): Token positions (448).
        gate_context (List[str]): Context of the gate predictor, subset of
            ("lang", "task", "spk", "event").
        context_dim, spk_embed_dim, event_embed_dim, gate_pooling,
        gate_hidden_units, gate_init_bias: see ``espnet_ext.gating.GateOptions``.
        fixed_gates (List[List[int]]): (num_blocks, 3) 0/1 gates without a
            predictor: all ones is the pre-trained Whisper as it is.
        dropout_rate (float): Dropout in the blocks (Whisper: 0).
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 8,
        linear_units: int = 2048,
        num_blocks: int = 6,
        n_ctx: int = 448,
        gate_context: List[str] = ["lang", "task"],
        context_dim: int = 64,
        spk_embed_dim: Optional[int] = None,
        event_embed_dim: Optional[int] = None,
        gate_pooling: str = "mean",
        gate_hidden_units: int = 0,
        gate_init_bias: float = 3.0,
        fixed_gates: Optional[List[List[int]]] = None,
        dropout_rate: float = 0.0,
    ):
        super().__init__(
            vocab_size,
            encoder_output_size,
            gate_context=gate_context,
            context_dim=context_dim,
            spk_embed_dim=spk_embed_dim,
            event_embed_dim=event_embed_dim,
            gate_pooling=gate_pooling,
            gate_hidden_units=gate_hidden_units,
            gate_init_bias=gate_init_bias,
            fixed_gates=fixed_gates,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=num_blocks,
            dropout_rate=dropout_rate,
            positional_dropout_rate=0.0,
            self_attention_dropout_rate=dropout_rate,
            src_attention_dropout_rate=dropout_rate,
            input_layer="embed",
            use_output_layer=True,
            normalize_before=True,
            use_flash_attn=False,
        )
        self.embed = WhisperEmbedding(vocab_size, encoder_output_size, n_ctx)
        # logits = x @ token_embedding^T, as Whisper (one parameter, no bias)
        self.output_layer = torch.nn.Linear(encoder_output_size, vocab_size, bias=False)
        self.output_layer.weight = self.embed.token_embedding.weight
        as_whisper_layers(self)

    @property
    def max_positions(self) -> int:
        """Longest token prefix (prompt + hypothesis) the positions cover."""
        return self.embed.positional_embedding.size(0)
