"""espnet_ext.quiet: ESPnet's S2T task imported by one of our commands prints no flash-attention
line and attempts no NLTK download; g2p_en is still there for a phoneme tokenizer, on first use."""

import subprocess
import sys

import pytest

CHILD = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s: %(message)s")
for name in ("urllib3", "matplotlib", "numba", "h5py"):
    logging.getLogger(name).setLevel(logging.WARNING)
import espnet_ext.bin  # what every python -m espnet_ext.bin.<command> imports first
import espnet2.tasks.s2t  # the task, its tokenizers (g2p_en) and attention modules
from espnet2.text.phoneme_tokenizer import g2p_en
print("g2p_en:", type(g2p_en).__name__, "nltk.corpus" in sys.modules)
"""


def test_s2t_task_import_prints_nothing_of_flash_attention_or_nltk():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # g2p_en imported lazily: its module body (the NLTK download) has not run
    assert proc.stdout.splitlines()[-1] == "g2p_en: _LazyModule False"
    assert "nltk" not in (proc.stdout + proc.stderr).lower()
    assert "Flash Attention" not in proc.stdout
    try:
        import flash_attn  # noqa: F401
    except ImportError:  # ESPnet's line, kept in the log at DEBUG
        assert "espnet_ext.quiet DEBUG: espnet.nets.pytorch_backend.transformer.attention (at import): " \
               "Failed to import Flash Attention" in proc.stderr


def test_install_keeps_one_finder():
    from espnet_ext import quiet

    quiet.install()
    quiet.install()
    assert sum(isinstance(f, quiet._Finder) for f in sys.meta_path) == 1
