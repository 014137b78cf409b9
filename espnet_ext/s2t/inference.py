"""Gated decoding with ESPnet's ``Speech2Text``.

``Speech2TextGated`` is ``Speech2Text`` plus: the gate context of each
utterance (its ``<lang>``/``<task>`` symbols and optional speaker / event
embeddings), and a record of what each decode did: the hard gate decisions
of the encoder and the decoder, and the MACs actually spent (encoder with its
open units, and every beam-search step of the decoder with its open units).
Stock (ungated) models work too, counted with every unit open.
"""

from contextlib import contextmanager
from typing import Dict, Optional

import numpy as np
import torch

from espnet2.bin.s2t_inference import Speech2Text

from espnet_ext import flops
from espnet_ext.gating import GateContext, GatedModule, use_context


def _as_row(x) -> Optional[torch.Tensor]:
    if x is None:
        return None
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return x.reshape(1, -1)


class DecodeMeter:
    """Counts the MACs one decode spends.

    Encoder: conv subsampling + its open units for the real number of frames.
    Decoder: every ``forward_one_step`` call of the beam search, for the real
    number of hypotheses, prefix length and encoder frames, with its open
    units, plus the output layer. (The CTC prefix scorer, when used, is not
    counted.)
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.encoder, self.decoder = model.encoder, model.decoder
        self.encoder.register_forward_pre_hook(self._encoder_in, with_kwargs=True)
        self.encoder.register_forward_hook(self._encoder_out)
        self.reset()

    def reset(self) -> None:
        self.macs: Dict[str, float] = {"encoder": 0.0, "decoder": 0.0}
        self.decoder_steps = 0

    def _encoder_in(self, _module, args, kwargs):
        self._feats = args[0].shape  # (B, T_in, F)

    def _encoder_out(self, _module, _args, out):
        n_frames = int(out[1].max())
        _, t_in, feat_dim = self._feats
        gates = self._gates(self.encoder, flops.encoder_unit_names(self.encoder))
        self.macs["encoder"] += flops.subsampling(self.encoder, t_in, feat_dim)
        self.macs["encoder"] += flops.encoder_spent(self.encoder, n_frames, gates)

    def _gates(self, module, names) -> torch.Tensor:
        if isinstance(module, GatedModule) and module.last_gates is not None:
            return module.last_gates[0]  # one utterance: every row is the same
        return torch.ones(len(getattr(module, "encoders", getattr(module, "decoders", []))), len(names))

    @contextmanager
    def measure(self):
        """Counts the decoder steps run inside the block.

        Each step only records its shapes and gates; the MACs are summed at
        the end, so counting adds next to nothing to the decode time.
        """
        self.reset()
        decoder = self.decoder
        step = decoder.forward_one_step
        steps = []

        def counted(tgt, tgt_mask, memory, *args, **kwargs):
            out = step(tgt, tgt_mask, memory, *args, **kwargs)
            gates = decoder.last_gates if isinstance(decoder, GatedModule) else None
            steps.append((tgt.size(0), tgt.size(1), memory.size(1), gates))
            return out

        decoder.forward_one_step = counted
        try:
            yield self
        finally:
            del decoder.forward_one_step  # back to the class method
            self.macs["decoder"] = self._decoder_macs(steps)
            self.decoder_steps = len(steps)

    def _decoder_macs(self, steps) -> float:
        if not steps:
            return 0.0
        decoder = self.decoder
        # one query position: unit MACs are linear in the prefix t and frames T
        base = flops.decoder_units(decoder, 1, 0, 0)
        per_t = flops.decoder_units(decoder, 1, 1, 0) - base
        per_frame = flops.decoder_units(decoder, 1, 0, 1) - base
        total = 0.0
        for n, t, frames, gates in steps:
            open_rows = gates.sum(0).double().cpu() if gates is not None else float(n)
            total += float(((base + t * per_t + frames * per_frame) * open_rows).sum())
        out_layer = decoder.output_layer
        if out_layer is not None:
            total += sum(n for n, *_ in steps) * out_layer.in_features * out_layer.out_features
        return total

    @property
    def gflops(self) -> Dict[str, float]:
        """GFLOPs (2 x MACs / 1e9) per part and in total."""
        out = {k: 2 * v / 1e9 for k, v in self.macs.items()}
        out["total"] = sum(out.values())
        return out


class Speech2TextGated(Speech2Text):
    """``Speech2Text`` for gated models (also works for stock ones).

    Extra ``__call__`` arguments: ``spk_embed`` (D_spk,) and ``event_embed``
    (D_event,), needed when the model's gates use them. After each call,
    ``gates`` holds the decisions {"encoder": (layers, units), "decoder": ...}
    and ``meter.gflops`` the compute spent.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.meter = DecodeMeter(self.s2t_model)
        self.gates: Dict[str, torch.Tensor] = {}

    def _token_id(self, sym: str, what: str) -> int:
        if sym not in self.converter.token2id:
            known = [t for t in self.converter.token_list if t.startswith("<") and t.endswith(">")][:20]
            raise ValueError(f"unknown {what} {sym}: not in the token list (special tokens: {known} ...)")
        return self.converter.token2id[sym]

    def context(self, lang_sym: str, task_sym: str, spk_embed=None, event_embed=None):
        """The gate context of one utterance."""
        tokens = torch.tensor(
            [[self._token_id(lang_sym, "lang_sym"), self._token_id(task_sym, "task_sym")]],
            device=self.device,
        )
        spk, event = _as_row(spk_embed), _as_row(event_embed)
        spk = spk.to(self.device) if spk is not None else None
        event = event.to(self.device) if event is not None else None
        if hasattr(self.s2t_model, "make_context"):
            return self.s2t_model.make_context(tokens, spk, event)
        return GateContext(tokens=tokens, spk_embed=spk, event_embed=event)

    @torch.no_grad()
    def predict_gates(
        self, speech, lang_sym: str, task_sym: str, spk_embed=None, event_embed=None
    ) -> Dict[str, torch.Tensor]:
        """Gate decisions for one utterance without decoding it.

        Returns:
            {"encoder": (layers, units), "decoder": (layers, 3)} for the gated sides.
        """
        model = self.s2t_model
        speech = torch.as_tensor(np.asarray(speech), dtype=torch.float32).reshape(-1)
        n = int(self.preprocessor_conf["speech_length"] * self.preprocessor_conf["fs"])
        speech = torch.nn.functional.pad(speech[:n], (0, max(0, n - speech.numel())))
        speech = speech.unsqueeze(0).to(self.device)
        lengths = torch.tensor([speech.size(1)], device=self.device)
        context = self.context(lang_sym, task_sym, spk_embed, event_embed)
        with use_context(model, context):
            enc, enc_lens = model.encode(speech, lengths)
            gates = {}
            if isinstance(model.encoder, GatedModule):
                gates["encoder"] = model.encoder.last_gates[0].cpu()
            if isinstance(model.decoder, GatedModule):
                valid = torch.ones(enc.shape[:2], dtype=torch.bool, device=enc.device)
                gates["decoder"] = model.decoder.compute_gates(enc, valid, None)[0].cpu()
        return gates

    @torch.no_grad()
    def __call__(
        self,
        speech,
        text_prev=None,
        lang_sym: Optional[str] = None,
        task_sym: Optional[str] = None,
        predict_time: Optional[bool] = None,
        spk_embed=None,
        event_embed=None,
    ):
        lang_sym = lang_sym if lang_sym is not None else self.lang_sym
        task_sym = task_sym if task_sym is not None else self.task_sym
        model = self.s2t_model
        context = self.context(lang_sym, task_sym, spk_embed, event_embed)
        with use_context(model, context), self.meter.measure():
            results = super().__call__(speech, text_prev, lang_sym, task_sym, predict_time)
        self.gates = {
            name: m.last_gates[0].detach().cpu()
            for name, m in (("encoder", model.encoder), ("decoder", model.decoder))
            if isinstance(m, GatedModule) and m.last_gates is not None
        }
        return results


def format_gates(gates: torch.Tensor) -> str:
    """(layers, units) 0/1 -> '1111 1011 ...' (one group of unit bits per layer)."""
    return " ".join("".join(str(int(v)) for v in row) for row in gates.round().int().tolist())
