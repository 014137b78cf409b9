"""openai-whisper's parameter names -> our gated Whisper modules' names.

``WhisperTokenConditionEncoder`` / ``WhisperDecoderTokenCondition`` are ESPnet
Transformer layers (``linear_q/k/v/out``, ``norm1..3``, ``feed_forward.w_1/w_2``);
openai-whisper names them ``query/key/value/out``, ``attn_ln``, ``mlp.0/2``.
Whisper's key projection has no bias: ESPnet's gets zeros (exact).
"""

import re
from typing import Dict

import torch

_BLOCK = [
    (r"attn\.query\.", "self_attn.linear_q."),
    (r"attn\.key\.", "self_attn.linear_k."),
    (r"attn\.value\.", "self_attn.linear_v."),
    (r"attn\.out\.", "self_attn.linear_out."),
    (r"cross_attn\.query\.", "src_attn.linear_q."),
    (r"cross_attn\.key\.", "src_attn.linear_k."),
    (r"cross_attn\.value\.", "src_attn.linear_v."),
    (r"cross_attn\.out\.", "src_attn.linear_out."),
    (r"mlp\.0\.", "feed_forward.w_1."),
    (r"mlp\.2\.", "feed_forward.w_2."),
]
# norms differ between the sides: the encoder's MLP norm is its second
_ENC_NORMS = [(r"attn_ln\.", "norm1."), (r"mlp_ln\.", "norm2.")]
_DEC_NORMS = [(r"attn_ln\.", "norm1."), (r"cross_attn_ln\.", "norm2."), (r"mlp_ln\.", "norm3.")]


def _rename_block(rest: str, norms) -> str:
    for pattern, new in norms + _BLOCK:
        if re.match(pattern, rest):
            return re.sub(pattern, new, rest, count=1)
    raise KeyError(f"unknown Whisper block parameter: {rest}")


def encoder_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``whisper.model.AudioEncoder`` state -> ``WhisperTokenConditionEncoder`` state."""
    out = {}
    for name, value in state.items():
        m = re.match(r"blocks\.(\d+)\.(.*)", name)
        if m:
            new = f"encoders.{m.group(1)}.{_rename_block(m.group(2), _ENC_NORMS)}"
        elif name.startswith(("conv1.", "conv2.")) or name == "positional_embedding":
            new = f"embed.{name}"
        elif name.startswith("ln_post."):
            new = "after_norm." + name[len("ln_post."):]
        else:
            raise KeyError(f"unknown Whisper encoder parameter: {name}")
        out[new] = value
    return _with_key_bias(out)


def decoder_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``whisper.model.TextDecoder`` state -> ``WhisperDecoderTokenCondition`` state."""
    out = {}
    for name, value in state.items():
        m = re.match(r"blocks\.(\d+)\.(.*)", name)
        if m:
            new = f"decoders.{m.group(1)}.{_rename_block(m.group(2), _DEC_NORMS)}"
        elif name in ("token_embedding.weight", "positional_embedding"):
            new = f"embed.{name}"
        elif name.startswith("ln."):
            new = "after_norm." + name[len("ln."):]
        elif name == "mask":  # the causal mask buffer of older checkpoints
            continue
        else:
            raise KeyError(f"unknown Whisper decoder parameter: {name}")
        out[new] = value
    out["output_layer.weight"] = out["embed.token_embedding.weight"]
    return _with_key_bias(out)


def _with_key_bias(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    for name in [n for n in state if n.endswith("linear_k.weight")]:
        bias = name[: -len("weight")] + "bias"
        state.setdefault(bias, state[name].new_zeros(state[name].size(0)))
    return state


def split_whisper_state(state: Dict[str, torch.Tensor]):
    """A ``whisper.model.Whisper`` state dict -> (encoder state, decoder state), our names."""
    enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    dec = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    return encoder_state(enc), decoder_state(dec)
