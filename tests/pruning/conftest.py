from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def l0_config():
    return ROOT / "conf" / "tiny" / "train_s2t_ebf_l0.yaml"
