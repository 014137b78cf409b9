"""Acoustic event embedding extractors.

- ``BeatsExtractor``: BEATs (Chen et al., ICML 2023, arXiv 2212.09058), an
  AudioSet audio transformer, run through ESPnet's own BEATs encoder
  (``espnet2.asr.encoder.beats_encoder``); the clip embedding is the mean over
  patches of the last (or ``layer``-th) transformer layer, 768-d for the
  released models. We chose BEATs over PANNs CNN14 because ESPnet already
  ships and maintains its encoder (no extra dependency, no copied model code)
  and the AudioSet-fine-tuned BEATs checkpoints tag better than CNN14
  (mAP 0.48+ vs 0.43). Checkpoints are the official release files
  (e.g. ``BEATs_iter3_plus_AS2M.pt``,
  ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``):
  a ``torch.save`` dict ``{"cfg": {...BEATsConfig fields}, "model": state_dict}``;
  the fine-tuned ones also hold the AudioSet head ``predictor.*``, unused here.
- ``EventTagger`` / ``TaggerExtractor``: a small log-mel CNN that a recipe
  trains on its own labelled events (``train_event_tagger``); the embedding is
  its penultimate layer (``embed_dim``, default 128).

Both expect 16 kHz mono audio and embed one utterance per forward pass, so an
utterance's vector does not depend on what it was batched with.
"""

import logging
import random
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from typeguard import typechecked

from espnet_ext.context.base import ContextExtractor

TAGGER_FORMAT = "espnet_ext.event_tagger"


def _peek(path: Path) -> dict:
    """Loads a checkpoint lazily (mmap) to look at its top-level keys."""
    if not path.is_file():
        return {}
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a torch zip checkpoint: not ours to load
        return {}
    return ckpt if isinstance(ckpt, dict) else {}


