"""OpenAI Whisper models for espnet_ext: loading (online and offline) and conversion.

``load_whisper`` returns an ``openai-whisper`` ``whisper.model.Whisper``
(float32, eval mode) from a model name, a local ``.pt`` checkpoint or a
CTranslate2 / faster-whisper directory; ``ct2_to_whisper`` converts the
latter. The names resolve lazily so that importing a sibling module (the
parameter layout of the gated modules) does not load openai-whisper.
"""

_EXPORTS = {
    "load_whisper": "espnet_ext.whisper.load",
    "load_checkpoint": "espnet_ext.whisper.load",
    "load_ct2": "espnet_ext.whisper.load",
    "WHEELS": "espnet_ext.whisper.load",
    "ct2_to_whisper": "espnet_ext.whisper.ct2",
    "read_model_bin": "espnet_ext.whisper.ct2",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
