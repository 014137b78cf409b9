"""What every gated ESPnet model adds (``GatedModelMixin``): the sparsity loss and statistics.

g = fraction of gated units closed (averaged over the batch, over the
in-scope gated modules, optionally weighted by each unit's MACs); the loss is
``alpha * (|g - s*| + (g - s*)^2)`` (ICLR 2025) or its Lagrangian form, with
the target s* and the Gumbel temperature from ``GateSchedule``. ``GatedModelMixin`` holds this
for the S2T model (``espnet_ext.s2t.espnet_model``) and the ASR model
(``espnet_ext.asr.espnet_model``) alike.
"""

from contextlib import ExitStack, contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from espnet_ext.gating.context import GateContext
from espnet_ext.gating.gated import GatedModule, GateRecord, force_gates, gate_inputs, set_tau
from espnet_ext.gating.schedule import GateSchedule

PRUNE_SCOPES = ("both", "encoder", "decoder")
WEIGHTINGS = ("count", "flops")


class GatedModelMixin:
    """Sparsity machinery of an ESPnet model (``torch.nn.Module``) with gated
    ``self.encoder`` and/or ``self.decoder``.

    Call ``init_gating`` at the end of ``__init__``; in ``forward``, run the
    stock loss inside ``with self.gating_step() as step, gate_inputs(self, context,
    record):`` and then ``self.add_sparsity_loss(loss, stats, step, lengths, record)``.
    """

    def init_gating(self, prune_scope: str = "both", sparsity_weighting: str = "count") -> None:
        """Validates the options and finds the gated sides.

        Args:
            prune_scope (str): Gated modules that may close units: "both",
                "encoder" or "decoder"; the other side is kept fully open.
            sparsity_weighting (str): "count" (every unit counts 1) or "flops"
                (each unit weighted by its MACs for the batch's lengths).
        """
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
                f"model: {type(self).__name__} needs a gated encoder or decoder "
                "(e_branchformer_token_condition / transformer_token_condition / "
                "transformer_decoder_token_condition)"
            )
        # ESPnet's own decoding CLI passes no context; its beam search's prefix holds
        # <lang>/<task>: the one patch (espnet_ext.s2t.stock_inference) calls this hook.
        self.prefix_scorer = None  # the scorer it installed, until the next encode() takes it
        if self.decoder is not None:
            self.decoder.hyp_primer_hook = self.take_prefix
        # The out-of-scope side is forced open, so its predictor never runs: frozen, it has
        # no parameter that DDP waits a gradient for (else the 2nd iteration stops).
        for m in self._out_of_scope():
            if m.gate_predictor is not None:
                m.gate_predictor.requires_grad_(False)

    def take_prefix(self, primer) -> Optional[GateContext]:
        """The gate context of ESPnet's beam search prefix (``set_hyp_primer``): its
        <lang>/<task> after <sos> (None where the gates need speaker/event context)."""
        ids = [int(i) for i in primer]
        sos = getattr(self, "sos", None)
        start = ids.index(sos) + 1 if sos in ids else len(ids)
        if start + 2 <= len(ids) and set(self.context_kinds) <= {"lang", "task"}:
            device = next(self.parameters()).device
            return GateContext(tokens=torch.tensor([ids[start:start + 2]], device=device))
        return None

    @property
    def context_kinds(self) -> List[str]:
        """Context sources the gated modules need."""
        kinds = []
        for m in self.sides.values():
            if m.gate_predictor is not None:
                kinds += [k for k in m.gate_predictor.context.kinds if k not in kinds]
        return kinds

    def embed_context(
        self,
        spk_embed: Optional[torch.Tensor] = None,
        event_embed: Optional[torch.Tensor] = None,
        embed_lengths: Optional[Dict[str, Optional[torch.Tensor]]] = None,
    ) -> Dict[str, torch.Tensor]:
        """The batch's speaker/event embeddings that the gates use, checked.

        Args:
            spk_embed (torch.Tensor): (#batch, D_spk) or None.
            event_embed (torch.Tensor): (#batch, D_event) or None.
            embed_lengths (dict): "spk"/"event" -> (#batch,) sizes of each row's
                npy before ESPnet's collate padded them (``spk_embed_lengths``).

        Returns:
            Dict[str, torch.Tensor]: ``GateContext`` keyword arguments
                (``spk_embed``/``event_embed``, float).

        Raises:
            ValueError: A missing embedding, or one whose size is not the
                configured ``<side>_conf.<kind>_embed_dim``.
        """
        kinds = self.context_kinds
        out = {}
        for kind, value in (("spk", spk_embed), ("event", event_embed)):
            if kind not in kinds:
                continue
            if value is None:
                raise ValueError(
                    f"gate_context has '{kind}' but the batch has no '{kind}_embed': pass "
                    f"--train_data_path_and_name_and_type <dump>/{kind}_embed.scp,{kind}_embed,npy "
                    "(and valid/inference data alike) with --allow_variable_data_keys true"
                )
            self._check_embed_dim(kind, value, (embed_lengths or {}).get(kind))
            out[f"{kind}_embed"] = value.float()
        return out

    def _check_embed_dim(
        self, kind: str, value: torch.Tensor, lengths: Optional[torch.Tensor]
    ) -> None:
        """Raises a ValueError naming the data key and both sizes on a dim mismatch."""
        for name, m in self.sides.items():
            proj = None if m.gate_predictor is None else m.gate_predictor.context.proj
            if proj is None or kind not in proj:
                continue
            expected = proj[kind][0].in_features
            sizes = {int(value.size(-1))} if value.dim() == 2 else {-1}
            if lengths is not None:
                sizes = {int(n) for n in lengths.reshape(-1).tolist()}
            if value.dim() != 2 or sizes != {expected}:
                side = "encoder_conf" if name == "enc" else "decoder_conf"
                actual = sorted(sizes - {expected}) or tuple(value.shape)
                raise ValueError(
                    f"{kind}_embed: the batch's vectors have size {actual} but "
                    f"{side}.{kind}_embed_dim is {expected}: the npys of {kind}_embed.scp come "
                    f"from another extractor (re-extract them with python -m "
                    f"espnet_ext.bin.extract_context, or set {side}.{kind}_embed_dim)"
                )

    def _out_of_scope(self) -> List[GatedModule]:
        keep = {"both": ("enc", "dec"), "encoder": ("enc",), "decoder": ("dec",)}[self.prune_scope]
        return [m for name, m in self.sides.items() if name not in keep]

    def _unit_weights(self, name: str, gates: torch.Tensor, lengths: Dict[str, float]):
        if self.sparsity_weighting == "count":
            return torch.ones_like(gates[0])
        # each gated module knows the MACs of its units (encoder frames, decoder tokens)
        return self.sides[name].unit_costs(int(lengths["enc"]), int(lengths.get("dec", 1))).to(gates)

    def sparsity(
        self, lengths: Dict[str, float], record: GateRecord
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Fraction of gated units closed, from a forward's gates.

        Args:
            lengths (dict): Mean encoder frames ("enc") and decoder tokens
                ("dec") of the batch (for FLOPs weighting).
            record (GateRecord): The forward's gate decisions.

        Returns:
            torch.Tensor: Scalar g over the in-scope sides (differentiable).
            dict: Per side g ("enc", "dec"), detached.
        """
        out_of_scope = self._out_of_scope()
        closed, total, per_side = 0.0, 0.0, {}
        for name, m in self.sides.items():
            gates = record.gates[m.side]  # (B, layers, units)
            w = self._unit_weights(name, gates, lengths)
            open_w = (gates * w).sum((1, 2)).mean()
            per_side[name] = (1.0 - open_w / w.sum()).detach()
            if m not in out_of_scope:
                closed = closed + (w.sum() - open_w)
                total = total + w.sum()
        return closed / total, per_side

    @contextmanager
    def gating_step(self) -> Iterator[Dict[str, float]]:
        """Scope of one forward: sets tau, counts a training step, keeps the
        out-of-scope side open.

        Yields:
            dict: "step", "tau" and "target" (s*) of this forward.
        """
        schedule = self.gate_schedule
        step = schedule.step
        info = {"step": step, "tau": schedule.tau(step), "target": schedule.target(step)}
        if self.training and torch.is_grad_enabled():
            schedule.tick()
        set_tau(self, info["tau"])
        with ExitStack() as stack:
            for m in self._out_of_scope():
                stack.enter_context(force_gates(m, 1.0))
            yield info

    def add_sparsity_loss(
        self,
        loss: torch.Tensor,
        stats: Dict[str, torch.Tensor],
        step: Dict[str, float],
        lengths: Dict[str, float],
        record: GateRecord,
    ) -> torch.Tensor:
        """Adds the sparsity loss (``GateSchedule.loss``) to ``loss`` and the gate stats to ``stats``.

        Args:
            loss (torch.Tensor): The stock model's loss.
            stats (dict): The stock model's stats (updated in place: loss,
                loss_sparsity, sparsity, sparsity_target, tau, gate_step,
                sparsity_<side>, and lambda1/lambda2 of "lagrangian").
            step (dict): What ``gating_step`` yielded.
            lengths (dict): Mean encoder frames ("enc") and decoder tokens ("dec").
            record (GateRecord): The forward's gate decisions.

        Returns:
            torch.Tensor: The total loss.
        """
        g, per_side = self.sparsity(lengths, record)
        loss_sparsity = self.gate_schedule.loss(g, step["target"], loss)
        loss = loss + loss_sparsity
        stats.update(
            loss=loss.detach(),
            loss_sparsity=loss_sparsity.detach(),
            sparsity=g.detach(),
            sparsity_target=torch.tensor(step["target"]),
            tau=torch.tensor(step["tau"]),
            gate_step=torch.tensor(float(step["step"])),
        )
        for name, value in per_side.items():
            stats[f"sparsity_{name}"] = value
        multipliers = getattr(self.gate_schedule, "multipliers", None)
        if multipliers is not None:
            stats.update(lambda1=multipliers.lambda1.detach().clone(),
                         lambda2=multipliers.lambda2.detach().clone())
        return loss


def encode(model: torch.nn.Module, speech: torch.Tensor, lengths: torch.Tensor,
           context: Optional[GateContext], record: Optional[GateRecord] = None):
    """``model.encode(speech, lengths)`` with the gate context: a gated model takes it as
    arguments; ESPnet's own model classes (static exports, Whisper) through ``gate_inputs``."""
    if isinstance(model, GatedModelMixin):
        return model.encode(speech, lengths, context=context, record=record)
    with gate_inputs(model, context, record):
        return model.encode(speech, lengths)
