#!/usr/bin/env python3
"""Stage 9: writes RESULTS.md from the recipe's outputs.

Reads ``<exp>/<model>/scores.json`` (stage 8), the decoding outputs
(``decode_<subset>/{gflops,decode_seconds,gates/*}``, stage 7), the profile JSON
``<exp>/efficiency/test_deu_st_eng.json`` (stage 9, ``espnet_ext.bin.profile``),
``<exp>/stage_times/<K>`` and ``<exp>/<model>/train_seconds`` (run.sh) and
``<exp>/commands.sh`` (every command run.sh ran).

From stage 8's ``decode_<subset>/per_utt.json`` it compares every model with the
reference model (``--reference``, full) per test set by a paired bootstrap over the
utterances (``scripts/bootstrap.py``: BLEU for ST, WER for ASR) and writes the
comparison to ``<exp>/compare.json``:
``{"reference", "n_resamples", "seed", "models": {model: {subset: {"metric", "num_utts",
"delta", "ci_low", "ci_high", "p_value", "n_resamples", "score_a", "score_b"}}}}``
(delta = model - reference, score_a the model's, score_b the reference's).

Usage:
    python scripts/make_results.py --exp exp --preset demo \\
        --models full gated gated_spk gated_event --test_sets test_deu_st_eng ... --out RESULTS.md
"""

import argparse
import json
import logging
import os
import platform
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ext.kaldi import decode_stats

# siblings in scripts/ (on sys.path when this script is run as a file)
from bootstrap import paired_bootstrap_bleu, paired_bootstrap_wer
from score import LOOP_RATIO, MAX_LOOPING, MIN_DISTINCT

PROG = "make_results"
STAGES = {
    "1": "data preparation (corpus synthesis)",
    "2": "audio format",
    "3": "context embeddings",
    "4": "token list",
    "5": "stats",
    "6": "training",
    "7": "decoding",
    "8": "scoring",
    "9": "efficiency profile",
}
DESCRIPTIONS = {
    "base": "pre-trained base (stands in for OWSM): `pretrained/mini_owsm`, or pre-trained "
            "here on the `pretrain` set (`--base scratch`)",
    "full": "full fine-tune, stock modules (baseline)",
    "gated": "gated fine-tune, context lang+task",
    "gated_spk": "gated fine-tune, context lang+task+speaker (resemblyzer)",
    "gated_event": "gated fine-tune, context lang+task+event (tagger)",
    "l0": "static baseline: L0 structured pruning (HardConcrete masks + FLOPs Lagrangian), "
          "units removed -> stock model",
    "layerprune": "static baseline: convexity-based layer pruning + fine-tune (stock model)",
}


def baselines_section(exp: Path, out: Path) -> List[str]:
    """The static baselines' budget and what they removed, and the plots (if any)."""
    md = []
    target = exp / "baseline_target.json"
    l0 = exp / "l0" / "l0_export.json"
    lp = exp / "layerprune_init" / "layer_prune.json"
    if target.exists() or l0.exists() or lp.exists():
        md += ["## Static pruning baselines", "",
               "Both baselines are plain ESPnet models after pruning (docs/baselines.md). "
               "\"Analytic one-pass\" counts one teacher-forced pass (20 tokens); the decode GFLOPs "
               "measured in stages 7 and 9 are in the efficiency tables above."]
        if target.exists():
            t = json.loads(target.read_text())
            md += ["", f"- FLOPs budget: the gated model's measured decode GFLOPs / the full model's "
                   f"on {t['utterances']} utterances of `{Path(t['data_dir']).name}`: "
                   f"{t['gflops']['model']:.3f} / {t['gflops']['reference']:.3f} = **{t['fraction']:.3f}**"]
        if l0.exists():
            r = json.loads(l0.read_text())
            kept = "; ".join(f"{side}: " + ", ".join(f"{g} {r['kept'][side][g]}/{r['total'][side][g]}"
                                                    for g in r["kept"][side]) for side in r["kept"])
            md += [f"- l0: units kept per layer ({kept}); params {r['params_m']['masked']:.2f} M -> "
                   f"{r['params_m']['pruned']:.2f} M; analytic one-pass GFLOPs {r['gflops']['full']:.3f} -> "
                   f"{r['gflops']['pruned']:.3f} ({100 * r['flops_fraction']:.1f}%); pruned == masked "
                   f"outputs (max abs diff {r['max_abs_diff']:.1e})"]
        if lp.exists():
            r = json.loads(lp.read_text())
            curve = r.get("convexity") or {}
            md += [f"- layerprune: kept encoder {r['keep']['encoder']}/{r['layers']['encoder']}, decoder "
                   f"{r['keep']['decoder']}/{r['layers']['decoder']} layers ({100 * r['flops_fraction']:.1f}% "
                   "of the analytic one-pass GFLOPs)"]
            for side, scores in curve.items():
                md += [f"  - {side} convexity per layer (base model, dev): "
                       + ", ".join(f"{x:.3f}" for x in scores)]
        md += [""]
    plots = sorted((exp / "plots").glob("*.png")) if (exp / "plots").is_dir() else []
    if plots:
        md += ["## Plots", ""]
        for png in plots:
            rel = os.path.relpath(png, out.resolve().parent)
            md += [f"![{png.stem}]({rel})", ""]
        factors = sorted((exp / "plots").glob("gate_factors_*.json"))
        for f in factors:
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
                               for k, v in ranked), ""]
    return md


