"""Whisper encoder with context-aware dynamic gates.

References: Radford et al., "Robust Speech Recognition via Large-Scale Weak
Supervision" (Whisper), 2022; Someki et al., ICLR 2025 (gating). Registered as
``encoder: whisper_token_condition``.

Whisper's encoder is a pre-LN Transformer, so it is ESPnet's
``TransformerEncoder`` layer for layer with Whisper's front end (log-mel, two
GELU convolutions, sinusoidal positions), GELU feed-forward blocks and
LayerNorm eps 1e-5. Built that way it is our gated Transformer encoder
(``transformer_token_condition``): per block the self-attention (``attn``) and
the MLP (``ffn``) are gated, with the same gate predictor, row skipping and
unit costs. The front end and ``after_norm`` (Whisper's ``ln_post``) are never
gated. ``espnet_ext.whisper.layout`` maps openai-whisper's weights onto it; with
every gate open it computes openai-whisper's ``AudioEncoder``.

The input is raw 16 kHz audio (``frontend: null``, ``input_size: 1``, as ESPnet's
own Whisper encoder): the log-mel spectrogram is Whisper's, computed per
utterance, so a padded batch gives what each utterance gives alone.
"""

from typing import List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet_ext.gating import GateContext, GateRecord
from espnet_ext.nets.transformer_encoder_token_condition import TransformerTokenConditionEncoder

SAMPLE_RATE = 16000
HOP = 160  # Whisper's log-mel: 10 ms frames
N_SAMPLES = 30 * SAMPLE_RATE  # Whisper's 30 s window


def as_whisper_layers(module: torch.nn.Module) -> None:
    """Gives ESPnet Transformer layers Whisper's LayerNorm eps and GELU feed-forward, and
    PyTorch's fused attention as Whisper uses (half the encoder's time on 30 s, CPU)."""
    from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
    from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
        PositionwiseFeedForward,
    )

    for m in module.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = 1e-5
        elif isinstance(m, PositionwiseFeedForward):
            m.activation = torch.nn.GELU()
        elif isinstance(m, MultiHeadedAttention):
            m.use_sdpa = True


