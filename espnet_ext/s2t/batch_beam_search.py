"""Beam search over several utterances at once, gated units per row.

ESPnet's S2T inference decodes one utterance at a time: its
``BatchBeamSearch`` batches the hypotheses of *one* utterance. Here each
utterance keeps its own, unchanged ESPnet ``BatchBeamSearch`` (same pruning,
end detection, n-best and retry logic), run in a worker thread, and only the
decoder scoring is shared: at every step the running hypotheses of all
utterances are stacked into one batch and scored by one
``TransformerDecoderTokenCondition.batch_score_utterances`` call, each row with
its own utterance's encoder output (precomputed source keys/values) and gates,
every gated unit computed only for the rows whose gate is open. Each
utterance thus gets what one-by-one decoding gives (same hypotheses, scores
equal up to float rounding of the batched matrix products).

The worker threads only do bookkeeping (top-k, hypothesis updates); all heavy
computation runs in the coordinating thread.
"""

import copy
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from espnet.nets.batch_beam_search import BatchBeamSearch, BatchHypothesis


@dataclass
class StepRecord:
    """One decoder call of one utterance: #hypotheses and prefix length."""

    n_hyps: int
    prefix_len: int


@dataclass
class _Shared:
    """State of one batched decode, shared by the worker threads."""

    score_rows: Callable[[List[int], torch.Tensor, List[Any]], Tuple[torch.Tensor, List[Any]]]
    n_active: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    pending: Dict[int, Tuple[torch.Tensor, List[Any]]] = field(default_factory=dict)
    results: Dict[int, Tuple[torch.Tensor, List[Any]]] = field(default_factory=dict)
    error: Optional[BaseException] = None


class LockstepBeamSearch(BatchBeamSearch):
    """ESPnet's ``BatchBeamSearch`` for one utterance of a batched decode.

    Its ``decoder`` scores come from the shared batched call instead of
    ``decoder.batch_score``; every other scorer runs as in ESPnet.
    """

    utt: int
    shared: _Shared
    steps: List[StepRecord]

    def score_full(
        self, hyp: BatchHypothesis, x: torch.Tensor, pre_x: torch.Tensor = None
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
        if self.return_hs or pre_x is not None:
            raise NotImplementedError("batched decoding supports neither return_hs nor pre_x")
        scores, states = {}, {}
        for k, d in self.full_scorers.items():
            if k == "decoder":
                self.steps.append(StepRecord(len(hyp.yseq), hyp.yseq.size(1)))
                scores[k], states[k] = self._shared_score(hyp.yseq, hyp.states[k])
            else:
                scores[k], states[k] = d.batch_score(hyp.yseq, hyp.states[k], x)
        return scores, states

    def _shared_score(self, ys: torch.Tensor, states: List[Any]):
        shared = self.shared
        with shared.cond:
            shared.pending[self.utt] = (ys, states)
            shared.cond.notify_all()
            while self.utt not in shared.results and shared.error is None:
                shared.cond.wait()
            if shared.error is not None:
                raise RuntimeError("batched decoding failed in another utterance") from shared.error
            return shared.results.pop(self.utt)


def lockstep_copy(search: BatchBeamSearch, utt: int, shared: _Shared, hyp_primer: List[int]):
    """A per-utterance copy of ``search`` (stateful scorers are copied too)."""
    clone = copy.copy(search)
    clone.__class__ = LockstepBeamSearch
    scorers = {k: (v if k == "decoder" else copy.copy(v)) for k, v in search.scorers.items()}
    clone.scorers = scorers
    clone.full_scorers = {k: scorers[k] for k in search.full_scorers}
    clone.part_scorers = {k: scorers[k] for k in search.part_scorers}
    clone.utt, clone.shared, clone.steps = utt, shared, []
    clone.set_hyp_primer(hyp_primer)
    return clone


def run_lockstep(
    jobs: Sequence[Callable[[], Any]],
    shared: _Shared,
) -> List[Any]:
    """Runs one job per utterance in worker threads, serving their scoring.

    Args:
        jobs: ``jobs[u]()`` decodes utterance ``u`` with a ``LockstepBeamSearch``
            whose ``utt`` is ``u`` and ``shared`` is ``shared``.
        shared: Holds ``score_rows(utts, ys, states)``: scores the stacked
            rows (``utts[i]`` is the utterance of row ``i``).

    Returns:
        The jobs' return values, in order.
    """
    outputs: List[Any] = [None] * len(jobs)
    errors: List[BaseException] = []

    def work(u: int) -> None:
        try:
            with torch.no_grad():  # grad mode is per thread
                outputs[u] = jobs[u]()
        except BaseException as e:  # noqa: B036 (re-raised in the caller)
            errors.append(e)
        finally:
            with shared.cond:
                shared.n_active -= 1
                shared.cond.notify_all()

    threads = [threading.Thread(target=work, args=(u,), daemon=True) for u in range(len(jobs))]
    for t in threads:
        t.start()
    try:
        while True:
            with shared.cond:
                while shared.n_active and len(shared.pending) < shared.n_active:
                    shared.cond.wait()
                if not shared.n_active:
                    break
                batch, shared.pending = shared.pending, {}
            results = {}
            # rows of every utterance at the same prefix length go in one call
            by_len: Dict[int, List[int]] = {}
            for u, (ys, _) in batch.items():
                by_len.setdefault(ys.size(1), []).append(u)
            for utts in by_len.values():
                ys = torch.cat([batch[u][0] for u in utts])
                states = [s for u in utts for s in batch[u][1]]
                rows = [u for u in utts for _ in range(len(batch[u][0]))]
                scores, new_states = shared.score_rows(rows, ys, states)
                start = 0
                for u in utts:
                    n = len(batch[u][0])
                    results[u] = (scores[start : start + n], new_states[start : start + n])
                    start += n
            with shared.cond:
                shared.results.update(results)
                shared.cond.notify_all()
    except BaseException as e:
        with shared.cond:
            shared.error = e
            shared.cond.notify_all()
        raise
    finally:
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return outputs
