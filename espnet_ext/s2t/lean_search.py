"""Beam search of a batch of utterances in tensor operations.

ESPnet's ``BatchBeamSearch`` batches the hypotheses of one utterance but keeps
them as Python objects: every step it unbatches them into ``Hypothesis``
objects, re-stacks every layer's cache, and its decoder re-projects the keys
and values of the whole prefix (self-attention) and of every encoder frame
(source attention). ``LeanBeamSearch`` runs the same search on every running
hypothesis of every utterance at once:

* source keys/values once per utterance, self-attention keys/values once per
  position (cached and appended), so a step costs one query position;
* one decoder call per step for all rows, each with its utterance's gates
  (a closed unit is skipped for its rows, ``espnet_ext.gating.gated_residual``);
* per utterance one top-k over its (hypotheses x vocabulary) scores flattened
  in ESPnet's order, ESPnet's scores, end detection, length rules and retry;
  caches reordered by one ``index_select``.

The hypotheses are those of ``BatchBeamSearch`` on each utterance alone
(scores equal up to float rounding). It covers the search OWSM uses: the
attention decoder, S2T's timestamp filter and an optional length bonus
(``ctc_weight: 0``, no LM); ``LeanBeamSearch.unsupported`` names what needs
ESPnet's search.
"""

import logging
import math
from functools import partial
from itertools import accumulate
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet.nets.beam_search import BeamSearch, Hypothesis
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.decoder_layer import DecoderLayer
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask

from espnet_ext.gating import gated_residual, open_rows, row_plan
from espnet_ext.nets.transformer_decoder_token_condition import (
    GatedScorer,
    attend,
    ffn,
    memory_kv,
    src_attn_cached,
)
from espnet_ext.s2t.meter import Step

# the beam searches a decode can run: this one, or ESPnet's own
SEARCHES = ("lean", "espnet")

# ESPnet's end detection (espnet.nets.e2e_asr_common.end_detect): stop when the
# best ended hypotheses of the last M lengths all trail the best by > -D_END.
END_M, END_D = 3, math.log(1 * math.exp(-10))


def scorer_decoder(search: BeamSearch) -> torch.nn.Module:
    """The decoder that ``search`` scores with (unwrapped from a ``GatedScorer``)."""
    scorer = search.full_scorers["decoder"]
    return scorer.decoder if isinstance(scorer, GatedScorer) else scorer


def _layer_issue(layer) -> Optional[str]:
    if not isinstance(layer, DecoderLayer):
        return f"decoder layers of type {type(layer).__name__}"
    if not layer.normalize_before or layer.concat_after:
        return "normalize_before=false or concat_after=true"
    for attn in (layer.self_attn, layer.src_attn):
        if attn is not None and (
            not isinstance(attn, MultiHeadedAttention) or getattr(attn, "use_flash_attn", False)
        ):
            return f"attention {type(attn).__name__} (flash attention)"
    return None


