"""Results of a recipe: the decoding outputs read back, checked, compared and written up.

One place for what stages 7-9 leave on disk and what RESULTS.md says about it:

- ``read_decode``: one decoding dir (``exp/<model>/decode_<set>``) as written by
  ``espnet_ext.bin.s2t_inference`` for S2T and ASR alike (``1best_recog/text``,
  ``gates/{units,encoder,decoder}``, ``gflops``, ``decode_seconds``); ``decode_stats`` and
  ``gate_patterns`` summarise several of them.
- ``listen_check`` / ``mismatch_warnings``: whether a score means anything (stage 8).
- ``paired_bootstrap_wer`` / ``paired_bootstrap_bleu`` and ``compare``: is a model's corpus
  score different from the reference model's (Koehn 2004)?
- ``write_results``: RESULTS.md of every S2T recipe (``scripts/report.py``, stage 9).

Gate decisions are stored as one group of 0/1 per layer (``"1111 1011"``: layer 1 all open,
layer 2 unit 2 closed), units in the order of ``gates/units``.
"""

import json
import logging
import os
import platform
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from espnet_ext import wer_norm as wn
from espnet_ext.kaldi import read_table

PathLike = Union[str, Path]
LANG_TASK = re.compile(r"test_[a-z]{2,3}_(asr|st_[a-z]{2,3})")  # an S2T test subset's name

# The input guard of stage 8: a model that listens to its input gives about as many distinct
# hypotheses as there are distinct references, stops near the reference length, and scores
# better than unrelated text would.
MIN_DISTINCT = 0.5  # flag distinct_hyp < MIN_DISTINCT * distinct_ref
LOOP_RATIO = 2.0  # a hypothesis loops: more than LOOP_RATIO x the reference's words ...
LOOP_DISTINCT = 0.5  # ... of which at most this fraction distinct (it repeats itself)
MAX_LOOPING = 0.1  # flag more than this fraction of looping hypotheses
MISMATCH_WER = 100.0  # flag WER >= this (percent) ...
MISMATCH_BLEU = 1.0  # ... or BLEU < this, of hypotheses that pass the checks above

DEFAULT_UNITS = {"encoder": ["ffn1", "attn", "cgmlp", "ffn2"], "decoder": ["self_attn", "src_attn", "ffn"]}


# --- reading decoding outputs ---------------------------------------------------------------

@dataclass
class Decode:
    """What one decoding run wrote, per utterance (tables in file order; empty if not written).

    Attributes:
        hyps: Utterance -> 1-best text (``1best_recog/text``; '' for an empty hypothesis).
        gates: Side (encoder, decoder) -> utterance -> gate groups (``"1111 1011"``).
        units: Side -> the unit names of a group (``gates/units``).
        gflops: Utterance -> GFLOPs spent.
        seconds: Utterance -> decoding wall-clock.
    """

    hyps: Dict[str, str] = field(default_factory=dict)
    gates: Dict[str, Dict[str, str]] = field(default_factory=dict)
    units: Dict[str, List[str]] = field(default_factory=dict)
    gflops: Dict[str, float] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)


def read_decode(path: PathLike) -> Decode:
    """Reads a decoding dir of ``espnet_ext.bin.s2t_inference`` (S2T or ASR).

    Args:
        path: ``exp/<model>/decode_<set>``; missing tables read as empty (a stock model has
            no gates, an unfinished decode no hypotheses).
    """
    path = Path(path)
    gates = {}
    for side in ("encoder", "decoder"):
        table = read_table(path / "gates" / side, missing_ok=True)
        if table:
            gates[side] = dict(table)
    units = {side: names.split() for side, names
             in read_table(path / "gates" / "units", missing_ok=True).items()}
    floats = lambda name: {k: float(v) for k, v in read_table(path / name, missing_ok=True).items()}  # noqa: E731
    return Decode(hyps=dict(read_table(path / "1best_recog" / "text", allow_empty=True, missing_ok=True)),
                  gates=gates, units={s: units.get(s, DEFAULT_UNITS[s]) for s in gates},
                  gflops=floats("gflops"), seconds=floats("decode_seconds"))


def gate_bits(value: str) -> List[List[int]]:
    """``"1111 1011"`` -> ``[[1, 1, 1, 1], [1, 0, 1, 1]]`` (layers x units)."""
    return [[int(c) for c in group] for group in value.split()]


def count_closed(values: Iterable[str]) -> Tuple[int, int]:
    """(closed, all) gate decisions in gate strings such as ``"1111 1011"``."""
    closed = total = 0
    for value in values:
        zeros, ones = value.count("0"), value.count("1")
        closed, total = closed + zeros, total + zeros + ones
    return closed, total


def decode_stats(model_dir: PathLike, sets: Iterable[str]) -> dict:
    """Means over the decoded utterances of ``<model_dir>/decode_<set>`` for every set.

    Returns:
        dict: ``gflops`` and ``seconds`` per utterance and ``closed``, the fraction of the
        gate decisions that closed a unit; None where nothing was written (a stock model
        has no gates).
    """
    gflops, seconds, closed, total = [], [], 0, 0
    for s in sets:
        d = read_decode(Path(model_dir) / f"decode_{s}")
        gflops += d.gflops.values()
        seconds += d.seconds.values()
        c, t = count_closed(v for table in d.gates.values() for v in table.values())
        closed, total = closed + c, total + t
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"gflops": mean(gflops), "seconds": mean(seconds), "closed": closed / total if total else None}


