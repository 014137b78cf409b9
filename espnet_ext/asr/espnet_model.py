"""ESPnet ASR model with input-dependent dynamic pruning (I3D / ICLR 2025).

Registered as ``model: espnet_gated`` in ESPnet's ASR task. It hands the
optional gate context (``spk_embed``/``event_embed`` npy inputs; ASR texts
have no ``<lang>``/``<task>`` tokens) to the gated encoder/decoder and adds
the sparsity loss ``alpha * (|g - s*| + (g - s*)^2)`` of
``espnet_ext.gating.model``, exactly as the S2T model does.
"""

from typing import Dict, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_ext.gating import GateContext, GateRecord, gate_inputs
from espnet_ext.gating.model import GatedModelMixin


class ESPnetASRGatedModel(ESPnetASRModel, GatedModelMixin):
    """``ESPnetASRModel`` with gated encoder and/or decoder.

    Args:
        prune_scope (str): Gated modules that may close units: "both",
            "encoder" or "decoder"; the other side is kept fully open.
        sparsity_weighting (str): "count" (every unit counts 1) or "flops"
            (each unit weighted by its MACs for the batch's lengths).
        *args, **kwargs: ``ESPnetASRModel`` arguments.

    The schedule options (``tau_ini``, ``sparsity_end``, ...) are top-level
    training options (``espnet_ext.task.GatedTask`` adds them to the ASR
    task as to the S2T one).
    """

    @typechecked
    def __init__(
        self,
        *args,
        prune_scope: str = "both",
        sparsity_weighting: str = "count",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.init_gating(prune_scope, sparsity_weighting)
        token_context = {"lang", "task"} & set(self.context_kinds)
        if token_context:
            raise ValueError(
                f"gate_context {sorted(token_context)} needs <lang>/<task> tokens, which ASR "
                "texts do not have: use [] (the input alone) or [spk] / [event]"
            )

    def make_context(
        self,
        spk_embed: Optional[torch.Tensor] = None,
        event_embed: Optional[torch.Tensor] = None,
        embed_lengths: Optional[Dict[str, Optional[torch.Tensor]]] = None,
    ) -> Optional[GateContext]:
        """Checks and bundles the context of a batch (None when no context is used).

        Args:
            spk_embed (torch.Tensor): (#batch, D_spk) or None.
            event_embed (torch.Tensor): (#batch, D_event) or None.
            embed_lengths (dict): "spk"/"event" -> (#batch,) npy sizes before padding.
        """
        if not self.context_kinds:
            return None
        return GateContext(**self.embed_context(spk_embed, event_embed, embed_lengths))

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        spk_embed: Optional[torch.Tensor] = None,
        spk_embed_lengths: Optional[torch.Tensor] = None,
        event_embed: Optional[torch.Tensor] = None,
        event_embed_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """ASR loss (CTC + attention, unchanged) + sparsity loss.

        Args:
            speech (torch.Tensor): (#batch, samples).
            speech_lengths (torch.Tensor): (#batch,).
            text (torch.Tensor): (#batch, L) token ids.
            text_lengths (torch.Tensor): (#batch,).
            spk_embed (torch.Tensor): (#batch, D_spk), if the gates use "spk".
            event_embed (torch.Tensor): (#batch, D_event), if they use "event".
        """
        context = self.make_context(
            spk_embed, event_embed,
            embed_lengths={"spk": spk_embed_lengths, "event": event_embed_lengths},
        )
        record = GateRecord()
        with self.gating_step() as step, gate_inputs(self, context, record):
            loss, stats, weight = super().forward(
                speech, speech_lengths, text, text_lengths, **kwargs
            )
        lengths = {"enc": self._enc_frames, "dec": float(text_lengths.float().mean()) + 1}
        loss = self.add_sparsity_loss(loss, stats, step, lengths, record)
        return force_gatherable((loss, stats, weight), loss.device)

    def encode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        context: Optional[GateContext] = None,
        record: Optional[GateRecord] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend + gated encoder.

        Args:
            context (GateContext): The batch's gate context (``make_context``); None
                inside ``forward`` (which passes its own) or when the gates use none.
            record (GateRecord): Receives the encoder's gates.
        """
        if context is None and record is None:
            enc, enc_lens = super().encode(speech, speech_lengths)
        else:
            with gate_inputs(self, context, record):
                enc, enc_lens = super().encode(speech, speech_lengths)
        self._enc_frames = float(enc_lens.float().mean())
        return enc, enc_lens
