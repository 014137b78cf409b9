"""Gated ASR decoding: ESPnet's ``Speech2Text`` plus gate decisions and GFLOPs.

``Speech2TextGated`` hands the optional gate context (speaker / event embedding) to the
model, and after each call holds the encoder's hard gate decisions and the GFLOPs actually
spent, counted as S2T decoding counts them (``espnet_ext.s2t.meter``): the input layer, the
open attention/FFN units for the real number of frames, and the decoder's beam-search steps.
It decodes as S2T does: with ``espnet_ext.s2t.lean_search`` where it applies (no CTC prefix
scoring, no LM), else with ESPnet's own beam search, unchanged. Its interface is that of
``espnet_ext.s2t.inference.Speech2TextGated`` (n-best with ``text_nospecial``, ``gates`` per
gated side, ``decode_batch``), so S2T and ASR share one decode loop, record and
writer (``espnet_ext.bin.s2t_inference``). Stock (ungated) Transformer models work too, counted
with every unit open.

The command, ESPnet's ``python -m espnet2.bin.asr_inference`` options plus ``--search``,
``--src_kv_cache``, ``--audio_mismatch`` (what ``scripts/decode.py --task asr`` runs), writes
what S2T decoding writes (``espnet_ext.bin.s2t_inference``): ``1best_recog/{text,token,
token_int,score,text_nospecial}``, ``gates/{units,encoder}``, ``gflops`` (the whole decode),
``decode_seconds``; resumable (``logdir/decoded.jsonl``):

    python -m espnet_ext.asr.inference --asr_train_config exp/gated/config.yaml \\
        --asr_model_file exp/gated/valid.acc.ave.pth --config conf/decode_asr.yaml \\
        --data_path_and_name_and_type dump/raw/test_clean/wav.scp,speech,sound \\
        --output_dir exp/gated/decode_test_clean
"""

import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from espnet_ext import startup

startup.command(__name__)  # as a command, before ESPnet is imported: faster start-up

from espnet2.asr.encoder.transformer_encoder import TransformerEncoder  # noqa: E402
from espnet2.bin.asr_inference import Speech2Text  # noqa: E402

from espnet_ext.gating import GatedModule, GateRecord, gate_inputs  # noqa: E402
from espnet_ext.gating.model import encode  # noqa: E402
from espnet_ext.nets.transformer_decoder_token_condition import GatedScorer  # noqa: E402
from espnet_ext.s2t.inference import UttDecode, is_special  # noqa: E402
from espnet_ext.s2t.lean_search import LeanBeamSearch  # noqa: E402
from espnet_ext.s2t.meter import DecodeMeter, decoder_macs  # noqa: E402

PROG = "espnet_ext.asr.inference"


def _row(x) -> Optional[torch.Tensor]:
    return None if x is None else torch.as_tensor(np.asarray(x), dtype=torch.float32).reshape(1, -1)


