"""Gated decoding with ESPnet's ``Speech2Text``.

``Speech2TextGated`` is ``Speech2Text`` plus: the gate context of each
utterance (its ``<lang>``/``<task>`` symbols and optional speaker / event
embeddings), and a record of what each decode did: the hard gate decisions
of the encoder and the decoder, and the MACs actually spent
(``espnet_ext.s2t.meter``: encoder with its open units, every beam-search step
of the decoder with its open units).
Stock (ungated) models work too, counted with every unit open.

One decode path: ``decode_batch`` / ``decode_one`` run
``espnet_ext.s2t.lean_search`` wherever it applies (``search="lean"``);
otherwise, and in ``__call__``, ESPnet's own beam search runs, unchanged.

The gate context is passed, never stored: ``encode(..., context=, record=)``,
the decoder's ``compute_gates``/``GatedScorer`` (ESPnet's beam search), and a
``GateRecord`` per decode collects the decisions. ``call_with_context`` runs
ESPnet's ``Speech2Text.__call__`` that way.
"""

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from espnet2.bin.s2t_inference import Speech2Text

from espnet_ext.gating import GateContext, GatedModule, GateRecord
from espnet_ext.gating.model import encode
from espnet_ext.nets.transformer_decoder_token_condition import GatedScorer
from espnet_ext.s2t.lean_search import SEARCHES, LeanBeamSearch
from espnet_ext.s2t.meter import DecodeMeter, decoder_macs, encoder_macs, gflops


def _as_row(x) -> Optional[torch.Tensor]:
    if x is None:
        return None
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return x.reshape(1, -1)


@dataclass
class UttDecode:
    """What ``Speech2TextGated.decode_batch`` returns for one utterance.

    Attributes:
        results: As ``Speech2Text.__call__``: n-best (text, token, token_int,
            text_nospecial, hyp).
        gates: {"encoder": (layers, units), "decoder": (layers, 3)}.
        gflops: GFLOPs spent, per part and "total" (as ``DecodeMeter``).
    """

    results: list
    gates: Dict[str, torch.Tensor]
    gflops: Dict[str, float]


def is_special(token: str) -> bool:
    """A special token (``<eng>``, ``<asr>``, ``<0.00>``, ...): not in ``text_nospecial``."""
    return token[0] == "<" and token[-1] == ">"


def token_id(s2t: Speech2Text, sym: str, what: str) -> int:
    """Id of a special token ("<deu>") in ``s2t``'s token list; one-line error if absent."""
    if sym not in s2t.converter.token2id:
        known = [t for t in s2t.converter.token_list if t.startswith("<") and t.endswith(">")][:20]
        raise ValueError(f"unknown {what} {sym}: not in the token list (special tokens: {known} ...)")
    return s2t.converter.token2id[sym]


def gate_context(s2t: Speech2Text, lang_sym: str, task_sym: str, spk_embed=None, event_embed=None):
    """The gate context of one utterance decoded by ``s2t`` (ours or ESPnet's ``Speech2Text``).

    Args:
        lang_sym, task_sym (str): "<deu>", "<st_eng>", ...
        spk_embed, event_embed: (D,) arrays or tensors, or None.
    """
    ids = [token_id(s2t, lang_sym, "lang_sym"), token_id(s2t, task_sym, "task_sym")]
    tokens = torch.tensor([ids], device=s2t.device)
    spk, event = _as_row(spk_embed), _as_row(event_embed)
    spk = spk.to(s2t.device) if spk is not None else None
    event = event.to(s2t.device) if event is not None else None
    if hasattr(s2t.s2t_model, "make_context"):
        return s2t.s2t_model.make_context(tokens, spk, event)
    return GateContext(tokens=tokens, spk_embed=spk, event_embed=event)


def fixed_length(s2t: Speech2Text, speech) -> torch.Tensor:
    """(nsamples,) padded or trimmed to the model's fixed input length, as ESPnet does."""
    speech = torch.as_tensor(np.asarray(speech)).reshape(-1).to(getattr(torch, s2t.dtype))
    n = int(s2t.preprocessor_conf["speech_length"] * s2t.preprocessor_conf["fs"])
    return torch.nn.functional.pad(speech[:n], (0, max(0, n - speech.numel())))