class LeanBeamSearch:
    """ESPnet's beam search for a batch of utterances, advanced with tensor ops.

    Args:
        decoder: An ESPnet ``TransformerDecoder`` (stock or gated).
        beam_size (int): Beam size.
        eos (int): End token id (the start is in each utterance's primer).
        weights (Dict[str, float]): Weight of each scorer, in ESPnet's order:
            "decoder", optionally "length_bonus" (ESPnet's ``penalty``) and
            "scorefilter" (S2T's timestamp rules).
        normalize_length (bool): Rank ended hypotheses by score per token.
        score_filter: ``espnet2.bin.s2t_inference.ScoreFilter`` (with "scorefilter").
    """

    def __init__(
        self,
        decoder: torch.nn.Module,
        beam_size: int,
        eos: int,
        weights: Dict[str, float],
        normalize_length: bool = False,
        score_filter=None,
    ):
        if "scorefilter" in weights and score_filter is None:
            raise ValueError("a scorefilter weight needs the score_filter")
        self.decoder = decoder
        self.beam_size = beam_size
        self.eos = eos
        self.weights = dict(weights)
        self.score_filter = score_filter
        self.normalize_length = normalize_length
        # per utterance of the last call: its steps (``espnet_ext.s2t.meter.decoder_macs`` counts them)
        self.steps: List[List[Step]] = []

    @staticmethod
    def unsupported(search: BeamSearch) -> Optional[str]:
        """Why ``search`` cannot be run lean (None: it can)."""
        if search.part_scorers:
            return f"partial scorers {sorted(search.part_scorers)} (CTC prefix scoring: ctc_weight > 0)"
        extra = sorted(set(search.full_scorers) - {"decoder", "length_bonus", "scorefilter"})
        if extra:
            return f"scorers {extra} (language models)"
        if "decoder" not in search.full_scorers:
            return "no attention decoder"
        if search.return_hs:
            return "return_hs"
        decoder = scorer_decoder(search)
        if not all(hasattr(decoder, a) for a in ("decoders", "embed", "after_norm", "output_layer")):
            return f"decoder {type(decoder).__name__} (Transformer decoders only)"
        if decoder.output_layer is None:
            return "a decoder without output layer"
        for layer in decoder.decoders:
            issue = _layer_issue(layer)
            if issue is not None:
                return issue
        return None

    @classmethod
    def for_search(cls, search: Optional[BeamSearch], kind: str) -> Optional["LeanBeamSearch"]:
        """What S2T and ASR decoding run: the lean twin of ``search`` when ``kind`` is "lean"
        and it supports ``search``; None: ESPnet's own search (asked for, or lean unsupported)."""
        if kind not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {kind!r}")
        if kind != "lean" or search is None:
            return None
        issue = cls.unsupported(search)
        if issue is not None:
            logging.info(f"ESPnet's beam search: the lean one does not support {issue}")
            return None
        return cls.from_espnet(search)

    @classmethod
    def from_espnet(cls, search: BeamSearch) -> "LeanBeamSearch":
        """The lean twin of an ESPnet ``BeamSearch`` (same beam, weights and tokens)."""
        issue = cls.unsupported(search)
        if issue is not None:
            raise ValueError(f"lean beam search does not support {issue}; use ESPnet's")
        weights = {k: search.weights[k] for k in search.full_scorers}
        return cls(
            scorer_decoder(search), search.beam_size, search.eos, weights,
            search.normalize_length, search.full_scorers.get("scorefilter"),
        )

    @torch.inference_mode()
    def __call__(
        self,
        memory: torch.Tensor,
        lengths: torch.Tensor,
        primers: Sequence[Sequence[int]],
        gates: Optional[torch.Tensor] = None,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
    ) -> List[List[Hypothesis]]:
        """N-best hypotheses of each utterance, best first.

        Args:
            memory (torch.Tensor): Encoder output (#utt, T, D).
            lengths (torch.Tensor): (#utt,) valid frames of each utterance.
            primers: Per utterance the decoder prefix (``sos`` and the
                language / task tokens).
            gates (torch.Tensor): (#utt, layers, 3) 0/1 decoder gates, or None
                (every unit open).
            maxlenratio, minlenratio (float): As ``BeamSearch.forward``.
        """
        n_utt = memory.size(0)
        lengths = [int(n) for n in lengths]
        self.steps = [[] for _ in range(n_utt)]
        out: List[List[Hypothesis]] = [[] for _ in range(n_utt)]
        # rows advance in lockstep: one search per primer length
        groups: Dict[int, List[int]] = {}
        for u, primer in enumerate(primers):
            groups.setdefault(len(primer), []).append(u)
        for utts in groups.values():
            idx = torch.tensor(utts, device=memory.device)
            hyps, steps = self._search(
                memory[idx], [lengths[u] for u in utts], [primers[u] for u in utts],
                None if gates is None else gates[idx], maxlenratio, minlenratio,
            )
            for u, h, s in zip(utts, hyps, steps):
                out[u], self.steps[u] = h, s
        steps = self.steps
        for u in range(n_utt):
            if not out[u] and minlenratio >= 0.1:  # as ESPnet: retry with a shorter minimum
                out[u] = self(
                    memory[u : u + 1], [lengths[u]], [primers[u]],
                    None if gates is None else gates[u : u + 1], maxlenratio, max(0.0, minlenratio - 0.1),
                )[0]
                steps[u] = steps[u] + self.steps[0]
        self.steps = steps
        return out

    def _search(self, memory, lengths, primers, gates, maxlenratio, minlenratio):
        dec, device = self.decoder, memory.device
        n_utt, n_frames = memory.shape[:2]
        n_layers, n_vocab, beam = len(dec.decoders), dec.output_layer.out_features, self.beam_size
        if gates is None:
            gates = memory.new_ones(n_utt, n_layers, 3)
        maxlen = [
            n if maxlenratio == 0 else -int(maxlenratio) if maxlenratio < 0 else max(1, int(maxlenratio * n))
            for n in lengths
        ]
        # learned positions end somewhere (Whisper: 448 tokens, prompt included)
        cap = getattr(dec, "max_positions", None)
        if cap is not None:
            maxlen = [min(m, cap - len(p)) for m, p in zip(maxlen, primers)]
        minlen = [-int(minlenratio) if minlenratio < 0 else int(minlenratio * n) for n in lengths]
        valid = torch.arange(n_frames, device=device)[None] < torch.tensor(lengths, device=device)[:, None]
        mask = None if bool(valid.all()) else valid[:, None, :]
        src = [self._memory_kv(layer, memory, gates[:, i, 1]) for i, layer in enumerate(dec.decoders)]

        # running rows, grouped by utterance in ESPnet's order
        row_utt = torch.arange(n_utt, device=device)
        yseq = torch.tensor(primers, dtype=torch.long, device=device)
        score = memory.new_zeros(n_utt)
        cum = {k: memory.new_zeros(n_utt) for k in self.weights}
        cache: List[Optional[Tuple[torch.Tensor, torch.Tensor]]] = [None] * n_layers
        counts = [1] * n_utt  # running rows per utterance (0: finished)
        ended: List[List[Hypothesis]] = [[] for _ in range(n_utt)]
        best_by_len: List[Dict[int, float]] = [{} for _ in range(n_utt)]
        steps: List[List[Step]] = [[] for _ in range(n_utt)]
        n_new = yseq.size(1)
        plan, plan_live = None, None

        for i in range(max(maxlen)):
            live = [u for u in range(n_utt) if counts[u]]
            for u in live:
                steps[u].append(Step(counts[u], n_new, yseq.size(1)))
            # the plan changes with the live utterances; per-row gate columns also with the rows
            if plan is None or live != plan_live or any(isinstance(g, torch.Tensor) for p in plan for g in p):
                plan, plan_live = row_plan(gates[row_utt]), live
            logp, cache = self._step(yseq, n_new, cache, row_utt, plan, src, mask)
            n_new = 1
            scores = self._scores(yseq, logp)
            weighted = torch.zeros_like(logp)  # summed as BatchBeamSearch.search does
            for k, w in self.weights.items():
                weighted += w * scores[k]
            weighted += score.unsqueeze(1)

            # one top-k per utterance over its rows x vocabulary (ESPnet's flattening)
            k_max = max(counts[u] for u in live)
            n_live = len(live)
            slot = torch.tensor(
                [s * k_max + j for s, u in enumerate(live) for j in range(counts[u])],
                device=device,
            )
            grid = weighted.new_full((n_live * k_max, n_vocab), float("-inf"))
            grid.index_copy_(0, slot, weighted)
            top, flat = grid.view(n_live, k_max * n_vocab).topk(beam, dim=1)
            offsets = torch.tensor([0, *accumulate(counts[u] for u in live[:-1])], device=device)
            prev = (torch.div(flat, n_vocab, rounding_mode="trunc") + offsets[:, None]).view(-1)
            tok = (flat % n_vocab).view(-1)
            new_score = top.reshape(-1)
            new_cum = {k: cum[k][prev] + scores[k][prev, tok] for k in self.weights}
            new_yseq = torch.cat([yseq[prev], tok[:, None]], dim=1)

            is_eos, values = (tok == self.eos).tolist(), new_score.tolist()
            keep = []
            for s, u in enumerate(live):
                last = i == maxlen[u] - 1
                running = []
                for c in range(s * beam, (s + 1) * beam):
                    if not (is_eos[c] or last):
                        running.append(c)
                        continue
                    if i < minlen[u]:
                        continue
                    ys = new_yseq[c]
                    if last:  # as ESPnet: <eos> appended at the last position
                        ys = torch.cat([ys, ys.new_tensor([self.eos])])
                    ended[u].append(Hypothesis(
                        yseq=ys, score=new_score[c], scores={k: v[c] for k, v in new_cum.items()},
                    ))
                    n = len(ys)
                    best_by_len[u][n] = max(best_by_len[u].get(n, -math.inf), values[c])
                done = last or not running or (maxlenratio == 0.0 and self._end_detect(best_by_len[u], i))
                counts[u] = 0 if done else len(running)
                if not done:
                    keep += running
            if not keep:
                break
            keep_t = torch.tensor(keep, device=device)
            rows = prev[keep_t]
            yseq, score = new_yseq[keep_t], new_score[keep_t]
            cum = {k: v[keep_t] for k, v in new_cum.items()}
            row_utt = row_utt[rows]
            cache = [None if c is None else (c[0][rows], c[1][rows]) for c in cache]

        hyps = []
        for u in range(n_utt):
            if self.normalize_length:
                hyps.append(sorted(ended[u], key=lambda h: h.score / (len(h.yseq) - 1), reverse=True))
            else:
                hyps.append(sorted(ended[u], key=lambda h: h.score, reverse=True))
        return hyps, steps

    def _scores(self, yseq: torch.Tensor, logp: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(#rows, vocab) scores of each scorer."""
        scores = {"decoder": logp}
        if "length_bonus" in self.weights:
            scores["length_bonus"] = torch.ones_like(logp)
        f = self.score_filter
        if f is not None:
            # ScoreFilter.score: with <notimestamps> in the prefix, no timestamp
            # tokens; other rows (predict_time) follow its rules row by row
            has_nt = (yseq == f.notimestamps).any(1)
            filt = torch.zeros_like(logp)
            filt[:, f.first_time : f.last_time + 1] = torch.where(has_nt, -math.inf, 0.0)[:, None]
            if not bool(has_nt.all()):
                rows = (~has_nt).nonzero(as_tuple=True)[0]
                filt[rows] = torch.stack([f.score(y, None, None)[0] for y in yseq[rows]]).to(logp)
            scores["scorefilter"] = filt
        return scores

    @staticmethod
    def _end_detect(best_by_len: Dict[int, float], i: int) -> bool:
        if not best_by_len:
            return False
        best = max(best_by_len.values())
        return all(
            i - m in best_by_len and best_by_len[i - m] - best < END_D for m in range(END_M)
        )

    def _step(self, yseq, n_new, cache, row_utt, plan, src, mask):
        """Log-probabilities of the next token of every row, and the new caches.

        Args:
            yseq (torch.Tensor): (#rows, L) prefixes; the last ``n_new`` are new.
            cache: Per layer self-attention (keys, values) of the first
                L - n_new positions, (#rows, H, L - n_new, d_k) each, or None.
            row_utt (torch.Tensor): (#rows,) utterance of each row.
            plan: ``row_plan`` of the rows' gates.
            src: Per layer source (keys, values) per utterance, or None (closed).
            mask (torch.Tensor): (#utt, 1, T) valid frames, or None (all).
        """
        dec = self.decoder
        # the embedding adds absolute positions: embed the prefix, keep the new ones
        x = dec.embed(yseq)[:, -n_new:]
        causal = subsequent_mask(n_new, device=x.device).unsqueeze(0) if n_new > 1 else None
        row_mask = mask[row_utt] if mask is not None else None
        new_cache = []
        for i, layer in enumerate(dec.decoders):
            g_self, g_src, g_ffn = plan[i]
            x, kv = self._self_attn(layer, x, g_self, cache[i], causal)
            new_cache.append(kv)
            x = gated_residual(x, g_src, partial(src_attn_cached, layer, src[i]), row_utt, row_mask)
            x = gated_residual(x, g_ffn, partial(ffn, layer))
        y = dec.after_norm(x[:, -1])
        return torch.log_softmax(dec.output_layer(y), dim=-1), new_cache

    @staticmethod
    def _memory_kv(layer, memory, gate):
        """Source (keys, values) of the utterances whose source attention is open (others: zeros)."""
        idx = open_rows(gate)
        if idx is None:
            return memory_kv(layer.src_attn, memory)
        if idx.numel() == 0:
            return None
        k, v = memory_kv(layer.src_attn, memory[idx])
        full = [t.new_zeros((memory.size(0),) + t.shape[1:]).index_copy(0, idx, t) for t in (k, v)]
        return full[0], full[1]

    @staticmethod
    def _self_attn(layer, x, gate, kv, causal):
        """Gated self-attention of the new positions over the cached prefix; (x, new cache)."""
        if gate is False:
            return x, kv
        idx = None if gate is True else open_rows(gate)
        if idx is not None and idx.numel() == 0:
            return x, kv
        attn = layer.self_attn
        h = layer.norm1(x if idx is None else x[idx])
        n, length = h.shape[:2]

        def heads(linear):
            return linear(h).view(n, length, attn.h, attn.d_k).transpose(1, 2)

        q, k, v = attn.q_norm(heads(attn.linear_q)), attn.k_norm(heads(attn.linear_k)), heads(attn.linear_v)
        if idx is None:
            if kv is not None:
                k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
            out = attend(attn, q, k, v, causal)
            return x + layer.dropout(out), (k, v)
        # some rows closed: their cache entries are never read (zeros)
        old_len = 0 if kv is None else kv[0].size(2)
        full = [x.new_zeros(x.size(0), attn.h, old_len + length, attn.d_k) for _ in range(2)]
        for f, old, new in zip(full, (None, None) if kv is None else kv, (k, v)):
            if old is not None:
                f[:, :, :old_len] = old
            f[idx, :, old_len:] = new
        out = attend(attn, q, full[0][idx], full[1][idx], causal)
        return x.index_add(0, idx, layer.dropout(out)), (full[0], full[1])
