"""Speaker embedding extractors.

- ``ResemblyzerExtractor``: GE2E speaker encoder (Wan et al., ICASSP 2018) as
  packaged by resemblyzer; 3-layer LSTM over 40-band mel partials, 256-d,
  L2-normalised. Its weights ship inside the wheel, so it is the offline
  default.
- ``EcapaExtractor``: ECAPA-TDNN (Desplanques et al., Interspeech 2020) as
  trained by SpeechBrain on VoxCeleb (``speechbrain/spkrec-ecapa-voxceleb``),
  192-d. Loaded from the hub name when online, or from a local directory laid
  out like the hub repository (``hyperparams.yaml``, ``embedding_model.ckpt``,
  ``mean_var_norm_emb.ckpt``, ``classifier.ckpt``, ``label_encoder.txt``).

Both expect 16 kHz mono audio and embed one utterance per forward pass, so an
utterance's vector does not depend on what it was batched with.
"""

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from typeguard import typechecked

from espnet_ext.context.base import ContextExtractor

ECAPA_HUB = "speechbrain/spkrec-ecapa-voxceleb"


class ResemblyzerExtractor(ContextExtractor):
    """GE2E speaker embeddings (256-d) from resemblyzer.

    Args:
        source: Path to a resemblyzer weights file; None: the bundled one.
        device: Torch device.
        trim_silence: Apply resemblyzer's volume normalisation and
            webrtcvad-based trimming of long pauses first (its default
            pipeline). An utterance that is all silence is used untrimmed.
    """

    kind = "speaker"
    sample_rate = 16000
    dim = 256

    @typechecked
    def __init__(
        self,
        source: Optional[str] = None,
        device: str = "cpu",
        trim_silence: bool = True,
    ):
        super().__init__(source, device)
        from resemblyzer import VoiceEncoder

        self.trim_silence = trim_silence
        self.encoder = VoiceEncoder(device=device, verbose=False, weights_fpath=source)

    def _embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        from resemblyzer import preprocess_wav

        out = []
        for wav in wavs:
            if self.trim_silence:
                trimmed = preprocess_wav(wav, source_sr=self.sample_rate)
                # 1600 samples = 0.1 s: too little left after VAD, keep raw.
                wav = trimmed if len(trimmed) >= 1600 else wav
            out.append(self.encoder.embed_utterance(wav))
        return np.stack(out)


class EcapaExtractor(ContextExtractor):
    """ECAPA-TDNN speaker embeddings (192-d) from SpeechBrain.

    Args:
        source: Hub name or local model directory (with ``hyperparams.yaml``);
            None: ``speechbrain/spkrec-ecapa-voxceleb``.
        device: Torch device.
        savedir: Where SpeechBrain links/copies fetched hub files;
            None: the Hugging Face cache only. A local directory is read in
            place and never written to.
    """

    kind = "speaker"
    sample_rate = 16000

    @typechecked
    def __init__(
        self,
        source: Optional[str] = None,
        device: str = "cpu",
        savedir: Optional[str] = None,
    ):
        super().__init__(source or ECAPA_HUB, device)
        # SpeechBrain sets every logger it creates to $SB_LOG_LEVEL (default
        # INFO); keep its fetch/load chatter out unless the user asked for it.
        os.environ.setdefault("SB_LOG_LEVEL", "WARNING")
        from speechbrain.inference.speaker import EncoderClassifier

        kwargs = dict(source=self.source, savedir=savedir, run_opts={"device": device})
        local = Path(self.source)
        if local.is_dir():
            if not (local / "hyperparams.yaml").is_file():
                raise ValueError(
                    f"{local}: no hyperparams.yaml (not a SpeechBrain model)"
                )
            # The hub's hyperparams.yaml points its checkpoints at the hub name
            # through `pretrained_path`; point them here so nothing is fetched.
            kwargs["overrides"] = {"pretrained_path": str(local.resolve())}
            kwargs["source"] = str(local.resolve())
        self.model = EncoderClassifier.from_hparams(**kwargs)
        self.model.eval()
        with torch.no_grad():
            self.dim = int(self.model.encode_batch(torch.zeros(1, 16000)).shape[-1])

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return path.is_dir() and (path / "hyperparams.yaml").is_file()

    @torch.no_grad()
    def _embed(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        # One utterance per forward: SpeechBrain's fbank and convolutions see
        # the zero padding of a batch (embeddings moved by up to 3% in our
        # test), and a vector should not depend on its batch mates.
        out = []
        for wav in wavs:
            emb = self.model.encode_batch(torch.from_numpy(wav).unsqueeze(0))
            out.append(emb[0, 0].cpu().numpy())
        return np.stack(out)