def gate_patterns(model_dir: PathLike, sets: List[str], corpus: Dict[str, str]) -> Optional[dict]:
    """Open rates of a gated model's units per (corpus, language, task) group.

    Args:
        model_dir: ``exp/<model>``, decoded on ``sets`` (``<set>_<lang>_<task>``).
        sets: The test sets.
        corpus: Utterance -> corpus label; utterances without one are grouped by
            (language, task) alone.

    Returns:
        None for a model without gates, else ``{"units": {side: names}, "groups": {group:
        {"num_utts", side: {"per_layer": [[rate per unit] per layer], "per_unit": {unit: mean
        over layers}}}}, "corpus_differences": {"<lang>/<task>: <a> vs <b>": mean |difference|
        of the per-layer rates}}``.
    """
    units, groups = {}, defaultdict(lambda: defaultdict(list))
    for s in sets:
        d = read_decode(Path(model_dir) / f"decode_{s}")
        _, lang, task = s.split("_", 2)
        for side, table in d.gates.items():
            units[side] = d.units[side]
            for utt, value in table.items():
                group = f"{corpus[utt]}/{lang}/{task}" if utt in corpus else f"{lang}/{task}"
                groups[group][side].append(gate_bits(value))
    if not groups:
        return None
    result = {"units": units, "groups": {}}
    for g, sides in sorted(groups.items()):
        entry = {"num_utts": max(len(v) for v in sides.values())}
        for side, pats in sides.items():
            per_layer = np.mean(np.array(pats, dtype=float), axis=0).tolist()
            entry[side] = {"per_layer": per_layer,
                           "per_unit": {u: statistics.fmean(row[j] for row in per_layer)
                                        for j, u in enumerate(units[side])}}
        result["groups"][g] = entry
    by_lang_task = defaultdict(dict)  # same language and task in two corpora
    for g in result["groups"]:
        if g.count("/") == 2:
            c, lang, task = g.split("/")
            by_lang_task[(lang, task)][c] = g
    comparisons = {}
    for (lang, task), cs in sorted(by_lang_task.items()):
        for a, b in combinations(sorted(cs), 2):
            ga, gb = result["groups"][cs[a]], result["groups"][cs[b]]
            diffs = [abs(x - y) for side in ("encoder", "decoder") if side in ga and side in gb
                     for ra, rb in zip(ga[side]["per_layer"], gb[side]["per_layer"])
                     for x, y in zip(ra, rb)]
            comparisons[f"{lang}/{task}: {a} vs {b}"] = statistics.fmean(diffs)
    result["corpus_differences"] = comparisons
    return result


# --- does a score mean anything? --------------------------------------------------------------

def loops(hyp: str, ref: str) -> bool:
    """A hypothesis far longer than its reference that repeats itself (not merely unrelated text)."""
    words = hyp.split()
    return len(words) > LOOP_RATIO * len(ref.split()) and len(set(words)) <= LOOP_DISTINCT * len(words)


def listen_check(hyp: List[str], ref: List[str]) -> Tuple[dict, List[str]]:
    """Distinct-hypothesis/reference and looping fractions of normalised texts, and warnings."""
    n = len(ref)
    num_hyp, num_ref = len(set(hyp)), len(set(ref))
    looping = sum(loops(h, r) for h, r in zip(hyp, ref))
    stats = {"distinct_hyp": num_hyp / n, "distinct_ref": num_ref / n, "looping": looping / n}
    warnings = []
    if stats["distinct_hyp"] < MIN_DISTINCT * stats["distinct_ref"]:
        what = "hypothesis" if num_hyp == 1 else "hypotheses"
        warnings.append(f"only {num_hyp} distinct {what} for {n} utterances ({num_ref} distinct "
                        "references): the model ignores its input; its scores mean nothing")
    if stats["looping"] > MAX_LOOPING:
        warnings.append(f"{looping} of {n} hypotheses repeat themselves beyond {LOOP_RATIO:g}x the "
                        "reference's words: the model loops; its scores mean little")
    return stats, warnings


def mismatch_warnings(scores: dict, hyp: List[str]) -> List[str]:
    """Hypotheses that are not the audio's: mostly empty, or text with WER >= 100 % / BLEU near 0.

    Meant for sets that pass ``listen_check``: their hypotheses vary and do not loop, so
    such a score says the model writes fluent text unrelated to what was said.

    Args:
        scores: A set's ``wer`` or ``bleu``.
        hyp: Its hypotheses (normalised text).
    """
    empty = sum(not h for h in hyp)
    if empty > len(hyp) / 2:
        return [f"{empty} of {len(hyp)} hypotheses are empty: the model writes (almost) nothing; "
                "its scores mean nothing"]
    if scores.get("wer") is not None and scores["wer"] >= MISMATCH_WER:
        what = f"WER {scores['wer']:.1f} %"
    elif scores.get("bleu") is not None and scores["bleu"] < MISMATCH_BLEU:
        what = f"BLEU {scores['bleu']:.2f}"
    else:
        return []
    return [f"{what}: the hypotheses do not match the audio (text unrelated to the references, "
            "not a loop); its scores mean nothing"]


