"""Context extractor interface, registry and factory.

A context extractor maps one utterance (1-D float32 waveform at the
extractor's sample rate) to one fixed-size float32 vector. The gate predictor
consumes these vectors as ``spk_embed`` / ``event_embed`` (design.md, sec. 2).

Extractors are registered by ``kind`` and short name as "module:Class" strings,
so importing this module does not import torch, speechbrain or resemblyzer.
"""

import abc
import importlib
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

# kind -> name -> "module:Class"
EXTRACTORS: Dict[str, Dict[str, str]] = {
    "speaker": {
        "resemblyzer": "espnet_ext.context.speaker:ResemblyzerExtractor",
        "ecapa": "espnet_ext.context.speaker:EcapaExtractor",
    },
    "event": {
        "beats": "espnet_ext.context.event:BeatsExtractor",
        "tagger": "espnet_ext.context.event:TaggerExtractor",
    },
}

# kind -> data key in ESPnet (`<key>.scp`, `--train_data_path_and_name_and_type`)
DATA_NAMES: Dict[str, str] = {"speaker": "spk_embed", "event": "event_embed"}


class ContextExtractor(abc.ABC):
    """Maps utterances to fixed-size context vectors.

    Subclasses set ``kind`` ("speaker" or "event"), ``sample_rate`` and
    ``dim``, and implement ``_embed``. ``embed`` checks inputs and outputs, so
    every extractor fails the same way on bad input.
    """

    kind: str = ""
    sample_rate: int = 16000
    dim: int = 0

    def __init__(self, source: Optional[str] = None, device: str = "cpu"):
        self.source = source
        self.device = device

    @classmethod
    def can_load(cls, path: Path) -> bool:
        """Whether ``path`` (an existing file or directory) holds this model."""
        return False

    def embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """Embeds a batch of utterances.

        Args:
            wavs: B 1-D float32 waveforms (T_b,) at ``self.sample_rate``.

        Returns:
            np.ndarray: Embeddings (B, dim), float32.
        """
        for i, wav in enumerate(wavs):
            if not isinstance(wav, np.ndarray) or wav.ndim != 1:
                shape = getattr(wav, "shape", type(wav).__name__)
                raise ValueError(f"waveform {i}: expected a 1-D array, got {shape}")
            if wav.size == 0:
                raise ValueError(f"waveform {i}: empty")
        if len(wavs) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        wavs = [np.ascontiguousarray(w, dtype=np.float32) for w in wavs]
        out = np.asarray(self._embed(wavs), dtype=np.float32)
        if out.shape != (len(wavs), self.dim):
            raise RuntimeError(
                f"{type(self).__name__} returned {out.shape}, "
                f"expected {(len(wavs), self.dim)}"
            )
        return out

    @abc.abstractmethod
    def _embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        """Embeds checked float32 waveforms; returns (B, dim)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind}, dim={self.dim}, "
            f"sample_rate={self.sample_rate}, source={self.source})"
        )


def _load_class(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def resolve(kind: str, model: str) -> Tuple[str, Optional[str]]:
    """Turns a ``--model`` value into (registry name, source).

    Accepted forms: a registry name (``resemblyzer``, ``ecapa``, ...), which
    uses that model's default source; ``name:path``; or a bare path to a local
    checkpoint file or model directory, whose format picks the extractor.

    Args:
        kind: "speaker" or "event".
        model: The ``--model`` value.

    Returns:
        tuple: (name, source or None).
    """
    if kind not in EXTRACTORS:
        raise ValueError(f"unknown kind: {kind} (choose from {sorted(EXTRACTORS)})")
    names = EXTRACTORS[kind]
    if model in names:
        return model, None
    head, sep, tail = model.partition(":")
    if sep and head in names:
        return head, tail
    path = Path(model)
    if not path.exists():
        raise ValueError(
            f"unknown {kind} model: {model} (choose from {sorted(names)}, "
            "name:path, or an existing local checkpoint)"
        )
    for name, target in names.items():
        if _load_class(target).can_load(path):
            return name, str(path)
    raise ValueError(
        f"{model}: not a checkpoint of any {kind} extractor {sorted(names)}"
    )


def build_extractor(
    kind: str, model: str, device: str = "cpu", **kwargs
) -> ContextExtractor:
    """Builds a context extractor.

    Args:
        kind: "speaker" or "event".
        model: Registry name, ``name:path`` or a local checkpoint path
            (see ``resolve``).
        device: Torch device, e.g. "cpu" or "cuda:0".
        **kwargs: Passed to the extractor's constructor.

    Returns:
        ContextExtractor: Ready for ``embed`` (eval mode).
    """
    name, source = resolve(kind, model)
    cls = _load_class(EXTRACTORS[kind][name])
    extractor = cls(source=source, device=device, **kwargs)
    logging.info(f"built {extractor}")
    return extractor
