"""Per-utterance context embeddings (speaker, acoustic events) for the gate predictor.

Cheap to import: torch, speechbrain, resemblyzer and ESPnet load only when an
extractor is built (``build_extractor``).
"""

from espnet_ext.context.base import (
    DATA_NAMES,
    EXTRACTORS,
    ContextExtractor,
    build_extractor,
    resolve,
)

__all__ = ["DATA_NAMES", "EXTRACTORS", "ContextExtractor", "build_extractor", "resolve"]
