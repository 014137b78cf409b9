"""A Whisper model as an ESPnet S2T model directory (OWSM's hub layout).

``export(spec, out)`` writes::

    meta.yaml                        # files.s2t_model_file, yaml_files.s2t_train_config
    exp/s2t_whisper/config.yaml      # S2T task config, token list inline
    exp/s2t_whisper/model.pth        # our modules' parameter names

The config builds Whisper from our gated modules with every gate fixed open
(``fixed_gates``: no gate predictor), ESPnet's stock S2T model with no CTC
(``ctc_weight: 0``), raw audio in (``frontend: null``, ``input_size: 1``),
Whisper's tokens (``preprocessor: s2t_whisper``) and 30 s of padding, as Whisper
was trained. So ESPnet's ``Speech2Text``, our decoding and the recipes' stage 4
(``scripts/owsm_model.py --model whisper:base``) take it like an OWSM model,
and a fine-tuning YAML initialises from it (only ``gate_predictor.*`` is new).
"""

import logging
from pathlib import Path
from typing import Optional, Union

import torch
import yaml

from espnet_ext.whisper.layout import split_whisper_state
from espnet_ext.whisper.tokenizer import token_list

CONFIG = "exp/s2t_whisper/config.yaml"
MODEL = "exp/s2t_whisper/model.pth"


def espnet_config(dims, pad_to_30s: bool = True) -> dict:
    """The S2T task config of a Whisper of ``dims`` (``whisper.model.ModelDimensions``)."""
    if dims.n_audio_state != dims.n_text_state:
        raise ValueError(f"encoder and decoder sizes differ: {dims.n_audio_state} vs {dims.n_text_state}")
    if dims.n_vocab != 51865:
        raise ValueError(f"vocabulary of {dims.n_vocab}: only Whisper's multilingual 51,865 (99 languages) is supported")
    d = dims.n_audio_state
    return {
        "token_type": "word",  # unused: preprocessor s2t_whisper tokenizes (see its module)
        "bpemodel": None,
        "token_list": token_list(),
        "input_size": 1,
        "frontend": None,
        "specaug": None,
        "normalize": None,
        "preprocessor": "s2t_whisper",
        "preprocessor_conf": {
            "text_prev_name": "text_prev", "text_ctc_name": "text_ctc", "fs": 16000,
            "na_symbol": "<na>", "speech_length": 30, "speech_resolution": 0.02,
            "speech_init_silence": 0, "text_prev_apply_prob": 0.0, "time_apply_prob": 1.0,
            "notime_symbol": "<notimestamps>", "first_time_symbol": "<0.00>",
            "last_time_symbol": "<30.00>",
        },
        "model": "espnet",
        "model_conf": {"ctc_weight": 0.0, "lsm_weight": 0.0, "length_normalized_loss": False,
                       "sym_na": "<na>", "sym_blank": "<unk>"},  # no CTC: no blank
        "encoder": "whisper_token_condition",
        "encoder_conf": {
            "output_size": d, "attention_heads": dims.n_audio_head, "linear_units": 4 * d,
            "num_blocks": dims.n_audio_layer, "n_mels": dims.n_mels, "n_ctx": dims.n_audio_ctx,
            "pad_to_30s": pad_to_30s, "gate_context": [],
            "fixed_gates": [[1, 1]] * dims.n_audio_layer,
        },
        "decoder": "whisper_decoder_token_condition",
        "decoder_conf": {
            "attention_heads": dims.n_text_head, "linear_units": 4 * d,
            "num_blocks": dims.n_text_layer, "n_ctx": dims.n_text_ctx, "gate_context": [],
            "fixed_gates": [[1, 1, 1]] * dims.n_text_layer,
        },
    }


def full_config(conf: dict) -> dict:
    """``conf`` with every other option at its default, as ``s2t_train`` writes config.yaml
    (``build_model_from_file`` reads the file as it is)."""
    import tempfile

    import espnet_ext

    espnet_ext.register()
    from espnet2.tasks.s2t import S2TTask

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(conf, f, allow_unicode=True)
        f.flush()
        args = S2TTask.get_parser().parse_args(["--config", f.name])
    out = vars(args)
    out.pop("config", None)
    return out


def export(spec: Union[str, torch.nn.Module], out: Union[str, Path], cache_dir: Optional[Path] = None) -> Path:
    """Writes ``spec`` (a ``load_whisper`` spec, or a loaded Whisper) as an ESPnet model dir.

    Returns:
        Path: ``out``.
    """
    from espnet_ext.whisper.load import load_whisper

    out = Path(out)
    model = load_whisper(spec, cache_dir) if isinstance(spec, str) else spec
    enc, dec = split_whisper_state(model.state_dict())
    state = {**{f"encoder.{k}": v for k, v in enc.items()}, **{f"decoder.{k}": v for k, v in dec.items()}}
    (out / MODEL).parent.mkdir(parents=True, exist_ok=True)
    tmp = out / (MODEL + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / MODEL)
    (out / CONFIG).write_text(
        yaml.safe_dump(full_config(espnet_config(model.dims)), allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    (out / "meta.yaml").write_text(yaml.safe_dump({
        "files": {"s2t_model_file": MODEL}, "yaml_files": {"s2t_train_config": CONFIG},
        "whisper": str(spec) if isinstance(spec, str) else "a loaded model",
    }))
    logging.info(f"Whisper {spec if isinstance(spec, str) else ''} -> {out} "
                 f"({sum(v.numel() for v in model.parameters()) / 1e6:.1f} M parameters)")
    return out
