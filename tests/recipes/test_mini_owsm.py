"""The pre-trained base model that ships in egs2/mini_europarl/s2t1/pretrained/mini_owsm.

It stands in for OWSM v3.1: every mini preset but tiny fine-tunes it. These tests check that
the recipe can read it (OWSM hub layout, architecture of the demo and bench configs) and that
it listens: distinct utterances of unseen sentences give their own, mostly right, outputs.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "mini_europarl" / "s2t1"
BASE = RECIPE / "pretrained" / "mini_owsm"
SPECIALS = ["<eng>", "<deu>", "<fra>", "<ita>", "<asr>", "<st_eng>"]


def owsm_model():
    spec = importlib.util.spec_from_file_location(
        "owsm_model", ROOT / "local" / "europarl_st" / "owsm_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layout_size_and_architecture(tmp_path):
    assert (BASE / "meta.yaml").is_file(), f"{BASE} missing: ./run.sh --preset base (README.md)"
    size = sum(p.stat().st_size for p in BASE.rglob("*") if p.is_file())
    assert size < 25 * 2**20, size
    for preset in ("demo", "bench"):  # stage 4's check: the fine-tuning configs fit the weights
        info = owsm_model().prepare(str(BASE), tmp_path / preset,
                                    RECIPE / "conf" / preset / "train_gated.yaml", SPECIALS)
        assert info["encoder"] == "e_branchformer" and info["decoder"] == "transformer"
    conf = yaml.safe_load((tmp_path / "demo" / "config.yaml").read_text())
    assert Path(conf["bpemodel"]).is_file() and Path(conf["normalize_conf"]["stats_file"]).is_file()


@pytest.mark.slow
def test_it_listens(tmp_path):
    """Unseen test sentences, synthesised afresh: ASR and ST outputs follow the audio."""
    import jiwer
    import soundfile as sf
    import torch

    from espnet2.bin.s2t_inference import Speech2Text

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing (make sysdeps)")
    data = tmp_path / "data"
    subprocess.run([sys.executable, str(ROOT / "local" / "mini_europarl" / "make_corpus.py"),
                    "--out", str(data), "--sizes", "pretrain=0,train=0,dev=0,test=3",
                    "--voices-per-lang", "4"], check=True, capture_output=True)
    prepared = tmp_path / "base"
    owsm_model().prepare(str(BASE), prepared, None, SPECIALS)
    torch.set_num_threads(1)
    s2t = Speech2Text(prepared / "config.yaml", prepared / "model.pth", device="cpu",
                      beam_size=3, maxlenratio=0.0, nbest=1)
    wavs = dict(line.split(" ", 1) for line in (data / "test" / "wav.scp").read_text().splitlines())
    refs = dict(line.split(" ", 1) for line in (data / "test" / "text").read_text().splitlines())
    for task in ("asr", "st_eng"):
        for lang in ("eng", "deu") if task == "asr" else ("deu", "fra"):
            keys = sorted(k for k in refs if k.startswith(lang) and k.endswith(task))
            hyps, ref = [], []
            for k in keys:
                text = s2t(sf.read(wavs[k].strip(), dtype="float32")[0], lang_sym=f"<{lang}>",
                           task_sym=f"<{task}>")[0][0]
                hyps.append(text.split(">")[-1].strip())
                ref.append(refs[k].split(">")[-1].strip())
            assert len(set(hyps)) == len(set(ref)), (lang, task, hyps)
            assert jiwer.wer(ref, hyps) < 0.3, (lang, task, list(zip(ref, hyps)))