# --- paired bootstrap -------------------------------------------------------------------------
# Koehn (2004): both models are scored on the same n resamples (with replacement) of a test
# set's utterances; a resample's corpus score comes from summed per-utterance sufficient
# statistics (BLEU: sacrebleu's n-gram matches and lengths; WER: word errors, reference
# words). The indices are drawn as in sacrebleu.significance, so with its seed the resampled
# system scores are those of sacrebleu's PairedTest. sacrebleu gives no interval of the
# difference, and its p-value is 1/(n+1) for two identical systems: hence the statistic here.

def resample_counts(num_utts: int, n: int, seed: int) -> np.ndarray:
    """(n, num_utts): how often each utterance is drawn in each resample."""
    idx = np.random.default_rng(seed).choice(num_utts, size=(n, num_utts), replace=True)
    rows = np.arange(n)[:, None] * num_utts
    return np.bincount((rows + idx).ravel(), minlength=n * num_utts).reshape(n, num_utts)


def paired_bootstrap(stats_a: Sequence, stats_b: Sequence, score: Callable[[np.ndarray], float],
                     n: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap of ``score(summed stats)``, A - B.

    Args:
        stats_a: (#utts, #stats) sufficient statistics of model A, one row per utterance.
        stats_b: The same of model B, same utterances.
        score: Corpus score from summed statistics.
        n: Resamples.
        seed: Seed of the resampling.

    Returns:
        dict: ``delta`` = A - B on the whole set (``score_a``, ``score_b``), the 95 %
        percentile interval of the resampled deltas (``ci_low``, ``ci_high``), ``p_value``
        (two-sided: twice the smaller +1-smoothed share of deltas on either side of 0, so
        p < 0.05 goes with an interval that excludes 0) and ``n_resamples``.
    """
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


def compare(exp: Path, models: List[str], reference: str, subsets: List[str],
            n: int = 1000, seed: int = 0, tasks: Optional[Dict[str, str]] = None) -> dict:
    """Paired bootstrap of each model vs ``reference`` per subset (BLEU for ST, WER for ASR).

    ``tasks``: subset -> task (``set_tasks``); default: from the subset names.

    Reads stage 8's ``<exp>/<model>/decode_<subset>/per_utt.json`` (a model or set without
    one is left out, with a warning). WERs of a model and the reference computed on different
    text (``--wer_norm``) are a ValueError.

    Returns:
        dict: ``{"reference", "n_resamples", "seed", "models": {model: {subset: {"metric",
        "num_utts"[, "wer_norm"], **paired_bootstrap}}}}`` (delta = model - reference).
    """
    out = {"reference": reference, "n_resamples": n, "seed": seed, "models": {}}
    for s in subsets:
        st = (tasks or {}).get(s, set_task(s)).startswith("st_")
        path = exp / reference / f"decode_{s}" / "per_utt.json"
        if not path.exists():
            logging.warning(f"no {path} (rerun stage 8): no comparison on {s}")
            continue
        ref_utt = json.loads(path.read_text(encoding="utf-8"))
        ref, ref_norm = ref_utt["utts"], ref_utt.get("wer_norm", "ours")  # before --wer_norm: ours
        keys = sorted(ref)
        for m in models:
            path = exp / m / f"decode_{s}" / "per_utt.json"
            if m == reference:
                continue
            if not path.exists():  # scored before per_utt.json existed
                logging.warning(f"no {path} (rerun stage 8): {m} not compared on {s}")
                continue
            per_utt = json.loads(path.read_text(encoding="utf-8"))
            utts = per_utt["utts"]
            if sorted(utts) != keys:
                raise ValueError(f"{path}: other utterances than {reference}'s")
            if not st and per_utt.get("wer_norm", "ours") != ref_norm:
                raise ValueError(f"{path}: WER on --wer_norm {per_utt.get('wer_norm', 'ours')} text, "
                                 f"{reference}'s on {ref_norm}: score both the same way (stage 8)")
            if st:
                r = paired_bootstrap_bleu([utts[k]["hyp"] for k in keys], [ref[k]["hyp"] for k in keys],
                                          [ref[k]["ref"] for k in keys], n, seed)
            else:
                r = paired_bootstrap_wer([utts[k]["errors"] for k in keys], [ref[k]["words"] for k in keys],
                                         [ref[k]["errors"] for k in keys], n, seed)
            out["models"].setdefault(m, {})[s] = {"metric": "bleu" if st else "wer",
                                                  "num_utts": len(keys), **r}
            if not st:
                out["models"][m][s]["wer_norm"] = ref_norm
    return out


# --- RESULTS.md ---------------------------------------------------------------------------------

STAGES = {"1": "data preparation", "2": "audio format", "3": "context embeddings",
          "4": "pre-trained model", "5": "stats", "6": "training", "7": "decoding",
          "8": "scoring", "9": "efficiency profile"}
DESCRIPTIONS = {
    "base": "pre-trained base (stands in for OWSM): `pretrained/mini_owsm`, or pre-trained "
            "here on the `pretrain` set (`--base scratch`)",
    "full": "full fine-tune, stock modules (baseline)",
    "gated": "gated fine-tune, context lang+task",
    "gated_lang": "gated fine-tune, context lang only",
    "gated_frame": "gated fine-tune, context lang+task, attention pooling over frames",
    "gated_spk": "gated fine-tune, context lang+task+speaker (resemblyzer)",
    "gated_event": "gated fine-tune, context lang+task+event (tagger)",
    "l0": "static baseline: L0 structured pruning (HardConcrete masks + FLOPs Lagrangian), "
          "units removed -> stock model",
    "layerprune": "static baseline: convexity-based layer pruning + fine-tune (stock model)",
}


# An ASR-task experiment's models (egs2/librispeech_100/asr1: base trained here, gated from it).
ASR_DESCRIPTIONS = {
    "base": "ESPnet ASR model trained from scratch (stock modules)",
    "gated": "gated fine-tune of base, global gate predictor (I3D-style dynamic depth)",
    "gated_local": "gated fine-tune of base, local gate predictor (one per layer)",
    "gated_spk": "gated fine-tune of base, global gate predictor reading a speaker embedding",
}


def describe(model: str, descriptions: Optional[Dict[str, str]] = None) -> str:
    """What a model is; ``<known>_<suffix>`` (e.g. made by ``scripts/retrain.py``) a variant of it.

    ``descriptions``: the known models (default ``DESCRIPTIONS``, the S2T recipes').
    """
    descriptions = DESCRIPTIONS if descriptions is None else descriptions
    if model in descriptions:
        return descriptions[model]
    known = [k for k in descriptions if model.startswith(k + "_")]
    if not known:
        return ""
    return (f"variant of {max(known, key=len)} (another seed or options: "
            f"`scripts/retrain.py`, the exp dir's `commands.sh`)")


def fmt(x: Optional[float], digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def short(subset: str) -> str:
    """Column name of a test set: ``test_deu_asr`` -> ``deu_asr`` (other prefixes kept, and
    names without ``<lang>_<task>``, ``test_clean``, as they are)."""
    return subset[len("test_"):] if LANG_TASK.fullmatch(subset) else subset


def set_task(subset: str, scores: Optional[dict] = None) -> str:
    """A test set's task (``asr``, ``st_eng``): as its ``scores.json`` records it, else from its
    name ``<set>_<lang>_<task>`` ('' if it has none); ``scripts/score.py --task asr`` scores
    sets of any name (``test_clean``) as ASR."""
    r = (scores or {}).get("subsets", {}).get(subset) or {}
    if "task" in r:
        return r["task"]
    return "st_" + subset.split("_st_")[-1] if "_st_" in subset else "asr" if subset.endswith("_asr") else ""


def set_tasks(scores: dict, subsets: Iterable[str]) -> Dict[str, str]:
    """``set_task`` of each subset in one ``scores.json``."""
    return {s: set_task(s, scores) for s in subsets}


def wer_norm(scores: Optional[dict], subset: str) -> Optional[str]:
    """The text convention of an ASR set's WER in a ``scores.json`` (``ours`` before
    ``--wer_norm`` existed); None for an ST set or a set it lacks."""
    r = (scores or {}).get("subsets", {}).get(subset)
    return None if r is None or set_task(subset, scores).startswith("st_") else r.get("wer_norm", "ours")


def norm_legend(names: Iterable[str]) -> str:
    """What the WER conventions named in a table's headers and cells are."""
    return "WER / CER text (`scripts/score.py --wer_norm`): " + "; ".join(
        f"{wn.label(n)} ({wn.description(n)})" for n in sorted(names)) + "."


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else a / b


def read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def utt_counts(dump: Optional[Path], subsets: List[str]) -> Dict[str, dict]:
    """Stage 2's ``<dump>/<set>/utt_counts.json`` of each test set that has one."""
    if dump is None:
        return {}
    return {s: c for s in subsets for c in [read_json(dump / s / "utt_counts.json")] if c}


def counted(s: str, n: int, counts: Dict[str, dict]) -> str:
    """``<set> <n>``, with the official count and the long utterances when stage 2 recorded them."""
    c = counts.get(s)
    if not c:
        return f"{s} {n}"
    how = "decoded whole" if c.get("long_utts") == "whole" else "decoded trimmed"  # whole: ASR task
    long = f", {c['long']} longer than {c['speech_length']} s ({how})" if c.get("long") else ""
    return f"{s} {n} of {c['official']} official{long}"


def score_tables(scores: Dict[str, dict], models: List[str], subsets: List[str],
                 base: Optional[dict], base_name: str,
                 counts: Optional[Dict[str, dict]] = None) -> List[str]:
    """BLEU/chrF of the ST sets and WER/CER of the ASR sets, a row per model (and the base's);
    ``counts``: stage 2's utterance counts per set (``utt_counts``)."""
    md = []
    tasks = set_tasks(scores[models[0]], subsets)
    st = [s for s in subsets if tasks[s].startswith("st_")]
    asr = [s for s in subsets if tasks[s] == "asr"]
    for sets, metrics, title, note in ((st, ["bleu", "chrf"], "Speech translation (BLEU / chrF, sacrebleu)",
                                        "Per direction (source -> English), corpus level."),
                                       (asr, ["wer", "cer"], "ASR (WER / CER %, jiwer)", "Per language.")):
        if not sets:
            continue
        # an ASR column names its WER/CER convention (the first model's); a cell scored
        # otherwise (the base's scores.json, a model scored apart) names its own
        norms = {s: wer_norm(scores[models[0]], s) for s in sets}

        def cell(sc: Optional[dict], s: str, k: str) -> str:
            v = (sc or {}).get("subsets", {}).get(s, {}).get(k)
            own = wer_norm(sc, s)
            return fmt(v) + (f" ({own})" if v is not None and own != norms[s] else "")

        head = [f"{short(s)} {k}" + (f" ({norms[s]})" if norms[s] else "") for s in sets for k in metrics]
        md += [f"## {title}", "", note, "",
               "| model | " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(head)]
        for m in models:
            md.append(f"| {m} | " + " | ".join(cell(scores[m], s, k) for s in sets for k in metrics) + " |")
        if base:
            md.append(f"| base ({base_name}) | " + " | ".join(
                cell(base, s, k) for s in sets for k in metrics) + " |")
        used = {n for sc in [*(scores[m] for m in models), base] for s in sets
                for n in [wer_norm(sc, s)] if n}
        if used:
            md += ["", norm_legend(used)]
        first = scores[models[0]]["subsets"]
        md += ["", "Utterances: " + ", ".join(counted(s, first[s]["num_utts"], counts or {}) for s in sets)]
        if base:
            nb = [base["subsets"].get(s, {}).get("num_utts") for s in sets]
            md += ["", f"base ({base_name}): the pre-trained model before any fine-tuning, "
                   "scored when it was made (`./run.sh --preset base`, its `scores.json`) on "
                   "that preset's test sets (" + ", ".join(f"{v}" for v in nb)
                   + " utterances; the first sentences of the same permutation, so they "
                   "include these)."]
        md += [""]
    sig = scores[models[0]]
    return md + ["Signatures: " + "; ".join(f"{k}: `{v}`" for k, v in sorted(sig["signatures"].items())),
                 "", f"Normalisation (hypotheses and references): {sig['normalisation']}.", ""]


def listen_section(scores: Dict[str, dict], models: List[str], subsets: List[str]) -> List[str]:
    """Distinct-hypothesis and looping fractions per model and set, and stage 8's warnings."""
    md = ["## Do the models listen?", "",
          "Per test set: the fraction of distinct hypotheses among its utterances (normalised "
          "text; a model that ignores its input repeats itself) and, in brackets, the fraction "
          f"of looping hypotheses (more than {LOOP_RATIO:g}x the reference's words, repeating "
          f"themselves). Bold: flagged by `scripts/score.py`, i.e. distinct < {MIN_DISTINCT:g} x "
          f"the references' fraction, looping > {MAX_LOOPING:g}, or else more than half the "
          f"hypotheses empty or WER >= {MISMATCH_WER:g} % / BLEU < {MISMATCH_BLEU:g} (fluent "
          "hypotheses that do not match the audio).", "",
          "| model | " + " | ".join(short(s) for s in subsets) + " |",
          "| --- |" + " ---: |" * len(subsets)]
    first = scores[models[0]]["subsets"]
    md.append("| references | " + " | ".join(fmt(first[s].get("distinct_ref")) for s in subsets) + " |")
    flags = []
    for m in models:
        cells = []
        for s in subsets:
            r = scores[m]["subsets"][s]
            cell = f"{fmt(r.get('distinct_hyp'))} ({fmt(r.get('looping'))})"
            cells.append(f"**{cell}**" if r.get("warnings") else cell)
            for w in r.get("warnings", []):
                logging.warning(f"{m} {s}: {w}")
                flags.append(f"**Warning**: {m} {s}: {w}.")
        md.append(f"| {m} | " + " | ".join(cells) + " |")
    return md + [""] + [line for f in flags for line in (f, "")]


def compare_section(comparison: dict, models: List[str], subsets: List[str],
                    scores: Dict[str, dict]) -> List[str]:
    """The paired bootstrap table: delta [95% CI] p per model and set; bold if p < 0.05.

    A set where either model is flagged (``warnings`` of stage 8) is marked: a difference
    between models that ignore their input is no comparison.
    """
    ref, rows = comparison["reference"], comparison["models"]
    shown = [m for m in models if m in rows]
    if not shown:
        return []
    tasks = set_tasks(scores.get(ref) or scores[shown[0]], subsets)
    st = {s for s in subsets if tasks[s].startswith("st_")}
    norms = {s: wer_norm(scores.get(ref), s) or "ours" for s in subsets if s not in st}
    md = [f"## Difference vs {ref} (paired bootstrap, 95% CI, p)", "",
          f"Model - {ref} per test set: BLEU points for ST (higher is better), WER points for "
          f"ASR (lower is better); paired bootstrap over the set's utterances "
          f"({comparison['n_resamples']} resamples, seed {comparison['seed']}, "
          "`espnet_ext.results`), 95% percentile interval, two-sided p (at least "
          f"{2 / (comparison['n_resamples'] + 1):.3f} with this many resamples). Bold: p < 0.05. "
          "(flagged): one of the two models does not listen on that set (above), so the "
          "difference says nothing about pruning. All in `<exp>/compare.json`. The bootstrap "
          "resamples the test utterances, not the training: another seed of the same fine-tune "
          "(`scripts/retrain.py --from_model <model> --name <model>_seed1 -- --seed 1`) "
          "shows how far training randomness alone moves a score."
          + (" " + norm_legend(set(norms.values())) if norms else ""), "",
          "| model | " + " | ".join(f"{short(s)} BLEU" if s in st else
                                   f"{short(s)} WER ({norms[s]})" for s in subsets) + " |",
          "| --- |" + " ---: |" * len(subsets)]
    for m in shown:
        cells = []
        for s in subsets:
            r = rows[m].get(s)
            if r is None:
                cells.append("-")
                continue
            p = r["p_value"]
            cell = f"{r['delta']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] p={p:.{2 if p >= 0.01 else 3}f}"
            cell = f"**{cell}**" if p < 0.05 else cell
            if any(scores[x]["subsets"][s].get("warnings") for x in (m, ref) if x in scores):
                cell += " (flagged)"
            cells.append(cell)
        md.append(f"| {m} | " + " | ".join(cells) + " |")
    return md + [""]


def efficiency_section(exp: Path, models: List[str], subsets: List[str], reference: str,
                       efficiency: Path, profiled: bool = True) -> List[str]:
    """Stage 9's profile (same utterances, models interleaved) and stage 7's GFLOPs and seconds.

    ``profiled``: False where no profile is expected (an ASR-task experiment, no --efficiency):
    nothing said of a missing one.
    """
    md = ["## Efficiency", "", "GFLOPs in fvcore's convention (the papers' tool): one multiply-add = one flop.", ""]
    eff = read_json(efficiency)
    if eff:
        rows = eff["models"]
        settings = eff.get("settings") or next(iter(rows.values())).get("settings", {})
        md += [f"`espnet_ext.bin.profile` on `{efficiency.stem}` (same utterances, one process, "
               "models profiled under identical settings); ratios vs "
               f"`{eff.get('reference', reference)}`. Subsampling: the GFLOPs of the encoder's "
               "conv input layer, which no gate skips (the floor of any gating).", "",
               "| model | GFLOPs / utt | ratio | subsampling | decode s (median) | min s | ratio | peak RSS MB |",
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for m, r in rows.items():
            md.append(f"| {m} | {fmt(r.get('gflops_mean'), 3)} | {fmt(r.get('gflops_ratio'), 3)} | "
                      f"{fmt(r.get('gflops_parts', {}).get('subsampling'), 3)} | "
                      f"{fmt(r.get('time_median_s'), 3)} | {fmt(r.get('time_min_s'), 3)} | "
                      f"{fmt(r.get('time_ratio'), 3)} | {fmt(r.get('peak_rss_mb'), 0)} |")
        if settings.get("num_utts_note"):  # the set had fewer utterances than --num_utts
            md += ["", f"Profiled on {settings['num_utts_note']}."]
        md += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()
                                            if k not in ("data_dir", "config", "model_file", "num_utts_note")), ""]
    elif profiled:
        md += [f"(no {efficiency}: stage 9's profile did not run)", ""]
    ref = decode_stats(exp / reference, subsets)
    md += ["From stage 7's decoding of all test subsets (GFLOPs actually spent per utterance "
           "and the fraction of gated units closed; the seconds come from --nj models decoded "
           + ("side by side, so use the profile above for timing):" if profiled else
              "side by side, so they are no timing):"), "",
           "| model | closed units | GFLOPs / utt | ratio | decode s / utt | ratio |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m in models:
        g = decode_stats(exp / m, subsets)
        closed = "-" if g["closed"] is None else f"{100 * g['closed']:.1f} %"
        md.append(f"| {m} | {closed} | {fmt(g['gflops'], 3)} | {fmt(ratio(g['gflops'], ref['gflops']), 3)} | "
                  f"{fmt(g['seconds'], 3)} | {fmt(ratio(g['seconds'], ref['seconds']), 3)} |")
    return md + [""]


def patterns_section(exp: Path, models: List[str], subsets: List[str], corpus: Dict[str, str]) -> List[str]:
    """Per gated model: open rates per (corpus, language, task); writes its gate_patterns.json."""
    md = []
    for m in models:
        pat = gate_patterns(exp / m, subsets, corpus)
        if pat is None:
            continue
        (exp / m / "gate_patterns.json").write_text(json.dumps(pat, indent=2) + "\n")
        cols = [(side, u) for side in ("encoder", "decoder") for u in pat["units"].get(side, [])]
        md += [f"## Gate patterns: {m}", "",
               "Fraction of utterances in which a unit is open, averaged over layers, per "
               "(corpus, language, task); the corpus from `<data>/*/utt2corpus` where it names "
               "one. Per layer: `gate_patterns.json`.", "",
               "| group | utts | " + " | ".join(f"{s[:3]} {u}" for s, u in cols) + " |",
               "| --- | ---: |" + " ---: |" * len(cols)]
        for g, e in pat["groups"].items():
            md.append(f"| {g} | {e['num_utts']} | " + " | ".join(
                fmt(e[s]["per_unit"][u]) if s in e else "-" for s, u in cols) + " |")
        if pat["corpus_differences"]:
            md += ["", "Corpus effect (mean |difference| of the per-layer open rates, 0 = same "
                   "sub-network): " + "; ".join(f"{k}: {v:.3f}" for k, v in pat["corpus_differences"].items())]
        md.append("")
    return md


def baselines_section(exp: Path, out: Path) -> List[str]:
    """The static baselines' budget and what they removed, the plots, and the gate factors."""
    md = []
    target = read_json(exp / "baseline_target.json")
    l0 = read_json(exp / "l0" / "l0_export.json")
    lp = read_json(exp / "layerprune_init" / "layer_prune.json")
    if target or l0 or lp:
        md += ["## Static pruning baselines", "",
               "Both baselines are plain ESPnet models after pruning (docs/baselines.md). "
               "\"Analytic one-pass\" counts one teacher-forced pass (20 tokens); the decode GFLOPs "
               "measured in stages 7 and 9 are in the efficiency tables above."]
        if target:
            md += ["", f"- FLOPs budget: the gated model's measured decode GFLOPs / the full model's "
                   f"on {target['utterances']} utterances of `{Path(target['data_dir']).name}`: "
                   f"{target['gflops']['model']:.3f} / {target['gflops']['reference']:.3f} = "
                   f"**{target['fraction']:.3f}**"]
        if l0:
            kept = "; ".join(f"{side}: " + ", ".join(f"{g} {l0['kept'][side][g]}/{l0['total'][side][g]}"
                                                    for g in l0["kept"][side]) for side in l0["kept"])
            md += [f"- l0: units kept per layer ({kept}); params {l0['params_m']['masked']:.2f} M -> "
                   f"{l0['params_m']['pruned']:.2f} M; analytic one-pass GFLOPs {l0['gflops']['full']:.3f} -> "
                   f"{l0['gflops']['pruned']:.3f} ({100 * l0['flops_fraction']:.1f}%); pruned == masked "
                   f"outputs (max abs diff {l0['max_abs_diff']:.1e})"]
        if lp:
            md += [f"- layerprune: kept encoder {lp['keep']['encoder']}/{lp['layers']['encoder']}, decoder "
                   f"{lp['keep']['decoder']}/{lp['layers']['decoder']} layers ({100 * lp['flops_fraction']:.1f}% "
                   "of the analytic one-pass GFLOPs)"]
            for side, curve in (lp.get("convexity") or {}).items():
                md += [f"  - {side} convexity per layer (base model, dev): " + ", ".join(f"{x:.3f}" for x in curve)]
        md += [""]
    plots = sorted((exp / "plots").glob("*.png")) if (exp / "plots").is_dir() else []
    if plots:
        md += ["## Plots", ""]
        for png in plots:
            md += [f"![{png.stem}]({os.path.relpath(png, out.resolve().parent)})", ""]
        for f in sorted((exp / "plots").glob("gate_factors_*.json")):
            r = json.loads(f.read_text())
            if not r.get("varying_gates", 1):
                md += [f"Gate patterns ({r['model']}): every gate took the same decision on all "
                       f"{r['utterances']} utterances ({100 * r['closed_fraction']:.1f}% closed), so "
                       "no context factor explains them.", ""]
                continue
            ranked = sorted(r["factors"].items(), key=lambda kv: -(kv[1]["eta2"] or 0.0))
            md += [f"Gate variance explained by each factor ({r['model']}, eta^2 adjusted for the "
                   f"number of groups, {r['utterances']} utterances, {r['varying_gates']}/{r['gates']} "
                   "gates vary; `scripts/plot_gates.py`): "
                   + ", ".join(f"{k} {'n/a' if v['eta2'] is None else format(v['eta2'], '.3f')}"
                               for k, v in ranked)
                   + "".join(f"; {v['unlabelled']}" for _, v in ranked if v.get("unlabelled")), ""]
    return md


def runs_section(exp: Path, stage_names: Dict[str, str], preset: Optional[str],
                 decode_config: str = "conf/decode_s2t.yaml") -> List[str]:
    """Wall time per stage and the commands the recipe ran (the last of each repeated one)."""
    md = ["## Wall time per stage", "", "| stage | what | seconds |", "| --- | --- | ---: |"]
    total = 0
    for k, what in stage_names.items():
        f = exp / "stage_times" / k
        secs = int(f.read_text()) if f.exists() else None
        total += secs or 0
        md.append(f"| {k} | {what} | {'-' if secs is None else secs} |")
    md += [f"| | total (stages recorded) | {total} |", "",
           "(A stage's time is recorded when it last did work; a rerun that skips finished "
           "work keeps the earlier figure.)", "", "## Commands", ""]
    md += [f"`./run.sh --preset {preset}` ran, in order (configs: `conf/{preset}/`, "
           f"`{decode_config}`):" if preset else "run.sh ran, in order:", "", "```"]
    cmds = (exp / "commands.sh").read_text() if (exp / "commands.sh").exists() else ""
    seen: List[str] = []
    for line in cmds.splitlines():  # a resumed run repeats commands: keep the last of each
        if line.startswith("# ====="):  # the invocation blocks' headers (pipeline.sh)
            continue
        if line in seen:
            seen.remove(line)
        seen.append(line)
    return md + seen + ["```", ""]


def train_config(model_dir: Path) -> str:
    """The training YAML a model was trained with (``config:`` of ESPnet's config.yaml), or -."""
    f = model_dir / "config.yaml"
    if not f.is_file():
        return "-"
    with f.open(encoding="utf-8") as lines:  # the line, not the file: a token list can be 50k lines
        for line in lines:
            if line.startswith("config: "):
                return f"`{line[len('config: '):].strip()}`"
    return "-"


def write_results(out: Path, exp: Path, models: List[str], subsets: List[str], title: str,
                  reference: str = "full", efficiency: Optional[Path] = None,
                  corpus: Optional[Dict[str, str]] = None, pretrained: Optional[Path] = None,
                  preset: Optional[str] = None, base_scores: Optional[Path] = None,
                  base_name: str = "pre-trained", stage_names: Optional[Dict[str, str]] = None,
                  resamples: int = 1000, seed: int = 0, dump: Optional[Path] = None) -> str:
    """Writes RESULTS.md (and ``<exp>/compare.json``, ``<exp>/<model>/gate_patterns.json``).

    Args:
        out: RESULTS.md to write.
        exp: Experiment root: ``<model>/{scores.json,decode_<set>/,train_seconds}``,
            ``stage_times/<K>``, ``commands.sh``, ``plots/``, the baselines' JSON.
        models: Model dirs under ``exp``, in table order.
        subsets: Test sets, ``<set>_<lang>_<task>``; of any name in an ASR-task experiment
            (``scores.json`` of ``scripts/score.py --task asr``: ``"task": "asr"``).
        title: The heading, after "RESULTS: ".
        reference: The model that ratios and the paired bootstrap refer to.
        efficiency: Stage 9's profile JSON (default: ``<exp>/efficiency/<first ST set>.json``).
        corpus: Utterance -> corpus; given: a gate-pattern section per gated model.
        pretrained: Dir of the pre-trained model (``model.json``; default ``<exp>/owsm``).
        preset: The run.sh preset, named with the commands.
        base_scores: ``scores.json`` of the pre-trained base model (a row of its own).
        base_name: Its name in that row.
        stage_names: Stage -> what it does (default ``STAGES``).
        resamples: Paired bootstrap resamples.
        seed: Paired bootstrap seed.
        dump: Stage 2's formatted sets (``<set>/utt_counts.json``): each set's utterances
            next to the official count and its long ones.

    Returns:
        The Markdown written.
    """
    scores = {m: json.loads((exp / m / "scores.json").read_text()) for m in models}
    base = read_json(base_scores) if base_scores else None
    owsm = read_json((pretrained or exp / "owsm") / "model.json")
    asr = scores[models[0]].get("task") == "asr"  # an ASR-task experiment (LibriSpeech)
    tasks = set_tasks(scores[models[0]], subsets)
    profiled = efficiency is not None or not asr
    if efficiency is None:
        st = [s for s in subsets if tasks[s].startswith("st_")]
        efficiency = exp / "efficiency" / f"{(st or subsets)[0]}.json"
    if asr:
        md = [f"# RESULTS: {title}", "",
              f"Dynamic pruning (gated encoder) vs `{reference}`, ESPnet's ASR task. Generated by "
              "`scripts/report.py` (the last stage of `run.sh`).", ""]
    else:
        md = [f"# RESULTS: {title}", "",
              "Context-aware dynamic pruning (gated E-Branchformer/Transformer) vs the full "
              "fine-tune, all initialised from the same pre-trained model. Generated by "
              "`scripts/report.py` (stage 9 of `run.sh`).", ""]
    if owsm:
        md += [f"- pre-trained model: `{owsm.get('model', '?')}` ({owsm.get('encoder')} "
               f"{owsm.get('encoder_blocks')} + {owsm.get('decoder')} {owsm.get('decoder_blocks')} "
               f"blocks, d={owsm.get('output_size')}, {owsm.get('num_tokens')} tokens)"]
    md += [f"- machine: {platform.machine()}, {platform.system()}, {os.cpu_count()} CPUs, python "
           f"{platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')}",
           "- decoding: " + ("`conf/decode_asr.yaml` (`scripts/decode.py --task asr`), one run "
                             "per test set" if asr else
                             "`conf/decode_s2t.yaml` (beam 5, ctc_weight 0, maxlenratio 0.0), "
                             "one run per test subset with its `--lang_sym/--task_sym`"), "",
           "## Models", "", "| model | what | config | train s |", "| --- | --- | --- | ---: |"]
    # the base row: a base trained here (exp/base) or scored when it was made (base_scores)
    for m in (["base"] if (base or (exp / "base").is_dir()) and "base" not in models else []) + models:
        t = exp / m / "train_seconds"
        md.append(f"| {m} | {describe(m, ASR_DESCRIPTIONS if asr else None)} | {train_config(exp / m)} | "
                  f"{t.read_text().strip() if t.exists() else '-'} |")
    md += [""]
    md += score_tables(scores, models, subsets, base, base_name, utt_counts(dump, subsets))
    sets = [s for s in subsets if tasks[s].startswith("st_")] + [s for s in subsets if tasks[s] == "asr"]
    md += listen_section(scores, models, sets)
    if reference in models:
        comparison = compare(exp, models, reference, sets, resamples, seed, tasks)
        (exp / "compare.json").write_text(json.dumps(comparison, indent=2) + "\n")
        logging.info(f"wrote {exp / 'compare.json'}")
        md += compare_section(comparison, models, sets, scores)
    md += efficiency_section(exp, models, subsets, reference, efficiency, profiled)
    if corpus is not None:
        md += patterns_section(exp, models, subsets, corpus)
    md += baselines_section(exp, out)
    md += runs_section(exp, stage_names or STAGES, preset,
                       "conf/decode_asr.yaml" if asr else "conf/decode_s2t.yaml")
    text = "\n".join(md)
    Path(out).write_text(text)
    logging.info(f"wrote {out}")
    return text