def fmt(x: Optional[float], digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def compare(exp: Path, models: List[str], reference: str, subsets: List[str],
            n: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap of each model vs ``reference`` per subset (BLEU for ST, WER for ASR)."""
    out = {"reference": reference, "n_resamples": n, "seed": seed, "models": {}}
    for s in subsets:
        path = exp / reference / f"decode_{s}" / "per_utt.json"
        if not path.exists():
            logging.warning(f"no {path} (rerun stage 8): no comparison on {s}")
            continue
        ref = json.loads(path.read_text(encoding="utf-8"))["utts"]
        keys = sorted(ref)
        for m in models:
            path = exp / m / f"decode_{s}" / "per_utt.json"
            if m == reference:
                continue
            if not path.exists():  # scored before per_utt.json existed
                logging.warning(f"no {path} (rerun stage 8): {m} not compared on {s}")
                continue
            utts = json.loads(path.read_text(encoding="utf-8"))["utts"]
            if sorted(utts) != keys:
                raise ValueError(f"{path}: other utterances than {reference}'s")
            if "_st_" in s:
                r = paired_bootstrap_bleu([utts[k]["hyp"] for k in keys],
                                          [ref[k]["hyp"] for k in keys],
                                          [ref[k]["ref"] for k in keys], n, seed)
            else:
                r = paired_bootstrap_wer([utts[k]["errors"] for k in keys],
                                         [ref[k]["words"] for k in keys],
                                         [ref[k]["errors"] for k in keys], n, seed)
            r = {"metric": "bleu" if "_st_" in s else "wer", "num_utts": len(keys), **r}
            out["models"].setdefault(m, {})[s] = r
    return out


def listen_section(scores: Dict[str, dict], models: List[str], subsets: List[str]) -> List[str]:
    """Distinct-hypothesis and looping fractions per model and set, and stage 8's warnings."""
    md = ["## Do the models listen?", "",
          "Per test set: the fraction of distinct hypotheses among its utterances (normalised "
          "text; a model that ignores its input repeats itself) and, in brackets, the fraction "
          f"of looping hypotheses (more than {LOOP_RATIO:g}x the reference's words). Bold: "
          f"flagged by `scripts/score.py`, i.e. distinct < {MIN_DISTINCT:g} x the references' "
          f"fraction or looping > {MAX_LOOPING:g}.", "",
          "| model | " + " | ".join(s[len("test_"):] for s in subsets) + " |",
          "| --- |" + " ---: |" * len(subsets)]
    first = scores[models[0]]["subsets"]
    md.append("| references | " + " | ".join(fmt(first[s].get("distinct_ref")) for s in subsets)
              + " |")
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
    md = [f"## Difference vs {ref} (paired bootstrap, 95% CI, p)", "",
          f"Model - {ref} per test set: BLEU points for ST (higher is better), WER points for "
          f"ASR (lower is better); paired bootstrap over the set's utterances "
          f"({comparison['n_resamples']} resamples, seed {comparison['seed']}, "
          "`scripts/bootstrap.py`), 95% percentile interval, two-sided p (at least "
          f"{2 / (comparison['n_resamples'] + 1):.3f} with this many resamples). Bold: p < 0.05. "
          "(flagged): one of the two models does not listen on that set (above), so the "
          "difference says nothing about pruning. All in `<exp>/compare.json`. The bootstrap "
          "resamples the test utterances, not the training: another seed of the same fine-tune "
          "(`scripts/bench/retrain.py --from_model <model> --name <model>_seed1 -- --seed 1`) "
          "shows how far training randomness alone moves a score.", "",
          "| model | " + " | ".join(f"{s[len('test_'):]} {'BLEU' if '_st_' in s else 'WER'}"
                                   for s in subsets) + " |",
          "| --- |" + " ---: |" * len(subsets)]
    for m in shown:
        cells = []
        for s in subsets:
            r = rows[m].get(s)
            if r is None:
                cells.append("-")
                continue
            p = r["p_value"]
            cell = (f"{r['delta']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] "
                    f"p={p:.{2 if p >= 0.01 else 3}f}")
            cell = f"**{cell}**" if p < 0.05 else cell
            if any(scores[x]["subsets"][s].get("warnings") for x in (m, ref) if x in scores):
                cell += " (flagged)"
            cells.append(cell)
        md.append(f"| {m} | " + " | ".join(cells) + " |")
    return md + [""]


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp", required=True, type=Path, help="Experiment root (exp).")
    parser.add_argument("--preset", required=True, help="Preset name (tiny, demo, bench, base).")
    parser.add_argument("--models", nargs="+", required=True, help="Model dirs under --exp.")
    parser.add_argument("--test_sets", "--test-sets", nargs="+", required=True, help="test_<lang>_<task>.")
    parser.add_argument("--reference", default="full",
                        help="Model the ratios and the paired bootstrap refer to.")
    parser.add_argument("--resamples", type=int, default=1000, help="Paired bootstrap resamples.")
    parser.add_argument("--seed", type=int, default=0, help="Paired bootstrap seed.")
    parser.add_argument("--base_scores", "--base-scores", type=Path,
                        help="scores.json of the pre-trained base model (a row of its own).")
    parser.add_argument("--base_name", "--base-name", default="pre-trained", help="Its name in that row.")
    parser.add_argument("--out", required=True, type=Path, help="RESULTS.md to write.")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    exp = args.exp
    st = [s for s in args.test_sets if "_st_" in s]
    asr = [s for s in args.test_sets if s.endswith("_asr")]
    scores = {m: json.loads((exp / m / "scores.json").read_text()) for m in args.models}
    base = None
    if args.base_scores and args.base_scores.is_file():
        base = json.loads(args.base_scores.read_text())
    md = [f"# RESULTS: mini Europarl S2T, preset `{args.preset}`", ""]
    md += ["Context-aware dynamic pruning (gated E-Branchformer/Transformer) vs the full "
           "fine-tune, all initialised from the same small OWSM-shaped base model. "
           "Generated by `scripts/make_results.py` (stage 9 of `run.sh`).", ""]
    md += [f"- machine: {platform.machine()}, {platform.system()}, "
           f"{os.cpu_count()} CPUs, python {platform.python_version()}, "
           f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')}",
           "- decoding: `conf/decode_s2t.yaml` (beam 5, ctc_weight 0, maxlenratio 0.0, "
           "batch 1), one run per test subset with its `--lang_sym/--task_sym`", ""]
    md += ["## Models", "", "| model | what | train s |", "| --- | --- | ---: |"]
    for m in ["base"] + args.models:
        t = exp / m / "train_seconds"
        md.append(f"| {m} | {DESCRIPTIONS.get(m, '')} | "
                  f"{t.read_text().strip() if t.exists() else '-'} |")
    md += [""]

    def table(subsets: List[str], metrics: List[str], title: str, note: str) -> None:
        nonlocal md
        if not subsets:
            return
        md += [f"## {title}", "", note, ""]
        head = [f"{s[len('test_'):]} {k}" for s in subsets for k in metrics]
        md += ["| model | " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(head)]
        for m in args.models:
            cells = [fmt(scores[m]["subsets"][s].get(k)) for s in subsets for k in metrics]
            md.append(f"| {m} | " + " | ".join(cells) + " |")
        if base:
            cells = [fmt(base["subsets"].get(s, {}).get(k)) for s in subsets for k in metrics]
            md.append(f"| base ({args.base_name}) | " + " | ".join(cells) + " |")
        n = {s: scores[args.models[0]]["subsets"][s]["num_utts"] for s in subsets}
        md += ["", "Utterances: " + ", ".join(f"{s} {v}" for s, v in n.items())]
        if base:
            nb = {s: base["subsets"].get(s, {}).get("num_utts") for s in subsets}
            md += ["", f"base ({args.base_name}): the pre-trained model before any fine-tuning, "
                   "scored when it was made (`./run.sh --preset base`, its `scores.json`) on "
                   "that preset's test sets (" + ", ".join(f"{v}" for v in nb.values())
                   + " utterances; the first sentences of the same permutation, so they "
                   "include these)."]
        md += [""]

    table(st, ["bleu", "chrf"], "Speech translation (BLEU / chrF, sacrebleu)",
          "Per direction (source -> English), corpus level.")
    table(asr, ["wer", "cer"], "ASR (WER / CER %, jiwer)", "Per language.")
    sig = scores[args.models[0]]
    md += ["Signatures: " + "; ".join(f"{k}: `{v}`" for k, v in sorted(sig["signatures"].items())),
           "", f"Normalisation (hypotheses and references): {sig['normalisation']}.", ""]
    md += listen_section(scores, args.models, st + asr)
    if args.reference in args.models:
        comparison = compare(exp, args.models, args.reference, st + asr, args.resamples, args.seed)
        (exp / "compare.json").write_text(json.dumps(comparison, indent=2) + "\n")
        logging.info(f"wrote {exp / 'compare.json'}")
        md += compare_section(comparison, args.models, st + asr, scores)

    md += ["## Efficiency", "",
           "GFLOPs in fvcore's convention (the papers' tool): one multiply-add = one flop.", ""]
    eff_path = exp / "efficiency" / "test_deu_st_eng.json"
    if eff_path.exists():
        eff = json.loads(eff_path.read_text())
        models = eff["models"]
        settings = eff.get("settings") or next(iter(models.values())).get("settings", {})
        md += ["`espnet_ext.bin.profile` on `test_deu_st_eng` (same utterances, one process, "
               "models profiled under identical settings); ratios vs "
               f"`{eff.get('reference', args.reference)}`. Subsampling: the GFLOPs of the encoder's "
               "conv input layer, which no gate skips (the floor of any gating).", "",
               "| model | GFLOPs / utt | ratio | subsampling | decode s (median) | min s | ratio "
               "| peak RSS MB |",
               "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for m, r in models.items():
            sub = r.get("gflops_parts", {}).get("subsampling")
            md.append(f"| {m} | {fmt(r.get('gflops_mean'), 3)} | {fmt(r.get('gflops_ratio'), 3)} | "
                      f"{fmt(sub, 3)} | "
                      f"{fmt(r.get('time_median_s'), 3)} | {fmt(r.get('time_min_s'), 3)} | "
                      f"{fmt(r.get('time_ratio'), 3)} | {fmt(r.get('peak_rss_mb'), 0)} |")
        md += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()
                                            if k not in ("data_dir", "config", "model_file")), ""]
    else:
        md += [f"(no {eff_path}: stage 9's profile did not run)", ""]
    ref = decode_stats(exp / args.reference, args.test_sets)
    md += ["From stage 7's decoding of all test subsets (GFLOPs actually spent per utterance "
           "and the fraction of gated units closed; the seconds come from --nj models decoded "
           "side by side, so use the profile above for timing):", "",
           "| model | closed units | GFLOPs / utt | ratio | decode s / utt | ratio |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m in args.models:
        g = decode_stats(exp / m, args.test_sets)
        ratio = lambda a, b: None if a is None or not b else a / b  # noqa: E731
        md.append(f"| {m} | {fmt(None if g['closed'] is None else 100 * g['closed'], 1)}"
                  f"{'' if g['closed'] is None else ' %'} | {fmt(g['gflops'], 3)} | "
                  f"{fmt(ratio(g['gflops'], ref['gflops']), 3)} | {fmt(g['seconds'], 3)} | "
                  f"{fmt(ratio(g['seconds'], ref['seconds']), 3)} |")
    md += [""]

    md += baselines_section(exp, args.out)
    md += ["## Wall time per stage", "", "| stage | what | seconds |", "| --- | --- | ---: |"]
    total = 0
    for k, what in STAGES.items():
        f = exp / "stage_times" / k
        secs = int(f.read_text()) if f.exists() else None
        total += secs or 0
        md.append(f"| {k} | {what} | {'-' if secs is None else secs} |")
    md += [f"| | total (stages recorded) | {total} |", "",
           "(A stage's time is recorded when it last did work; a rerun that skips finished "
           "work keeps the earlier figure.)", ""]

    md += ["## Commands", "", f"`./run.sh --preset {args.preset}` ran, in order (configs: "
           f"`conf/{args.preset}/`, `conf/decode_s2t.yaml`):", "", "```"]
    cmds = (exp / "commands.sh").read_text() if (exp / "commands.sh").exists() else ""
    seen = []
    for line in cmds.splitlines():  # a resumed run repeats commands: keep the last of each
        if line in seen:
            seen.remove(line)
        seen.append(line)
    md += seen + ["```", ""]
    args.out.write_text("\n".join(md))
    logging.info(f"wrote {args.out}")


if __name__ == "__main__":
    main()
