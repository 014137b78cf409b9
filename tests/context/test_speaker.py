from pathlib import Path

import numpy as np
import pytest
import torch

from espnet_ext.context import build_extractor, resolve
from espnet_ext.context.base import ContextExtractor

pytestmark = pytest.mark.usefixtures("one_thread")

# hyperparams.yaml of speechbrain/spkrec-ecapa-voxceleb as published on the
# hub (checkpoint paths go through `pretrained_path`, which names the hub).
ECAPA_HPARAMS = """\
# ############################################################################
# Model: ECAPA big for Speaker verification
# ############################################################################

# Feature parameters
n_mels: 80

# Pretrain folder (HuggingFace)
pretrained_path: speechbrain/spkrec-ecapa-voxceleb

# Output parameters
out_n_neurons: 7205

# Model params
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 192
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder


pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def make_ecapa_dir(path: Path) -> Path:
    """Random-weight ECAPA laid out like a download of the hub repository."""
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.processing.features import InputNormalization

    torch.manual_seed(0)
    path.mkdir(parents=True)
    (path / "hyperparams.yaml").write_text(ECAPA_HPARAMS)
    ecapa = ECAPA_TDNN(
        80,
        channels=[1024, 1024, 1024, 1024, 3072],
        kernel_sizes=[5, 3, 3, 3, 1],
        dilations=[1, 2, 3, 4, 1],
        attention_channels=128,
        lin_neurons=192,
    )
    torch.save(ecapa.state_dict(), path / "embedding_model.ckpt")
    torch.save(Classifier(192, out_neurons=7205).state_dict(), path / "classifier.ckpt")
    norm = InputNormalization(norm_type="global", std_norm=False)
    norm(torch.randn(8, 1, 192), torch.ones(8))  # training mode: collects stats
    norm._save(path / "mean_var_norm_emb.ckpt")
    labels = CategoricalEncoder()
    labels.update_from_iterable([f"id{10001 + i}" for i in range(7205)])
    labels.save(path / "label_encoder.txt")
    return path


def nn_accuracy(emb: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out cosine nearest-neighbour accuracy."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return float((labels[sim.argmax(1)] == labels).mean())


def eer(emb: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate of cosine scoring over all utterance pairs."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    iu = np.triu_indices(len(emb), 1)
    scores = (unit @ unit.T)[iu]
    same = (labels[:, None] == labels[None])[iu]
    best = 1.0
    for t in np.unique(scores):
        miss, false_alarm = (scores[same] < t).mean(), (scores[~same] >= t).mean()
        best = min(best, max(miss, false_alarm))
    return float(best)


@pytest.fixture(scope="module")
def resemblyzer():
    return build_extractor("speaker", "resemblyzer")


def test_resemblyzer_separates_voices(resemblyzer, speech):
    wavs = [w for ws in speech.values() for w in ws]
    labels = np.array([spk for spk, ws in speech.items() for _ in ws])
    emb = resemblyzer.embed(wavs)
    assert emb.shape == (len(wavs), 256) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    # Measured: NN accuracy 1.00, EER 4.8% (6 espeak-ng voices x 8 sentences).
    assert nn_accuracy(emb, labels) >= 0.9
    assert eer(emb, labels) <= 0.15


def test_resemblyzer_is_per_utterance(resemblyzer, speech):
    wavs = speech["en_m3"][:3]
    batch = resemblyzer.embed(wavs)
    single = resemblyzer.embed(wavs[1:2])
    np.testing.assert_allclose(batch[1], single[0], atol=1e-5)


@pytest.fixture(scope="module")
def ecapa_dir(tmp_path_factory):
    return make_ecapa_dir(tmp_path_factory.mktemp("ecapa") / "spkrec-ecapa-voxceleb")


@pytest.mark.parametrize("form", ["path", "name:path"])
def test_ecapa_from_local_download(ecapa_dir, speech, form):
    before = sorted(p.name for p in ecapa_dir.iterdir())
    model = str(ecapa_dir) if form == "path" else f"ecapa:{ecapa_dir}"
    ext = build_extractor("speaker", model)
    assert type(ext).__name__ == "EcapaExtractor" and ext.dim == 192
    wavs = [speech["de_m1"][0], speech["fr_m5"][1][:20000]]
    emb = ext.embed(wavs)
    assert emb.shape == (2, 192) and emb.dtype == np.float32
    assert np.isfinite(emb).all() and np.abs(emb).sum() > 0
    # Embedded one by one: a vector does not depend on its batch mates.
    np.testing.assert_allclose(emb[1], ext.embed(wavs[1:])[0], rtol=1e-5, atol=1e-5)
    # A local directory is read in place, nothing fetched into it.
    assert sorted(p.name for p in ecapa_dir.iterdir()) == before


def test_ecapa_dir_without_hparams(tmp_path):
    from espnet_ext.context.speaker import EcapaExtractor

    with pytest.raises(ValueError, match="hyperparams.yaml"):
        EcapaExtractor(source=str(tmp_path))


def test_resolve():
    assert resolve("speaker", "resemblyzer") == ("resemblyzer", None)
    assert resolve("speaker", "ecapa") == ("ecapa", None)
    assert resolve("speaker", "ecapa:/x/y") == ("ecapa", "/x/y")
    with pytest.raises(ValueError, match="unknown kind: face"):
        resolve("face", "resemblyzer")
    with pytest.raises(ValueError, match="unknown speaker model: xvector"):
        resolve("speaker", "xvector")


def test_not_a_model_dir(tmp_path):
    with pytest.raises(ValueError, match="not a checkpoint of any speaker"):
        build_extractor("speaker", str(tmp_path))


def test_embed_checks_input(resemblyzer):
    with pytest.raises(
        ValueError, match=r"waveform 0: expected a 1-D array, got \(2, 100\)"
    ):
        resemblyzer.embed([np.zeros((2, 100), dtype=np.float32)])
    with pytest.raises(ValueError, match="waveform 1: empty"):
        resemblyzer.embed(
            [np.ones(1600, dtype=np.float32), np.zeros(0, dtype=np.float32)]
        )
    assert resemblyzer.embed([]).shape == (0, 256)
    assert isinstance(resemblyzer, ContextExtractor)
