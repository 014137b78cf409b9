"""A random-weight BEATs checkpoint in the official release's format (no download)."""

from pathlib import Path

import torch

# Fields of the BEATsConfig dict stored under "cfg" in the official release
# files (values of the iter3 fine-tuned models), with small sizes for speed.
BEATS_CFG = {
    "input_patch_size": 16,
    "embed_dim": 32,
    "conv_bias": False,
    "encoder_layers": 2,
    "encoder_embed_dim": 48,
    "encoder_ffn_embed_dim": 96,
    "encoder_attention_heads": 4,
    "activation_fn": "gelu",
    "layer_wise_gradient_decay_ratio": 0.6,
    "layer_norm_first": False,
    "deep_norm": True,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.05,
    "dropout_input": 0.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": True,
    "num_buckets": 320,
    "max_distance": 800,
    "gru_rel_pos": True,
    "finetuned_model": True,
    "predictor_dropout": 0.0,
    "predictor_class": 527,
}


def make_beats_checkpoint(path: Path, cfg: dict = BEATS_CFG) -> Path:
    """Random-weight BEATs saved like the official release: {"cfg", "model"},
    with the AudioSet head ``predictor.*`` of the fine-tuned models."""
    from espnet2.asr.encoder.beats_encoder import BeatsEncoder

    torch.manual_seed(0)
    enc = BeatsEncoder(input_size=1, beats_config=cfg)
    enc.reload_pretrained_parameters()  # BEATs' own init
    state = enc.state_dict()
    head = torch.nn.Linear(cfg["encoder_embed_dim"], cfg["predictor_class"])
    state["predictor.weight"], state["predictor.bias"] = head.weight, head.bias
    torch.save({"cfg": dict(cfg), "model": state}, path)
    return path
