"""ESPnet S2T model trained with L0 structure masks and a FLOPs Lagrangian.

Registered as ``model: espnet_l0``; use it with ``encoder: e_branchformer_l0``
and/or ``decoder: transformer_decoder_l0``. The loss is ESPnet's S2T loss plus

    lambda1 * (s - t) + lambda2 * (s - t)^2,

where s is the expected FLOPs fraction of the masked model (expected MACs of
encoder + decoder for the batch's mean lengths, the decoder counted as a beam
search by default, divided by the unpruned MACs)
and t the target, ramped linearly from 1.0 to ``target_flops`` over
``target_warmup_steps`` (DPHuBERT, arXiv 2302.14132). The masks' ``log_alpha``
and the multipliers get optimizer groups of their own (``l0_lr``; the
multipliers by gradient ascent), see ``espnet_ext.pruning.lagrangian``.

Reported: ``flops_expected``, ``flops_target``, ``loss_l0``, ``lambda1``,
``lambda2`` and the expected kept fraction of every mask group.
"""

import logging
from typing import Dict, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.s2t.espnet_model import ESPnetS2TModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_ext import flops
from espnet_ext.pruning.lagrangian import Lagrangian, param_groups
from espnet_ext.pruning.structured import EBranchformerL0Encoder, TransformerDecoderL0, l0_modules

L0_MODEL_KEYS = ("target_flops", "target_warmup_steps", "l0_lr", "l0_lambda_lr", "flops_beam")


class ESPnetS2TL0Model(ESPnetS2TModel):
    """``ESPnetS2TModel`` + the L0 Lagrangian on the expected FLOPs fraction.

    Args:
        target_flops (float): Final target of the expected FLOPs fraction
            (encoder + decoder), e.g. 0.7 keeps 70% of the MACs.
        target_warmup_steps (int): Optimizer steps of the linear target ramp.
        l0_lr (float): Learning rate of the masks' ``log_alpha``; scaled by
            the scheduler like the others.
        l0_lambda_lr (float): Learning rate of the multipliers (ascent);
            default ``l0_lr``. The multipliers must grow until the penalty's
            pull on ``log_alpha`` outweighs the task loss's, so a task loss in
            the hundreds (ESPnet's S2T loss is summed over tokens) or a short
            run needs a larger value.
        flops_beam (int): How the decoder's FLOPs are counted: > 0 as a beam
            search with this beam over the batch's mean target length (what
            decoding spends, and what ``espnet_ext.bin.match_flops`` and the
            recipe measure: the budget is a decode budget); 0: one
            teacher-forced pass.
        *args, **kwargs: ``ESPnetS2TModel`` arguments.
    """

    @typechecked
    def __init__(
        self,
        *args,
        target_flops: float = 0.7,
        target_warmup_steps: int = 1000,
        l0_lr: float = 0.02,
        l0_lambda_lr: Optional[float] = None,
        flops_beam: int = 5,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if not l0_modules(self):
            raise ValueError(
                "model: espnet_l0 needs encoder: e_branchformer_l0 and/or decoder: transformer_decoder_l0"
            )
        self.lagrangian = Lagrangian(target_flops, 1.0, target_warmup_steps)
        self.l0_lr = l0_lr
        self.l0_lambda_lr = l0_lambda_lr
        if flops_beam < 0:
            raise ValueError(f"flops_beam must be >= 0, got {flops_beam}")
        self.flops_beam = flops_beam
        self._feats_shape = None
        self._floor = None
        self.encoder.register_forward_pre_hook(self._record_feats)

    def _record_feats(self, _module, args):
        self._feats_shape = args[0].shape  # (B, T_in, F)

    def split_param_groups(self, optimizer: torch.optim.Optimizer) -> None:
        """Called by the task on its fresh optimizer (``espnet_ext.task.GatedTask``)."""
        param_groups(optimizer, self, self.l0_lr, self.l0_lambda_lr)

    def expected_flops(self, n_tokens: float, n_memory: int) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Expected FLOPs fraction s of the last batch's shapes.

        Args:
            n_tokens (float): Mean decoder positions.
            n_memory (int): Encoder frames.

        Returns:
            torch.Tensor: s (differentiable scalar).
            dict: Full GFLOPs per side ("enc", "dec").
        """
        _, t_in, feat_dim = self._feats_shape
        expected, full = 0.0, {}
        for name, m in (("enc", self.encoder), ("dec", self.decoder)):
            if isinstance(m, EBranchformerL0Encoder):
                e, f = m.expected_macs(int(t_in), int(feat_dim))
            elif isinstance(m, TransformerDecoderL0):
                e, f = m.expected_macs(max(1, int(round(n_tokens))), n_memory, self.flops_beam)
            else:
                continue
            expected = expected + e
            full[name] = f
        return expected / sum(full.values()), {k: flops.to_gflops(v) for k, v in full.items()}

    @torch.no_grad()
    def flops_floor(self, n_tokens: float, n_memory: int) -> float:
        """The FLOPs fraction left when every mask is closed (the reachable minimum)."""
        sets = [m.l0_masks for m in l0_modules(self)]
        for ms in sets:
            ms.floor_mode = True
        try:
            return float(self.expected_flops(n_tokens, n_memory)[0])
        finally:
            for ms in sets:
                ms.floor_mode = False

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
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """S2T loss + the FLOPs Lagrangian (arguments as ``ESPnetS2TModel``)."""
        loss, stats, weight = super().forward(
            speech, speech_lengths, text, text_lengths, text_prev, text_prev_lengths,
            text_ctc, text_ctc_lengths, **kwargs,
        )
        n_memory = self._enc_frames
        n_tokens = float(text_lengths.float().mean()) + 1
        s, _ = self.expected_flops(n_tokens, n_memory)
        if self._floor is None:
            self._floor = self.flops_floor(n_tokens, n_memory)
            if self.lagrangian.target_end < self._floor:
                logging.warning(
                    f"target_flops {self.lagrangian.target_end} is below {self._floor:.3f}, the "
                    "FLOPs fraction left with every mask closed: prune more structures (l0_prune)")
        target = self.lagrangian.target()
        if self.training and torch.is_grad_enabled():
            self.lagrangian.tick()
        loss_l0 = self.lagrangian(s.to(loss.dtype), target)
        loss = loss + loss_l0
        stats.update(
            loss=loss.detach(),
            loss_l0=loss_l0.detach(),
            flops_expected=s.detach(),
            flops_target=torch.tensor(target),
            flops_floor=torch.tensor(self._floor),
            lambda1=self.lagrangian.lambda1.detach().clone(),
            lambda2=self.lagrangian.lambda2.detach().clone(),
        )
        for side, m in (("enc", self.encoder), ("dec", self.decoder)):
            if m in l0_modules(self):
                for group, keys in m.l0_masks.groups.items():
                    kept = sum(float(m.l0_masks.masks[k].l0_norm().detach()) for k in keys)
                    total = sum(m.l0_masks.masks[k].n_units for k in keys)
                    stats[f"kept_{side}_{group}"] = torch.tensor(kept / total)
        return force_gatherable((loss, stats, weight), loss.device)

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        """ESPnet's encode; records the encoder frames for the FLOPs count."""
        enc, enc_lens = super().encode(speech, speech_lengths)
        self._enc_frames = int(enc.size(1))
        return enc, enc_lens
