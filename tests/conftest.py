import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Keep torch on the 2 cores of CI and quiet nltk's offline download attempts.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    from tiny_corpus import make_tiny_corpus

    return make_tiny_corpus(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_config():
    return ROOT / "conf" / "tiny" / "train_s2t_ebf_gated.yaml"


@pytest.fixture(scope="session")
def trained(tiny_corpus, tiny_config, tmp_path_factory):
    """A tiny gated model trained 10 epochs x 30 steps with stock s2t_train."""
    from tiny_corpus import s2t_train

    exp = tmp_path_factory.mktemp("exp") / "gated"
    log = s2t_train(tiny_corpus, tiny_config, exp)
    return exp, log