def valid_frames(lengths: torch.Tensor, maxlen: int) -> torch.Tensor:
    """(#batch, maxlen) True on each row's first ``lengths`` frames."""
    # ESPnet's make_pad_mask builds a maxlen x maxlen matrix: 36 GB for 6 s of samples
    return torch.arange(maxlen, device=lengths.device)[None, :] < lengths[:, None]


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal positions (length, channels): sines, then cosines."""
    inc = torch.log(torch.tensor(max_timescale)) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class WhisperFrontend(torch.nn.Module):
    """Whisper's log-mel + conv front end, with padding that does not leak.

    Args:
        n_mels (int): Mel bins (80; 128 for large-v3).
        size (int): Model size D.
        n_ctx (int): Positions after the convolutions (1500 = 30 s).
        pad_to_30s (bool): Pad every utterance to 30 s, as Whisper was trained
            (zero-shot use); False computes the audio's frames only.
    """

    def __init__(self, n_mels: int, size: int, n_ctx: int = 1500, pad_to_30s: bool = False):
        super().__init__()
        self.n_mels = n_mels
        self.pad_to_30s = pad_to_30s
        self.conv1 = torch.nn.Conv1d(n_mels, size, kernel_size=3, padding=1)
        self.conv2 = torch.nn.Conv1d(size, size, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, size))
        self._macs = {}  # samples -> MACs of the convolutions

    def log_mel(self, audio: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Whisper's log-mel of each utterance; (#batch, n_mels, T) zero-padded, (#batch,) frames."""
        from whisper.audio import log_mel_spectrogram

        mels = []
        for x, n in zip(audio, lengths.tolist()):
            x = x[:n].float()
            if self.pad_to_30s:
                if n > N_SAMPLES:
                    raise ValueError(f"utterance of {n / SAMPLE_RATE:.1f} s is longer than Whisper's 30 s")
                x = torch.nn.functional.pad(x, (0, N_SAMPLES - n))
            # the max-8 floor and (x+4)/4 scaling are per utterance in Whisper
            mels.append(log_mel_spectrogram(x, self.n_mels))
        frames = torch.tensor([m.size(-1) for m in mels], device=audio.device)
        out = audio.new_zeros(len(mels), self.n_mels, int(frames.max()), dtype=torch.float32)
        for i, m in enumerate(mels):
            out[i, :, : m.size(-1)] = m
        return out, frames

    def macs(self, n_samples: int) -> int:
        """MACs of the convolutions for one utterance of ``n_samples`` (the STFT and mel
        filterbank are not counted, as fvcore does not count them)."""
        from espnet_ext import flops

        if n_samples not in self._macs:
            p = self.conv1.weight
            audio = torch.zeros(1, n_samples, dtype=p.dtype, device=p.device)
            self._macs[n_samples] = flops.traced(self, audio, torch.tensor([n_samples], device=p.device))
        return self._macs[n_samples]

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(#batch, samples[, 1]) 16 kHz audio -> (#batch, T', D) and (#batch,) lengths T'."""
        if audio.dim() == 3 and audio.size(-1) == 1:  # S2TPreprocessor's (samples, 1) per utterance
            audio = audio.squeeze(-1)
        if audio.dim() != 2:
            raise ValueError(
                f"whisper_token_condition takes raw audio (#batch, samples) (frontend: null, "
                f"input_size: 1), got {tuple(audio.shape)}"
            )
        mel, frames = self.log_mel(audio, lengths)
        x = torch.nn.functional.gelu(self.conv1(mel))
        # zero past each utterance's end: conv2 then sees its own zero padding
        x = torch.nn.functional.gelu(self.conv2(x * valid_frames(frames, x.size(-1))[:, None, :]))
        olens = (frames - 1) // 2 + 1
        if x.size(-1) > self.positional_embedding.size(0):
            raise ValueError(
                f"input of {x.size(-1)} frames is longer than Whisper's "
                f"{self.positional_embedding.size(0)} (30 s): split it first"
            )
        x = x.transpose(1, 2) + self.positional_embedding[: x.size(-1)]
        return x, olens


class WhisperTokenConditionEncoder(TransformerTokenConditionEncoder):
    """Whisper's audio encoder whose attention and MLP blocks are switched per utterance.

    Args:
        input_size (int): 1 (raw audio in; ESPnet's task passes it).
        output_size (int): Model size (base 512, small 768).
        attention_heads (int): Heads (base 8, small 12).
        linear_units (int): MLP size (4 x output_size).
        num_blocks (int): Blocks (base 6, small 12).
        n_mels (int): Mel bins.
        n_ctx (int): Positions (1500 = 30 s).
        pad_to_30s (bool): Pad every utterance to 30 s as Whisper's training
            did (zero-shot); False (default) encodes the audio's frames only,
            which fine-tuning can afford and is ~7x cheaper on 4 s clips.
        gate_context (List[str]): Context of the gate predictor, subset of
            ("lang", "task", "spk", "event").
        context_vocab_size (int): Token table size for lang/task (Whisper's vocabulary).
        context_dim, spk_embed_dim, event_embed_dim, gate_pooling,
        gate_hidden_units, gate_init_bias: see ``espnet_ext.gating.GateOptions``.
        fixed_gates (List[List[int]]): (num_blocks, 2) 0/1 gates without a
            predictor: all ones is the pre-trained Whisper as it is.
        dropout_rate (float): Dropout in the blocks (Whisper: 0).
    """

    @typechecked
    def __init__(
        self,
        input_size: int = 1,
        output_size: int = 512,
        attention_heads: int = 8,
        linear_units: int = 2048,
        num_blocks: int = 6,
        n_mels: int = 80,
        n_ctx: int = 1500,
        pad_to_30s: bool = False,
        gate_context: List[str] = ["lang", "task"],
        context_vocab_size: Optional[int] = None,
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
            n_mels,
            gate_predictor="global",
            gate_context=gate_context,
            context_vocab_size=context_vocab_size,
            context_dim=context_dim,
            spk_embed_dim=spk_embed_dim,
            event_embed_dim=event_embed_dim,
            gate_pooling=gate_pooling,
            gate_hidden_units=gate_hidden_units,
            gate_init_bias=gate_init_bias,
            fixed_gates=fixed_gates,
            output_size=output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=num_blocks,
            dropout_rate=dropout_rate,
            positional_dropout_rate=0.0,
            attention_dropout_rate=dropout_rate,
            input_layer=None,
            normalize_before=True,
        )
        self.embed = WhisperFrontend(n_mels, output_size, n_ctx, pad_to_30s)
        as_whisper_layers(self)

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        masks: torch.Tensor = None,
        ctc=None,
        return_all_hs: bool = False,
        context: Optional[GateContext] = None,
        record: Optional[GateRecord] = None,
    ):
        """Encode raw audio (#batch, samples) of ``ilens`` samples; see the parent's forward."""
        if masks is None:  # True = padding, over samples
            masks = ~valid_frames(ilens.to(xs_pad.device), xs_pad.size(1))
        return super().forward(xs_pad, ilens, prev_states, masks, ctc, return_all_hs, context, record)

    def _embed(self, xs_pad: torch.Tensor, masks: torch.Tensor):
        x, olens = self.embed(xs_pad, masks.squeeze(1).sum(-1))
        return x, valid_frames(olens, x.size(1))[:, None, :]