class Speech2TextGated(Speech2Text):
    """``Speech2Text`` for gated ASR models (and stock Transformer ones).

    Extra ``__call__`` arguments: ``spk_embed`` (D_spk,), ``event_embed`` (D_event,), needed
    when the gates use them. ``__call__`` returns the n-best as S2T's ``Speech2Text`` does:
    (text, token, token_int, text_nospecial, hyp). After each call: ``gates`` {"encoder":
    (layers, units)} of the gated sides (empty for a stock model), ``meter.gflops`` per part
    and in total, and ``encoder_gflops``.

    ``search``: "lean" (default) decodes with ``LeanBeamSearch`` when the beam search allows
    it (``LeanBeamSearch.unsupported``); "espnet", or a search it does not support, with
    ESPnet's. ``src_kv_cache``: as for S2T, with ESPnet's search and a gated decoder.
    """

    def __init__(self, *args, search: str = "lean", src_kv_cache: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        encoder = self.asr_model.encoder
        if not isinstance(encoder, TransformerEncoder):
            raise ValueError(
                f"{PROG} counts Transformer encoders only, got {type(encoder).__name__}"
            )
        self.lean = LeanBeamSearch.for_search(self.beam_search, search)
        if hasattr(self.asr_model.decoder, "cache_src_kv"):
            self.asr_model.decoder.cache_src_kv = src_kv_cache
        self.meter = DecodeMeter(self.asr_model)
        self.gates: Dict[str, torch.Tensor] = {}

    @property
    def search(self) -> str:
        """The beam search that runs: "lean", or "espnet" (asked for, or lean unsupported)."""
        return "lean" if self.lean is not None else "espnet"

    @property
    def encoder_gflops(self) -> float:
        """GFLOPs of the last call's input layer and encoder."""
        g = self.meter.gflops
        return g["subsampling"] + g["encoder"]

    @torch.no_grad()
    def __call__(self, speech, spk_embed=None, event_embed=None):
        model = self.asr_model
        context = None
        if hasattr(model, "make_context"):
            dev = next(model.parameters()).device
            spk, event = _row(spk_embed), _row(event_embed)
            context = model.make_context(
                None if spk is None else spk.to(dev), None if event is None else event.to(dev)
            )
        record = GateRecord()
        if self.lean is None:  # ESPnet's code calls the encoder; its beam search, our scorer
            with self.meter.measure(record), gate_inputs(model, context, record), \
                    GatedScorer.installed(self.beam_search, context, record):
                results = super().__call__(speech)
            results = [(text, token, token_int, self._nospecial(token), hyp)
                       for text, token, token_int, hyp in results]
        else:
            results = self._lean_decode(speech, context, record)
        self.gates = {side: g[0].detach().cpu() for side, g in record.gates.items()}
        return results

    def _nospecial(self, token: List[str]) -> Optional[str]:
        """The text without special tokens (``<...>``), as S2T's ``text_nospecial``."""
        if self.tokenizer is None:
            return None
        return self.tokenizer.tokens2text([x for x in token if not is_special(x)])

    def _lean_decode(self, speech, context, record: GateRecord) -> list:
        """``__call__``'s n-best with the lean search."""
        model, decoder = self.asr_model, self.asr_model.decoder
        self.meter.reset()
        speech = torch.as_tensor(np.asarray(speech)).reshape(1, -1).to(getattr(torch, self.dtype))
        lengths = speech.new_full([1], dtype=torch.long, fill_value=speech.size(1))
        enc, enc_lens = encode(model, speech.to(self.device), lengths.to(self.device), context, record)
        if isinstance(enc, tuple):
            raise NotImplementedError("the lean search with intermediate-CTC encoders: use search='espnet'")
        self.meter.count_encoder(record.gates.get("encoder"))
        gates = None
        if isinstance(decoder, GatedModule):
            valid = torch.ones(enc.shape[:2], dtype=torch.bool, device=enc.device)
            gates = decoder.compute_gates(enc, valid, context, record).detach()
        hyps = self.lean(enc, enc_lens, [[model.sos]], gates, self.maxlenratio, self.minlenratio)[0]
        self.meter.macs["decoder"] = decoder_macs(
            decoder, self.lean.steps[0], int(enc_lens[0]), None if gates is None else gates[0]
        )
        results = []
        for hyp in hyps[: self.nbest]:  # as ESPnet's Speech2Text._decode_single_sample
            token_int = [t for t in hyp.yseq[1:-1].tolist() if t != 0]  # blank: 0
            token = self.converter.ids2tokens(token_int)
            text = self.tokenizer.tokens2text(token) if self.tokenizer is not None else None
            results.append((text, token, token_int, self._nospecial(token), hyp))
        return results

    def decode_batch(self, speech: Sequence, spk_embed: Optional[Sequence] = None,
                     event_embed: Optional[Sequence] = None,
                     text_prev: Optional[Sequence] = None) -> List[UttDecode]:
        """Decodes several utterances, one by one (ASR input is not padded to one length);
        the interface of S2T's ``decode_batch``. ``text_prev``: must be None (no prompt)."""
        if text_prev is not None and any(t is not None for t in text_prev):
            raise ValueError("text_prev: the ASR task has no previous-text prompt")
        out = []
        for u, x in enumerate(speech):
            results = self(x, None if spk_embed is None else spk_embed[u],
                           None if event_embed is None else event_embed[u])
            out.append(UttDecode(results, dict(self.gates), self.meter.gflops))
        return out


def main(cmd=None):
    """The ASR twin of ``python -m espnet_ext.bin.s2t_inference`` (the same loop and files)."""
    from espnet_ext.bin import s2t_inference  # imports ESPnet's S2T modules: only as a command

    return s2t_inference.main(cmd, task="asr")


if __name__ == "__main__":
    main(sys.argv[1:])
