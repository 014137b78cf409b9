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


GATED_TASKS = {
    "espnet2.tasks.s2t": "espnet_ext.s2t.task:GatedS2TTask",
    "espnet2.tasks.asr": "espnet_ext.asr.task:GatedASRTask",
}


def register_task(task_module) -> None:
    """Adds our classes to the ``ClassChoices`` of one ESPnet task module, and has the
    stock entry points (``espnet2.bin.s2t_train``, ``asr_train``, ``s2t_inference``)
    run our task subclass (``espnet_ext.task.use_in_stock_entry_points``) and hand
    the decoding prefix's <lang>/<task> to gated models
    (``espnet_ext.s2t.stock_inference``). docs/design.md lists each of these.

    Args:
        task_module: ``espnet2.tasks.s2t`` or ``espnet2.tasks.asr`` (module object).
    """
    tables = [("encoder_choices", ENCODERS), ("decoder_choices", DECODERS)]
    if task_module.__name__ == "espnet2.tasks.s2t":
        tables += [("model_choices", S2T_MODELS), ("preprocessor_choices", S2T_PREPROCESSORS)]
    elif task_module.__name__ == "espnet2.tasks.asr":
        tables.append(("model_choices", ASR_MODELS))
    for attr, entries in tables:
        choices = getattr(task_module, attr)
        for name, path in entries.items():
            if name not in choices.classes:
                choices.classes[name] = _load(path)
    from espnet_ext.s2t import stock_inference
    from espnet_ext.task import use_in_stock_entry_points

    use_in_stock_entry_points(task_module, _load(GATED_TASKS[task_module.__name__]))
    stock_inference.install()  # espnet2.bin.s2t_inference's --lang_sym/--task_sym reach the gates


def register() -> None:
    """Registers our encoder, decoder and model in ESPnet's S2T and ASR tasks.

    Idempotent: calling it again changes nothing.
    """
    from espnet2.tasks import asr, s2t

    register_task(s2t)
    register_task(asr)
