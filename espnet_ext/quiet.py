"""Keeps two of ESPnet's import-time side effects out of our commands' logs.

Both happen in every process that imports ESPnet's S2T task, whatever the run does, and
neither says anything about it:

* ``espnet.nets.pytorch_backend.transformer.attention`` prints (``print``, not logging)
  ``Failed to import Flash Attention, using ESPnet default: No module named 'flash_attn'``
  when the optional ``flash_attn`` package is missing, in every process, although no model
  of ours on a CPU ever uses it. A model that does ask for it (``use_flash_attn: true``)
  still gets ESPnet's own warning at its first forward (``Flash Attention failed, falling
  back to default attention``), so the import-time line adds nothing: it goes to this
  module's logger at DEBUG instead of stdout.
* ``espnet2.text.phoneme_tokenizer`` imports ``g2p_en``, whose import downloads two NLTK
  resources (``averaged_perceptron_tagger_eng``, ``cmudict``) when they are missing:
  offline, four ``[nltk_data] Error loading ...`` lines and a failed connection per process.
  Only ESPnet's phoneme tokenizers (``--g2p g2p_en``) use it; our recipes tokenize with BPE,
  words or Whisper's tokenizer. ``g2p_en`` is imported lazily (``importlib.util.LazyLoader``):
  its module body, the download check included, runs at its first use, so a phoneme tokenizer
  still gets it and nothing else changes (no score reads it).

``install()`` adds one meta path finder and imports nothing, so it runs before ESPnet is
imported at no cost; ``espnet_ext/bin/__init__.py`` calls it for every
``python -m espnet_ext.bin.*`` command and its spawned workers, and the scripts that load
models call it themselves.
"""

import contextlib
import importlib.abc
import importlib.util
import io
import logging
import sys

FLASH_MODULE = "espnet.nets.pytorch_backend.transformer.attention"
FLASH_LINE = "Failed to import Flash Attention"
LAZY_MODULES = ("g2p_en",)

logger = logging.getLogger(__name__)


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader with stdout captured; ESPnet's flash-attention line goes to DEBUG,
    anything else printed meanwhile (by modules imported on the way) to stdout as before."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                self.loader.exec_module(module)
        finally:
            for line in out.getvalue().splitlines(keepends=True):
                if line.startswith(FLASH_LINE):
                    logger.debug("%s (at import): %s", module.__name__, line.rstrip())
                else:
                    sys.stdout.write(line)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != FLASH_MODULE and fullname not in LAZY_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is not None:
                if fullname == FLASH_MODULE:
                    spec.loader = _QuietLoader(spec.loader)
                else:
                    spec.loader = importlib.util.LazyLoader(spec.loader)
            return spec
        return None


def install() -> None:
    """Adds the finder once. A module already imported stays as it is (call this first)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
