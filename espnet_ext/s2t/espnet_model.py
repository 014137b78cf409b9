"""ESPnet S2T model with context-aware dynamic pruning.

Registered as ``model: espnet_gated``. It reads the context of every
utterance (the ``<lang>``/``<task>`` tokens at the start of ``text``, and the
optional ``spk_embed``/``event_embed`` inputs), hands it to the gated encoder
and decoder (``espnet_ext.gating.gate_inputs``), and adds the sparsity loss
``alpha * (|g - s*| + (g - s*)^2)``, where g is the fraction of gated units
closed (ICLR 2025). Decoding passes the context to ``encode`` and to the
decoder's scorer (``espnet_ext.s2t.inference``).
"""

import re
from dataclasses import replace
from typing import Dict, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_ext.gating import GateContext, GateRecord, gate_inputs
from espnet_ext.gating.model import PRUNE_SCOPES, WEIGHTINGS, GatedModelMixin  # noqa: F401

# <lang>/<task> tokens of OWSM token lists: <eng>, <zh>, ...; <asr>, <st_eng>, ...
LANG_TOKEN = re.compile(r"^<[a-z]{2,3}>$")
TASK_TOKEN = re.compile(r"^<(asr|st_[a-z]{2,3})>$")
NOT_LANG_TOKENS = ("<unk>", "<sos>", "<eos>", "<sop>", "<na>", "<asr>")