def speech_context(model, context: Optional[GateContext], speech, lengths) -> Optional[GateContext]:
    """``context`` with the speech span of ``speech`` where the model uses one (S2T)."""
    if hasattr(model, "speech_context"):
        return model.speech_context(context, speech, lengths)
    return context


def call_with_context(s2t: Speech2Text, speech, text_prev=None, lang_sym=None, task_sym=None,
                      predict_time=None, spk_embed=None, event_embed=None,
                      record: Optional[GateRecord] = None):
    """ESPnet's ``Speech2Text.__call__`` (the same prefix, padding, beam search and results)
    with the gate context passed: to ``encode`` and to the beam search's ``GatedScorer``.

    The context is that of ``lang_sym``/``task_sym`` (the symbols of the decoding prefix)
    and the embeddings given, with the speech span of the padded speech.

    Args:
        s2t (Speech2Text): Ours or ESPnet's.
        record (GateRecord): Receives the encoder and decoder gates.
    """
    model = s2t.s2t_model
    lang_sym = lang_sym if lang_sym is not None else s2t.lang_sym
    task_sym = task_sym if task_sym is not None else s2t.task_sym
    primer = hyp_primer(s2t, lang_sym, task_sym, text_prev, predict_time)
    wave = fixed_length(s2t, speech).unsqueeze(0).to(s2t.device)
    lengths = wave.new_full([1], dtype=torch.long, fill_value=wave.size(1))
    context = gate_context(s2t, lang_sym, task_sym, spk_embed, event_embed)
    context = speech_context(model, context, wave, lengths)
    with GatedScorer.installed(s2t.beam_search, context, record):
        s2t.beam_search.set_hyp_primer(primer)
        enc, _ = encode(model, wave, lengths, context, record)
        intermediate = None
        if isinstance(enc, tuple):
            enc, intermediate = enc
        results = s2t._decode_single_sample(enc[0])
    if intermediate is not None:
        results = (results, s2t._decode_interctc(intermediate))
    return results


def hyp_primer(s2t: Speech2Text, lang_sym: str, task_sym: str, text_prev=None,
               predict_time: Optional[bool] = None) -> List[int]:
    """The decoder prefix of one utterance, as ``Speech2Text.__call__`` builds it."""
    model = s2t.s2t_model
    predict_time = predict_time if predict_time is not None else s2t.predict_time
    primer = [model.sos, token_id(s2t, lang_sym, "lang_sym"), token_id(s2t, task_sym, "task_sym")]
    if not predict_time:
        primer.append(s2t.converter.token2id[s2t.preprocessor_conf["notime_symbol"]])
    if text_prev is not None:
        if isinstance(text_prev, str):
            text_prev = s2t.converter.tokens2ids(s2t.tokenizer.text2tokens(text_prev))
        else:
            text_prev = torch.as_tensor(np.asarray(text_prev)).tolist()
        if model.na not in text_prev:
            primer = [model.sop] + text_prev + primer
    return primer


