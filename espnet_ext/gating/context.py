"""The per-utterance context that conditions the gates."""

from dataclasses import dataclass, fields, replace
from typing import Optional

import torch


@dataclass
class GateContext:
    """Context of a batch of utterances.

    Attributes:
        tokens (torch.Tensor): (#batch, 2) ids of the ``<lang>`` and ``<task>``
            tokens (e.g. ``<deu>``, ``<st_eng>``).
        spk_embed (torch.Tensor): (#batch, D_spk) speaker embeddings.
        event_embed (torch.Tensor): (#batch, D_event) acoustic-event embeddings.
        speech_span (torch.Tensor): (#batch, 2) where the speech starts and ends,
            as fractions of the (padded) input; the predictors pool over these
            frames only (OWSM pads every utterance to 30 s). Set by the model.
    """

    tokens: Optional[torch.Tensor] = None
    spk_embed: Optional[torch.Tensor] = None
    event_embed: Optional[torch.Tensor] = None
    speech_span: Optional[torch.Tensor] = None

    def __post_init__(self):
        sizes = {f.name: t.size(0) for f, t in self._items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"context batch sizes differ: {sizes}")
        if self.tokens is not None and (
            self.tokens.dim() != 2 or self.tokens.size(1) != 2
        ):
            raise ValueError(
                f"tokens must be (#batch, 2) <lang>/<task> ids, got {tuple(self.tokens.shape)}"
            )

    def _items(self):
        return [(f, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None]

    @property
    def batch_size(self) -> Optional[int]:
        items = self._items()
        return items[0][1].size(0) if items else None

    def select(self, index: torch.Tensor) -> "GateContext":
        """Rows ``index`` of every field (e.g. to follow beam hypotheses)."""
        return replace(self, **{f.name: t[index] for f, t in self._items()})

    def expand(self, batch_size: int) -> "GateContext":
        """Broadcasts a 1-utterance context to ``batch_size`` rows (beam search)."""
        n = self.batch_size
        if n == batch_size or n is None:
            return self
        if n != 1:
            raise ValueError(f"cannot expand a context of {n} rows to {batch_size}")
        return replace(
            self, **{f.name: t.expand(batch_size, *t.shape[1:]) for f, t in self._items()}
        )