class ESPnetS2TGatedModel(ESPnetS2TModel, GatedModelMixin):
    """``ESPnetS2TModel`` whose gated encoder/decoder follow the utterance context.

    Args:
        prune_scope (str): Gated modules that may close units: "both",
            "encoder" or "decoder"; the other side is kept fully open.
        sparsity_weighting (str): "count" (every unit counts 1) or "flops"
            (each unit weighted by its MACs for the batch's lengths).
        *args, **kwargs: ``ESPnetS2TModel`` arguments.

    The schedule options (``tau_ini``, ``sparsity_end``, ...) are top-level
    training options (see ``espnet_ext.task``); they configure
    ``gate_schedule``, whose step counter is saved with the model.
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
        self.special_ids = torch.tensor(
            [i for i, t in enumerate(self.token_list) if t.startswith("<") and t.endswith(">")]
        )
        # The first two text tokens must be a <lang> and a <task> token (checked per batch).
        self.task_ids = torch.tensor(
            [i for i, t in enumerate(self.token_list) if TASK_TOKEN.match(t)], dtype=torch.long
        )
        self.lang_ids = torch.tensor(
            [i for i, t in enumerate(self.token_list)
             if LANG_TOKEN.match(t) and t not in NOT_LANG_TOKENS and not TASK_TOKEN.match(t)],
            dtype=torch.long,
        )
        # The lang/task tables keep the rows of these tokens only (~300 of OWSM's 50k).
        for name, m in self.sides.items():
            if m.gate_predictor is None:  # fixed gates (static export)
                continue
            context = m.gate_predictor.context
            if {"lang", "task"} & set(context.kinds):
                if context.vocab_size != self.vocab_size:
                    key = "encoder_conf.context_vocab_size" if name == "enc" else "decoder"
                    raise ValueError(
                        f"{key} is {context.vocab_size} but the token list has {self.vocab_size} tokens"
                    )
                context.restrict({"lang": self.lang_ids, "task": self.task_ids})

    def make_context(
        self,
        tokens: torch.Tensor,
        spk_embed: Optional[torch.Tensor] = None,
        event_embed: Optional[torch.Tensor] = None,
        embed_lengths: Optional[Dict[str, Optional[torch.Tensor]]] = None,
    ) -> GateContext:
        """Checks and bundles the context of a batch.

        Args:
            tokens (torch.Tensor): (#batch, 2) <lang>/<task> token ids.
            spk_embed (torch.Tensor): (#batch, D_spk) or None.
            event_embed (torch.Tensor): (#batch, D_event) or None.
            embed_lengths (dict): "spk"/"event" -> (#batch,) sizes of each row's
                npy before ESPnet's collate padded them (``spk_embed_lengths``).

        Raises:
            ValueError: A missing embedding, an embedding whose size is not the
                configured ``<side>_conf.<kind>_embed_dim``, or a text that does
                not start with a <lang> and a <task> token.
        """
        kinds = self.context_kinds
        embeds = self.embed_context(spk_embed, event_embed, embed_lengths)
        if "lang" in kinds or "task" in kinds:
            tokens_cpu = tokens.cpu()
            bad = ~torch.isin(tokens_cpu[:, 0], self.lang_ids)
            bad |= ~torch.isin(tokens_cpu[:, 1], self.task_ids)
            if bad.any():
                row = int(bad.nonzero()[0])
                found = [self.token_list[int(i)] if 0 <= i < len(self.token_list) else int(i) for i in tokens[row]]
                raise ValueError(
                    f"text must start with a <lang> and a <task> token of the token list "
                    f"(e.g. '<deu><st_eng><notimestamps> ...'), found {found} in batch row "
                    f"{row}: a text without its '<lang><task>' prefix, or a language or task "
                    f"missing from the token list"
                )
        return GateContext(tokens=tokens, **embeds)

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        text_prev: torch.Tensor,
        text_prev_lengths: torch.Tensor,
        text_ctc: torch.Tensor,
        text_ctc_lengths: torch.Tensor,
        spk_embed: Optional[torch.Tensor] = None,
        spk_embed_lengths: Optional[torch.Tensor] = None,
        event_embed: Optional[torch.Tensor] = None,
        event_embed_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """S2T loss + sparsity loss.

        Args:
            speech (torch.Tensor): (#batch, samples).
            text (torch.Tensor): (#batch, L) ``<lang> <task> <notimestamps> ...`` ids.
            text_prev, text_ctc: As in ``ESPnetS2TModel``.
            spk_embed (torch.Tensor): (#batch, D_spk), if the gates use "spk".
            event_embed (torch.Tensor): (#batch, D_event), if they use "event".
        """
        context = self.make_context(
            text[:, :2], spk_embed, event_embed,
            embed_lengths={"spk": spk_embed_lengths, "event": event_embed_lengths},
        )
        context = self.speech_context(context, speech, speech_lengths)
        record = GateRecord()
        with self.gating_step() as step, gate_inputs(self, context, record):
            loss, stats, weight = super().forward(
                speech,
                speech_lengths,
                text,
                text_lengths,
                text_prev,
                text_prev_lengths,
                text_ctc,
                text_ctc_lengths,
                **kwargs,
            )
        lengths = {"enc": self._enc_frames, "dec": float(text_lengths.float().mean()) + 1}
        loss = self.add_sparsity_loss(loss, stats, step, lengths, record)
        return force_gatherable((loss, stats, weight), loss.device)

    def speech_context(
        self, context: Optional[GateContext], speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Optional[GateContext]:
        """``context`` with the speech span of ``speech``: the gates of the encoder and the
        decoder pool over the speech, not over OWSM's zero padding."""
        span = speech_span(speech, speech_lengths)
        if context is None or context.batch_size != span.size(0):
            return context
        return replace(context, speech_span=span)

    def encode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        context: Optional[GateContext] = None,
        record: Optional[GateRecord] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend + gated encoder.

        Args:
            speech (torch.Tensor): (#batch, samples).
            context (GateContext): The batch's gate context (given the speech span,
                ``speech_context``); None inside ``forward`` (which passes its own), and
                from ESPnet's own decoding CLI: then the context of its decoding prefix,
                shared with its decoder scorer (``prefix_scorer``, ``stock_inference``).
            record (GateRecord): Receives the encoder's gates.
        """
        scorer = self.prefix_scorer if context is None and not self.training else None
        if scorer is not None:  # taken once: no later call reads this prefix
            self.prefix_scorer = None
            context = scorer.context = self.speech_context(scorer.context, speech, speech_lengths)
        if context is None and record is None:
            enc, enc_lens = super().encode(speech, speech_lengths)
        else:
            context = self.speech_context(context, speech, speech_lengths)
            with gate_inputs(self, context, record):
                enc, enc_lens = super().encode(speech, speech_lengths)
        self._enc_frames = float(enc_lens.float().mean())
        return enc, enc_lens


def speech_span(speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(#batch, 2): the first and the last non-zero sample of each row as fractions of
    its length. OWSM's preprocessor pads with exact zeros, after the speech and, in
    training, before it (``speech_init_silence``); an all-zero row spans everything."""
    t = torch.arange(speech.size(1), device=speech.device)
    nonzero = (speech.reshape(speech.size(0), speech.size(1), -1) != 0).any(-1)
    nonzero &= t < lengths[:, None]
    found = nonzero.any(1)
    first = torch.where(found, nonzero.float().argmax(1), 0)
    last = torch.where(found, speech.size(1) - 1 - nonzero.flip(1).float().argmax(1), lengths - 1)
    n = lengths.clamp(min=1).to(torch.float32)
    return torch.stack([first / n, (last + 1) / n], 1)
