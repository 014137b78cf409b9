"""ESPnet S2T model with context-aware dynamic pruning.

Registered as ``model: espnet_gated``. It reads the context of every
utterance (the ``<lang>``/``<task>`` tokens at the start of ``text``, and the
optional ``spk_embed``/``event_embed`` inputs), hands it to the gated encoder
and decoder, and adds the sparsity loss ``alpha * (|g - s*| + (g - s*)^2)``,
where g is the fraction of gated units closed (ICLR 2025).
"""

from contextlib import ExitStack
from typing import Dict, List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_ext import flops
from espnet_ext.gating import (
    GateContext,
    GatedModule,
    force_gates,
    set_tau,
    use_context,
)
from espnet_ext.gating.schedule import GateSchedule

PRUNE_SCOPES = ("both", "encoder", "decoder")
WEIGHTINGS = ("count", "flops")


class ESPnetS2TGatedModel(ESPnetS2TModel):
    """``ESPnetS2TModel`` whose gated encoder/decoder follow the utterance context.

    Args:
        prune_scope (str): Gated modules that may close units: "both",
            "encoder" or "decoder"; the other side is kept fully open.
        sparsity_weighting (str): "count" (every unit counts 1) or "flops"
            (each unit weighted by its MACs for the batch's lengths).
        *args, **kwargs: ``ESPnetS2TModel`` arguments.

    The schedule options (``tau_ini``, ``sparsity_end``, ...) are top-level
    training options (see ``espnet_ext.s2t.task``); they configure
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
        if prune_scope not in PRUNE_SCOPES:
            raise ValueError(f"unknown prune_scope: {prune_scope} (choose from {PRUNE_SCOPES})")
        if sparsity_weighting not in WEIGHTINGS:
            raise ValueError(
                f"unknown sparsity_weighting: {sparsity_weighting} (choose from {WEIGHTINGS})"
            )
        self.prune_scope = prune_scope
        self.sparsity_weighting = sparsity_weighting
        self.gate_schedule = GateSchedule()
        self.sides = {
            name: m
            for name, m in (("enc", self.encoder), ("dec", self.decoder))
            if isinstance(m, GatedModule)
        }
        if not self.sides:
            raise ValueError(
                "model: espnet_gated needs a gated encoder or decoder "
                "(e_branchformer_token_condition / transformer_decoder_token_condition)"
            )
        for name, m in self.sides.items():
            if m.gate_predictor is None:  # fixed gates (static export)
                continue
            table = m.gate_predictor.context.proj
            if "lang" in table or "task" in table:
                size = (table["lang"] if "lang" in table else table["task"])[0].num_embeddings
                if size != self.vocab_size:
                    key = "encoder_conf.context_vocab_size" if name == "enc" else "decoder"
                    raise ValueError(
                        f"{key} is {size} but the token list has {self.vocab_size} tokens"
                    )
        self.special_ids = torch.tensor(
            [i for i, t in enumerate(self.token_list) if t.startswith("<") and t.endswith(">")]
        )

    @property
    def context_kinds(self) -> List[str]:
        """Context sources the gated modules need."""
        kinds = []
        for m in self.sides.values():
            if m.gate_predictor is not None:
                kinds += [k for k in m.gate_predictor.context.kinds if k not in kinds]
        return kinds

    def make_context(
        self,
        tokens: torch.Tensor,
        spk_embed: Optional[torch.Tensor] = None,
        event_embed: Optional[torch.Tensor] = None,
    ) -> GateContext:
        """Checks and bundles the context of a batch.

        Args:
            tokens (torch.Tensor): (#batch, 2) <lang>/<task> token ids.
            spk_embed (torch.Tensor): (#batch, D_spk) or None.
            event_embed (torch.Tensor): (#batch, D_event) or None.
        """
        kinds = self.context_kinds
        for kind, value in (("spk", spk_embed), ("event", event_embed)):
            if kind in kinds and value is None:
                raise ValueError(
                    f"gate_context has '{kind}' but the batch has no '{kind}_embed': pass "
                    f"--train_data_path_and_name_and_type <dump>/{kind}_embed.scp,{kind}_embed,npy "
                    "(and valid/inference data alike) with --allow_variable_data_keys true"
                )
        if "lang" in kinds or "task" in kinds:
            bad = ~torch.isin(tokens.cpu(), self.special_ids)
            if bad.any():
                row = int(bad.any(1).nonzero()[0])
                found = [self.token_list[int(i)] if 0 <= i < len(self.token_list) else int(i) for i in tokens[row]]
                raise ValueError(
                    f"text must start with <lang><task> tokens (e.g. '<deu><st_eng><notimestamps> ...'), "
                    f"found {found} in batch row {row}"
                )
        return GateContext(
            tokens=tokens,
            spk_embed=None if spk_embed is None or "spk" not in kinds else spk_embed.float(),
            event_embed=None if event_embed is None or "event" not in kinds else event_embed.float(),
        )

    def _out_of_scope(self) -> List[GatedModule]:
        keep = {"both": ("enc", "dec"), "encoder": ("enc",), "decoder": ("dec",)}[self.prune_scope]
        return [m for name, m in self.sides.items() if name not in keep]

    def _unit_weights(self, name: str, gates: torch.Tensor, lengths: Dict[str, float]):
        if self.sparsity_weighting == "count":
            return torch.ones_like(gates[0])
        m = self.sides[name]
        if name == "enc":
            w = flops.encoder_units(m, int(lengths["enc"]))
        else:
            n = int(lengths["dec"])
            w = flops.decoder_units(m, n, n, int(lengths["enc"]))
        return w.to(gates)

    def sparsity(
        self, lengths: Dict[str, float]
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Fraction of gated units closed, from the last forward's gates.

        Args:
            lengths (dict): Mean encoder frames ("enc") and decoder tokens
                ("dec") of the batch (for FLOPs weighting).

        Returns:
            torch.Tensor: Scalar g over the in-scope sides (differentiable).
            dict: Per side g ("enc", "dec"), detached.
        """
        out_of_scope = self._out_of_scope()
        closed, total, per_side = 0.0, 0.0, {}
        for name, m in self.sides.items():
            gates = m.last_gates  # (B, layers, units)
            w = self._unit_weights(name, gates, lengths)
            open_w = (gates * w).sum((1, 2)).mean()
            per_side[name] = (1.0 - open_w / w.sum()).detach()
            if m not in out_of_scope:
                closed = closed + (w.sum() - open_w)
                total = total + w.sum()
        return closed / total, per_side

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
        context = self.make_context(text[:, :2], spk_embed, event_embed)
        schedule = self.gate_schedule
        step = schedule.step
        tau, target = schedule.tau(step), schedule.target(step)
        if self.training and torch.is_grad_enabled():
            schedule.tick()
        set_tau(self, tau)
        with ExitStack() as stack:
            stack.enter_context(use_context(self, context))
            for m in self._out_of_scope():
                stack.enter_context(force_gates(m, 1.0))
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
        g, per_side = self.sparsity(lengths)
        loss_sparsity = schedule.loss(g, target)
        loss = loss + loss_sparsity
        stats.update(
            loss=loss.detach(),
            loss_sparsity=loss_sparsity.detach(),
            sparsity=g.detach(),
            sparsity_target=torch.tensor(target),
            tau=torch.tensor(tau),
            gate_step=torch.tensor(float(step)),
        )
        for name, value in per_side.items():
            stats[f"sparsity_{name}"] = value
        return force_gatherable((loss, stats, weight), loss.device)

    def encode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend + gated encoder (context from ``use_context``)."""
        enc, enc_lens = super().encode(speech, speech_lengths)
        self._enc_frames = float(enc_lens.float().mean())
        return enc, enc_lens
