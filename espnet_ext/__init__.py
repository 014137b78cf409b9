"""espnet_ext: context-aware dynamic pruning for ESPnet speech foundation models.

Importing this package is cheap (no torch); ``register()`` adds our classes to
ESPnet's task registries. It also runs by itself whenever ESPnet's S2T or ASR
task module is imported (see ``espnet_ext.autoregister``).
"""

__version__ = "0.1.0"

# Registry name -> "module:Class", per ESPnet ClassChoices attribute.
ENCODERS = {
    "e_branchformer_token_condition": (
        "espnet_ext.nets.e_branchformer_token_condition:"
        "EBranchformerTokenConditionEncoder"
    ),
    "e_branchformer_l0": "espnet_ext.pruning.structured:EBranchformerL0Encoder",
    "transformer_token_condition": (
        "espnet_ext.nets.transformer_encoder_token_condition:"
        "TransformerTokenConditionEncoder"
    ),
    "whisper_token_condition": (
        "espnet_ext.nets.whisper_token_condition:WhisperTokenConditionEncoder"
    ),
}
DECODERS = {
    "transformer_decoder_token_condition": (
        "espnet_ext.nets.transformer_decoder_token_condition:"
        "TransformerDecoderTokenCondition"
    ),
    "transformer_decoder_l0": "espnet_ext.pruning.structured:TransformerDecoderL0",
    "whisper_decoder_token_condition": (
        "espnet_ext.nets.whisper_decoder_token_condition:WhisperDecoderTokenCondition"
    ),
}
S2T_MODELS = {
    "espnet_gated": "espnet_ext.s2t.espnet_model:ESPnetS2TGatedModel",
    "espnet_l0": "espnet_ext.pruning.espnet_model:ESPnetS2TL0Model",
}
S2T_PREPROCESSORS = {
    "s2t_whisper": "espnet_ext.whisper.preprocessor:S2TWhisperPreprocessor",
}
ASR_MODELS = {
    "espnet_gated": "espnet_ext.asr.espnet_model:ESPnetASRGatedModel",
}


def _load(path: str):
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def register_task(task_module) -> None:
    """Adds our classes to the ``ClassChoices`` of one ESPnet task module; makes ESPnet's
    trainer write checkpoints atomically and rank a gated model's epochs at its final
    sparsity target only (``espnet_ext.checkpoint``), and its beam search
    hand the decoding prefix's <lang>/<task> to gated models (``espnet_ext.s2t.stock_inference``).

    Args:
        task_module: ``espnet2.tasks.s2t`` or ``espnet2.tasks.asr`` (module object).
    """
    tables = [("encoder_choices", ENCODERS), ("decoder_choices", DECODERS)]
    if task_module.__name__ == "espnet2.tasks.s2t":
        from espnet_ext.s2t import task

        tables += [("model_choices", S2T_MODELS), ("preprocessor_choices", S2T_PREPROCESSORS)]
        task.install(task_module.S2TTask)
    elif task_module.__name__ == "espnet2.tasks.asr":
        from espnet_ext.s2t import task

        tables.append(("model_choices", ASR_MODELS))
        task.install(task_module.ASRTask)  # the same top-level options (tau_ini, ...)
    for attr, entries in tables:
        choices = getattr(task_module, attr)
        for name, path in entries.items():
            if name not in choices.classes:
                choices.classes[name] = _load(path)
    from espnet2.train import trainer

    from espnet_ext import checkpoint
    from espnet_ext.s2t import stock_inference

    checkpoint.install(trainer)  # atomic checkpoint.pth; epochs ranked at the final target
    stock_inference.install()  # espnet2.bin.s2t_inference's --lang_sym/--task_sym reach the gates


def register() -> None:
    """Registers our encoder, decoder and model in ESPnet's S2T and ASR tasks.

    Idempotent: calling it again changes nothing.
    """
    from espnet2.tasks import asr, s2t

    register_task(s2t)
    register_task(asr)