class Speech2TextGated(Speech2Text):
    """``Speech2Text`` for gated models (also works for stock ones).

    Extra ``__call__`` arguments: ``spk_embed`` (D_spk,) and ``event_embed``
    (D_event,), needed when the model's gates use them. ``__call__`` decodes as
    ESPnet's ``Speech2Text.__call__`` (ESPnet's beam search) with the context
    passed (``call_with_context``); after each call, ``gates`` holds the
    decisions it recorded {"encoder": (layers, units), "decoder": ...} and
    ``meter.gflops`` the compute spent.

    ``search``: "lean" (default) makes ``decode_batch`` / ``decode_one`` run
    ``LeanBeamSearch`` (tensor ops over all hypotheses of all utterances,
    keys/values cached; the same hypotheses as ESPnet's search) when the
    beam search allows it (see ``LeanBeamSearch.unsupported``: no CTC prefix
    scoring, no LM); "espnet", or a search the lean one does not support,
    decodes one by one with ESPnet's (``__call__``).

    ``src_kv_cache``: with ESPnet's search, let the gated decoder compute the
    source-attention K/V once per utterance (stock ESPnet recomputes them at
    every step). Turn it off to compare with a stock decoder on equal terms.
    """

    def __init__(self, *args, search: str = "lean", src_kv_cache: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if getattr(self.s2t_train_args, "preprocessor", None) == "s2t_whisper":
            # Whisper's byte-level BPE; ESPnet built a word tokenizer from token_type
            from espnet_ext.whisper.tokenizer import WhisperTokenizer

            self.tokenizer = WhisperTokenizer(self.converter.token_list)
            logging.info("Text tokenizer: Whisper's byte-level BPE (espnet_ext.whisper.tokenizer)")
        self.lean = LeanBeamSearch.for_search(self.beam_search, search)
        if hasattr(self.s2t_model.decoder, "cache_src_kv"):
            self.s2t_model.decoder.cache_src_kv = src_kv_cache
        self.meter = DecodeMeter(self.s2t_model)
        self.gates: Dict[str, torch.Tensor] = {}

    @property
    def search(self) -> str:
        """The beam search decode_batch runs: "lean", or "espnet" (asked for, or lean unsupported)."""
        return "lean" if self.lean is not None else "espnet"

    def context(self, lang_sym: str, task_sym: str, spk_embed=None, event_embed=None):
        """The gate context of one utterance."""
        return gate_context(self, lang_sym, task_sym, spk_embed, event_embed)

    @torch.no_grad()
    def decode_batch(
        self,
        speech: Sequence,
        lang_sym: Optional[Sequence[str]] = None,
        task_sym: Optional[Sequence[str]] = None,
        spk_embed: Optional[Sequence] = None,
        event_embed: Optional[Sequence] = None,
        text_prev: Optional[Sequence] = None,
    ) -> List[UttDecode]:
        """Decodes several utterances.

        With the lean search: in one pass. The encoder runs once on the batch;
        ``LeanBeamSearch`` advances all utterances together with one decoder
        call per step for all their hypotheses, each row with its utterance's
        encoder output and gates. Else (``search="espnet"``, or a beam search
        the lean one does not support) one by one with ESPnet's search
        (``__call__``). The result of each utterance equals its decode alone.

        Args:
            speech: B waveforms (nsamples,), any lengths (each is padded or
                trimmed to the model's fixed length, as ``__call__`` does).
            lang_sym, task_sym: B symbols each (default: the constructor's).
            spk_embed, event_embed: B embeddings each, or None.
            text_prev: B previous texts (or None each), or None.

        Returns:
            List[UttDecode]: one per utterance, in order.
        """
        n_utt = len(speech)
        if n_utt == 0:
            return []
        lang_sym = list(lang_sym) if lang_sym is not None else [self.lang_sym] * n_utt
        task_sym = list(task_sym) if task_sym is not None else [self.task_sym] * n_utt
        text_prev = list(text_prev) if text_prev is not None else [None] * n_utt
        for name, values in (("lang_sym", lang_sym), ("task_sym", task_sym), ("text_prev", text_prev),
                             ("spk_embed", spk_embed), ("event_embed", event_embed)):
            if values is not None and len(values) != n_utt:
                raise ValueError(f"{name} has {len(values)} entries for {n_utt} utterances")
        if self.lean is None:
            def pick(v, u):
                return v[u] if v is not None else None

            return [
                self._call_one(x, lang_sym[u], task_sym[u], pick(spk_embed, u), pick(event_embed, u),
                               text_prev[u])
                for u, x in enumerate(speech)
            ]
        model, decoder = self.s2t_model, self.s2t_model.decoder
        wave = torch.stack([fixed_length(self, x) for x in speech]).to(self.device)
        lengths = torch.full((n_utt,), wave.size(1), dtype=torch.long, device=self.device)
        context = self._batch_context(lang_sym, task_sym, spk_embed, event_embed)
        context = speech_context(model, context, wave, lengths)
        record = GateRecord()
        enc, enc_lens = encode(model, wave, lengths, context, record)
        if isinstance(enc, tuple):
            raise NotImplementedError("batched decoding of intermediate-CTC encoders")
        enc_gates = record.gates.get("encoder")
        enc_gates = None if enc_gates is None else enc_gates.detach().expand(n_utt, -1, -1)
        valid = torch.arange(enc.size(1), device=enc.device)[None] < enc_lens[:, None]
        dec_gates = None
        if isinstance(decoder, GatedModule):
            dec_gates = decoder.compute_gates(enc, valid, context, record).detach()
        self.meter.reset()  # ESPnet's search is not measured here: no counts of another decode
        primers = [hyp_primer(self, lang_sym[u], task_sym[u], text_prev[u]) for u in range(n_utt)]
        hyps = self.lean(enc, enc_lens, primers, dec_gates, self.maxlenratio, self.minlenratio)
        _, t_in, feat_dim = self.meter.input_shape  # recorded by the meter's encoder hook
        out = []
        for u in range(n_utt):
            n_frames = int(enc_lens[u])
            gates = {} if dec_gates is None else {"decoder": dec_gates[u].cpu()}
            if enc_gates is not None:
                gates["encoder"] = enc_gates[u].cpu()
            unit_gates = self.meter.unit_gates(model.encoder, None if enc_gates is None else enc_gates[u:u + 1])
            macs = {**encoder_macs(model.encoder, t_in, feat_dim, n_frames, unit_gates),
                    "decoder": decoder_macs(decoder, self.lean.steps[u], n_frames, gates.get("decoder"))}
            out.append(UttDecode(self._results(hyps[u]), gates, gflops(macs)))
        return out

    def _results(self, hyps) -> list:
        """N-best hypotheses -> (text, token, token_int, text_nospecial, hyp), as ESPnet's
        ``Speech2Text._decode_single_sample`` makes them."""
        model, out = self.s2t_model, []
        for hyp in hyps[: self.nbest]:
            token_int = hyp.yseq[(1 if self.partial_ar else 0) : -1].tolist()
            if not self.partial_ar:
                token_int = token_int[token_int.index(model.sos) + 1 :]
            token_int = [t for t in token_int if t != model.blank_id]
            token = self.converter.ids2tokens(token_int)
            nospecial = [x for x in token if not is_special(x)]
            text = text_nospecial = None
            if self.tokenizer is not None:
                text, text_nospecial = self.tokenizer.tokens2text(token), self.tokenizer.tokens2text(nospecial)
            out.append((text, token, token_int, text_nospecial, hyp))
        return out

    def decode_one(self, speech, lang_sym=None, task_sym=None, spk_embed=None, event_embed=None,
                   text_prev=None) -> UttDecode:
        """One utterance: ``decode_batch`` of one."""
        def one(v):
            return None if v is None else [v]

        return self.decode_batch([speech], one(lang_sym), one(task_sym), one(spk_embed),
                                 one(event_embed), one(text_prev))[0]

    def _call_one(self, speech, lang_sym, task_sym, spk_embed, event_embed, text_prev) -> UttDecode:
        results = self(speech, text_prev, lang_sym, task_sym, spk_embed=spk_embed, event_embed=event_embed)
        return UttDecode(results, dict(self.gates), self.meter.gflops)

    def _batch_context(self, lang_sym, task_sym, spk_embed, event_embed) -> GateContext:
        tokens = torch.tensor(
            [[token_id(self, lang, "lang_sym"), token_id(self, task, "task_sym")]
             for lang, task in zip(lang_sym, task_sym)],
            device=self.device,
        )

        def stack(values, name):
            if values is None or all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise ValueError(f"{name} is given for some utterances of the batch but not all")
            return torch.cat([_as_row(v) for v in values]).to(self.device)

        spk, event = stack(spk_embed, "spk_embed"), stack(event_embed, "event_embed")
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
        speech = fixed_length(self, speech).unsqueeze(0).to(self.device)
        lengths = torch.tensor([speech.size(1)], device=self.device)
        context = self.context(lang_sym, task_sym, spk_embed, event_embed)
        context = speech_context(model, context, speech, lengths)
        record = GateRecord()
        enc, enc_lens = encode(model, speech, lengths, context, record)
        if isinstance(model.decoder, GatedModule):
            valid = torch.ones(enc.shape[:2], dtype=torch.bool, device=enc.device)
            model.decoder.compute_gates(enc, valid, context, record)
        return {side: g[0].cpu() for side, g in record.gates.items()}

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
        record = GateRecord()
        with self.meter.measure(record):
            results = call_with_context(self, speech, text_prev, lang_sym, task_sym, predict_time,
                                        spk_embed, event_embed, record)
        self.gates = {side: g[0].detach().cpu() for side, g in record.gates.items()}
        return results


def format_gates(gates: torch.Tensor) -> str:
    """(layers, units) 0/1 -> '1111 1011 ...' (one group of unit bits per layer)."""
    return " ".join("".join(str(int(v)) for v in row) for row in gates.round().int().tolist())
