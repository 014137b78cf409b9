"""Paired bootstrap over utterances: is model A's corpus score different from model B's?

Koehn (2004): both models are scored on the same ``n`` resamples (with replacement) of a
test set's utterances. A resample's corpus score is computed from summed per-utterance
sufficient statistics: for BLEU sacrebleu's own (n-gram matches, lengths; the default
``BLEU()`` of ``scripts/score.py``), for WER (word errors, reference words). The indices
are drawn as in ``sacrebleu.significance`` (``np.random.default_rng(seed).choice``), so
with its seed the resampled system scores are those of sacrebleu's ``PairedTest``.

Returned, as a dict: ``delta`` = A - B on the whole set (``score_a``, ``score_b``), the
95% percentile interval of the resampled deltas (``ci_low``, ``ci_high``), ``p_value``
and ``n_resamples``. The p-value is two-sided: twice the smaller share (+1 smoothed) of
resampled deltas on either side of 0, so p < 0.05 goes with an interval that excludes 0.
sacrebleu's ``PairedTest(test_type="bs")`` gives each system's mean and CI but not the
difference's, and its p-value (centred |delta| > observed |delta|) is 1/(n+1), i.e.
"significant", for two identical systems; hence the statistic here.

Usage:
    from bootstrap import paired_bootstrap_bleu, paired_bootstrap_wer
    paired_bootstrap_wer(errs_gated, words, errs_full)  # delta in WER points (percent)
"""

from typing import Callable, Sequence

import numpy as np


def resample_counts(num_utts: int, n: int, seed: int) -> np.ndarray:
    """(n, num_utts): how often each utterance is drawn in each resample."""
    idx = np.random.default_rng(seed).choice(num_utts, size=(n, num_utts), replace=True)
    rows = np.arange(n)[:, None] * num_utts
    return np.bincount((rows + idx).ravel(), minlength=n * num_utts).reshape(n, num_utts)


def paired_bootstrap(stats_a: Sequence, stats_b: Sequence, score: Callable[[np.ndarray], float],
                     n: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap of ``score(summed stats)``, A - B; stats: one row per utterance."""
    stats_a, stats_b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    if stats_a.shape != stats_b.shape or len(stats_a) == 0:
        raise ValueError(f"paired bootstrap: need the same utterances, got {stats_a.shape} "
                         f"and {stats_b.shape}")
    counts = resample_counts(len(stats_a), n, seed)
    # counts @ stats: each resample's summed statistics (as stats[idx].sum(1), less memory)
    deltas = np.array([score(a) - score(b) for a, b in zip(counts @ stats_a, counts @ stats_b)])
    score_a, score_b = score(stats_a.sum(0)), score(stats_b.sum(0))
    low, high = np.percentile(deltas, [2.5, 97.5])
    side = min(int((deltas <= 0).sum()), int((deltas >= 0).sum()))
    return {"delta": float(score_a - score_b), "ci_low": float(low), "ci_high": float(high),
            "p_value": min(1.0, 2 * (side + 1) / (n + 1)), "n_resamples": n,
            "score_a": float(score_a), "score_b": float(score_b)}


def paired_bootstrap_wer(errs_a: Sequence[int], words: Sequence[int], errs_b: Sequence[int],
                         n: int = 1000, seed: int = 0) -> dict:
    """Corpus WER (percent, sum errors / sum reference words) of A vs B, same references."""
    if not len(errs_a) == len(words) == len(errs_b):
        raise ValueError(f"paired bootstrap: need the same utterances, got {len(errs_a)} and "
                         f"{len(errs_b)} error counts for {len(words)} references")
    if sum(words) == 0:
        raise ValueError("paired bootstrap: the references have no words")
    stats_a, stats_b = np.column_stack([errs_a, words]), np.column_stack([errs_b, words])
    # max: guards the (improbable) resample that draws only empty references
    return paired_bootstrap(stats_a, stats_b, lambda s: 100 * s[0] / max(s[1], 1), n, seed)


def paired_bootstrap_bleu(hyps_a: Sequence[str], hyps_b: Sequence[str], refs: Sequence[str],
                          n: int = 1000, seed: int = 0) -> dict:
    """Corpus BLEU (sacrebleu defaults, one reference) of A vs B."""
    from sacrebleu.metrics import BLEU

    if not len(hyps_a) == len(hyps_b) == len(refs):
        raise ValueError(f"paired bootstrap: need the same utterances, got {len(hyps_a)} and "
                         f"{len(hyps_b)} hypotheses for {len(refs)} references")
    bleu = BLEU()
    # the statistics sacrebleu.significance resamples (private API, stable since 2.0)
    stats = [bleu._extract_corpus_statistics(list(h), [list(refs)]) for h in (hyps_a, hyps_b)]
    return paired_bootstrap(*stats, lambda s: bleu._compute_score_from_stats(s).score, n, seed)