class BeatsExtractor(ContextExtractor):
    """BEATs clip embeddings through ESPnet's BEATs encoder.

    Args:
        source: Path to an official BEATs checkpoint (.pt).
        device: Torch device.
        layer: Transformer layer (0-based) whose output is pooled;
            None: the last one.
    """

    kind = "event"
    sample_rate = 16000

    @typechecked
    def __init__(
        self,
        source: Optional[str] = None,
        device: str = "cpu",
        layer: Optional[int] = None,
    ):
        super().__init__(source, device)
        if source is None:
            raise ValueError(
                "BEATs needs a local checkpoint: "
                "--model beats:/path/BEATs_iter3_plus_AS2M.pt"
            )
        ckpt = torch.load(source, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or not {"cfg", "model"} <= set(ckpt):
            raise ValueError(
                f"{source}: not a BEATs checkpoint (needs 'cfg' and 'model')"
            )
        # ESPnet's encoder wraps its fbank in the deprecated torch.cuda.amp.autocast.
        warnings.filterwarnings(
            "ignore", category=FutureWarning, message=".*autocast.*"
        )
        from espnet2.asr.encoder.beats_encoder import BeatsEncoder

        # Built from the config, then loaded here: BeatsEncoder's own loader
        # has no map_location (a GPU-saved file fails on CPU).
        self.encoder = BeatsEncoder(input_size=1, beats_config=dict(ckpt["cfg"]))
        res = self.encoder.load_state_dict(ckpt["model"], strict=False)
        unexpected = [k for k in res.unexpected_keys if not k.startswith("predictor")]
        if res.missing_keys or unexpected:
            raise ValueError(
                f"{source}: keys do not match ESPnet's BEATs encoder: "
                f"missing {res.missing_keys[:5]}, unexpected {unexpected[:5]}"
            )
        if layer is not None and not 0 <= layer < int(ckpt["cfg"]["encoder_layers"]):
            raise ValueError(
                f"layer {layer} outside 0..{ckpt['cfg']['encoder_layers'] - 1}"
            )
        self.layer = layer
        self.encoder.to(device).eval()
        self.dim = self.encoder.output_size()

    @classmethod
    def can_load(cls, path: Path) -> bool:
        ckpt = _peek(path)
        return "cfg" in ckpt and "model" in ckpt

    @torch.no_grad()
    def _embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for wav in wavs:
            x = torch.from_numpy(wav).to(self.device).unsqueeze(0)
            feats, _ = self.encoder.extract_features(x, None, max_layer=self.layer)
            out.append(feats.mean(dim=1)[0].cpu().numpy())
        return np.stack(out)


class EventTagger(torch.nn.Module):
    """Small log-mel CNN event classifier.

    Log-mel (25 ms / 10 ms) -> BatchNorm over mel bins -> blocks of
    2 x (conv3x3, BN, ReLU) + 2x2 average pooling -> mean over frequency ->
    mean + max over time -> Linear + ReLU (the embedding) -> Linear (logits).

    Args:
        num_classes: Number of event labels.
        sample_rate: Input rate (Hz).
        n_mels: Mel bands.
        channels: Output channels of each conv block.
        embed_dim: Embedding (penultimate layer) size.
        dropout: Dropout before the classifier.
    """

    @typechecked
    def __init__(
        self,
        num_classes: int,
        sample_rate: int = 16000,
        n_mels: int = 64,
        channels: Sequence[int] = (16, 32, 64, 128),
        embed_dim: int = 128,
        dropout: float = 0.2,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if len(channels) == 0:
            raise ValueError(f"channels must not be empty, got {channels}")
        import torchaudio

        self.embed_dim = embed_dim
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=512,
            win_length=sample_rate // 40,
            hop_length=sample_rate // 100,
            f_min=20.0,
            n_mels=n_mels,
        )
        self.norm = torch.nn.BatchNorm1d(n_mels)
        blocks, cin = [], 1
        for cout in channels:
            blocks += [
                torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                torch.nn.BatchNorm2d(cout),
                torch.nn.ReLU(),
                torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                torch.nn.BatchNorm2d(cout),
                torch.nn.ReLU(),
                torch.nn.AvgPool2d(2, ceil_mode=True),
            ]
            cin = cout
        self.blocks = torch.nn.Sequential(*blocks)
        self.embed = torch.nn.Sequential(
            torch.nn.Linear(cin, embed_dim), torch.nn.ReLU()
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(embed_dim, num_classes)

    def forward(self, wav: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Classifies and embeds clips.

        Args:
            wav: Waveforms (B, T), equal length.

        Returns:
            Tuple[torch.Tensor, torch.Tensor]: Logits (B, num_classes) and
                embeddings (B, embed_dim).
        """
        if wav.dim() != 2:
            raise ValueError(f"expected (B, T) waveforms, got {tuple(wav.shape)}")
        x = torch.log(self.mel(wav) + 1e-6)  # (B, n_mels, frames)
        x = self.norm(x).unsqueeze(1)  # (B, 1, n_mels, frames)
        x = self.blocks(x).mean(dim=2)  # (B, C, frames')
        x = x.mean(dim=-1) + x.amax(dim=-1)
        emb = self.embed(x)
        return self.classifier(self.dropout(emb)), emb


def save_tagger(
    model: EventTagger, conf: Dict, labels: List[str], path: Union[str, Path]
) -> None:
    """Saves a tagger checkpoint that ``TaggerExtractor`` loads."""
    ckpt = {
        "format": TAGGER_FORMAT,
        "conf": dict(conf),
        "labels": list(labels),
        "model": model.state_dict(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def load_tagger(
    path: Union[str, Path], device: str = "cpu"
) -> Tuple[EventTagger, List[str]]:
    """Loads a tagger checkpoint; returns (model in eval mode, labels)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != TAGGER_FORMAT:
        raise ValueError(f"{path}: not an event tagger checkpoint ({TAGGER_FORMAT})")
    model = EventTagger(num_classes=len(ckpt["labels"]), **ckpt["conf"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), list(ckpt["labels"])


class TaggerExtractor(ContextExtractor):
    """Embeddings (penultimate layer) of a trained ``EventTagger``.

    Args:
        source: Checkpoint written by ``train_event_tagger``.
        device: Torch device.
    """

    kind = "event"

    @typechecked
    def __init__(self, source: Optional[str] = None, device: str = "cpu"):
        super().__init__(source, device)
        if source is None:
            raise ValueError(
                "the event tagger needs a checkpoint from "
                "espnet_ext.bin.train_event_tagger: --model /path/tagger.pth"
            )
        self.model, self.labels = load_tagger(source, device)
        self.sample_rate = int(self.model.mel.sample_rate)
        self.dim = self.model.embed_dim

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return _peek(path).get("format") == TAGGER_FORMAT

    @torch.no_grad()
    def _embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for wav in wavs:
            x = torch.from_numpy(wav).to(self.device).unsqueeze(0)
            out.append(self.model(x)[1][0].cpu().numpy())
        return np.stack(out)


def _crop(wav: np.ndarray, length: int, rng: random.Random) -> np.ndarray:
    """Random crop to ``length`` samples; shorter clips are tiled."""
    if len(wav) < length:
        wav = np.tile(wav, length // len(wav) + 1)
    start = rng.randrange(len(wav) - length + 1)
    return wav[start : start + length]


@typechecked
def train_event_tagger(
    wavs: Sequence[np.ndarray],
    labels: Sequence[str],
    out: Optional[Union[str, Path]] = None,
    epochs: int = 30,
    batch_size: int = 16,
    lr: float = 3e-3,
    crop_seconds: float = 3.0,
    seed: int = 0,
    device: str = "cpu",
    **conf,
) -> Tuple[EventTagger, List[str]]:
    """Trains an ``EventTagger`` on labelled clips.

    Each step sees random ``crop_seconds`` crops (short clips tiled) with a
    random gain of +-6 dB; AdamW with a one-cycle schedule (warm-up, then
    cosine decay).

    Args:
        wavs: N 1-D float32 waveforms at ``conf.get("sample_rate", 16000)``.
        labels: N event labels (strings).
        out: Checkpoint path to write (None: do not save).
        epochs: Passes over the data.
        batch_size: Clips per step.
        lr: Peak learning rate.
        crop_seconds: Training crop length (s).
        seed: Seed of crops, gains, shuffling and initialisation.
        device: Torch device.
        **conf: ``EventTagger`` options (n_mels, channels, embed_dim, ...).

    Returns:
        Tuple[EventTagger, List[str]]: Trained model (eval mode) and the
            sorted label set (class index order).
    """
    if len(wavs) != len(labels):
        raise ValueError(f"{len(wavs)} waveforms but {len(labels)} labels")
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValueError(f"need at least 2 event labels, got {names}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = EventTagger(num_classes=len(names), **conf).to(device)
    rate = int(model.mel.sample_rate)
    length = int(crop_seconds * rate)
    target = [names.index(x) for x in labels]
    steps = epochs * ((len(wavs) + batch_size - 1) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    order = list(range(len(wavs)))
    for epoch in range(1, epochs + 1):
        model.train()
        rng.shuffle(order)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            gains = [10 ** (rng.uniform(-6, 6) / 20) for _ in idx]
            x = np.stack([_crop(wavs[j], length, rng) * g for j, g in zip(idx, gains)])
            y = torch.tensor([target[j] for j in idx], device=device)
            logits, _ = model(torch.from_numpy(x.astype(np.float32)).to(device))
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(-1) == y).sum())
            total += len(idx)
        logging.info(
            f"epoch {epoch}/{epochs}: loss {loss_sum / total:.4f} "
            f"train acc {correct / total:.3f}"
        )
    model.eval()
    if out is not None:
        save_tagger(model, dict(conf, sample_rate=rate), names, out)
    return model, names
