#!/usr/bin/env python3
"""Stage 9 of the S2T recipes (egs2/europarl_st/s2t1, egs2/TEMPLATE/s2t1): gate patterns per corpus/language/task and RESULTS.md.

Reads, for every model, ``<exp>/<model>/scores.json`` (stage 8), the decoding outputs
``decode_<set>/{gates/{encoder,decoder,units},gflops,decode_seconds}`` (stage 7), the
profile JSON of stage 9 (``espnet_ext.bin.profile``), ``<exp>/stage_times/<K>``,
``<exp>/<model>/train_seconds`` and ``<exp>/commands.sh``; the corpus label of each
utterance comes from ``<data>/*/utt2corpus``.

Gate patterns: for each gated model and each group (corpus, language, task), the fraction
of utterances in which each unit is open, per unit type (encoder ffn1/attn/cgmlp/ffn2,
decoder self_attn/src_attn/ffn, averaged over layers) and per layer; and, for every
language with ASR in two corpora (Europarl-ST and Voxforge), the mean absolute difference
of the two per-unit open-rate vectors (0: the corpus does not change the sub-network, 1:
disjoint). Written to ``<exp>/<model>/gate_patterns.json`` and into RESULTS.md.

Usage:
    python scripts/report.py --exp exp --data data --models full gated \\
        --test_sets test_deu_asr test_deu_st_eng vftest_deu_asr \\
        --efficiency exp/efficiency/test_deu_st_eng.json --out RESULTS.md
"""

import argparse
import json
import logging
import os
import platform
import statistics
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ext.kaldi import decode_stats, read_table

PROG = "report"
STAGES = {"1": "data preparation", "2": "audio (decode, resample, cut, filter)",
          "3": "context embeddings", "4": "pre-trained model", "5": "stats",
          "6": "training", "7": "decoding", "8": "scoring", "9": "efficiency profile"}
DESCRIPTIONS = {"full": "full fine-tune from OWSM, stock modules (baseline)",
                "gated": "gated fine-tune from OWSM, context lang+task",
                "gated_lang": "gated fine-tune from OWSM, context lang only",
                "gated_frame": "gated fine-tune from OWSM, context lang+task, attention pooling over frames",
                "gated_spk": "gated fine-tune from OWSM, context lang+task+speaker",
                "gated_event": "gated fine-tune from OWSM, context lang+task+acoustic event",
                "l0": "static baseline: L0 masks (FFN units, cgMLP channels) at the gated model's "
                      "measured GFLOPs, exported to a stock model",
                "layerprune": "static baseline: top layers dropped by convexity at the gated "
                              "model's measured GFLOPs, then fine-tuned"}


def fmt(x: Optional[float], digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def utt2corpus(data: Path) -> Dict[str, str]:
    out = {}
    for f in sorted(data.glob("*/utt2corpus")):
        out.update(read_table(f))
    return out


def gate_patterns(model_dir: Path, sets: List[str], corpus: Dict[str, str]) -> Optional[dict]:
    """Open rates per (corpus, lang, task) group; None for a model without gates."""
    units, groups = {}, defaultdict(lambda: defaultdict(list))
    for s in sets:
        d = model_dir / f"decode_{s}"
        names = read_table(d / "gates" / "units", missing_ok=True)
        if not names:
            continue
        _, lang, task = s.split("_", 2)
        for side in ("encoder", "decoder"):
            if side not in names:
                continue
            units[side] = names[side].split()
            for utt, value in read_table(d / "gates" / side, missing_ok=True).items():
                bits = [[int(c) for c in layer] for layer in value.split()]
                groups[f"{corpus.get(utt, '?')}/{lang}/{task}"][side].append(bits)
    if not groups:
        return None
    result = {"units": units, "groups": {}}
    for g, sides in sorted(groups.items()):
        entry = {"num_utts": max(len(v) for v in sides.values())}
        for side, pats in sides.items():
            n_layers, n_units = len(pats[0]), len(pats[0][0])
            per_layer = [[sum(p[i][j] for p in pats) / len(pats) for j in range(n_units)]
                         for i in range(n_layers)]
            entry[side] = {"per_layer": per_layer,
                           "per_unit": {u: statistics.fmean(row[j] for row in per_layer)
                                        for j, u in enumerate(units[side])}}
        result["groups"][g] = entry
    # corpus comparison: same language and task, two corpora
    by_lt = defaultdict(dict)
    for g in result["groups"]:
        c, lang, task = g.split("/")
        by_lt[(lang, task)][c] = g
    comparisons = {}
    for (lang, task), cs in sorted(by_lt.items()):
        for a, b in combinations(sorted(cs), 2):
            ga, gb = result["groups"][cs[a]], result["groups"][cs[b]]
            diffs = [abs(x - y) for side in ("encoder", "decoder") if side in ga and side in gb
                     for ra, rb in zip(ga[side]["per_layer"], gb[side]["per_layer"])
                     for x, y in zip(ra, rb)]
            comparisons[f"{lang}/{task}: {a} vs {b}"] = statistics.fmean(diffs)
    result["corpus_differences"] = comparisons
    return result


def factor_section(plots: Path, models: List[str], out: Path) -> List[str]:
    """Per gated model: how much of the gate variance each context factor explains (plot_gates)."""
    md = []
    for m in models:
        f = plots / f"gate_factors_{m}.json"
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        md += [f"## Gate variance by factor: {m}", "",
               f"{r['utterances']} utterances, {100 * r['closed_fraction']:.1f} % of the gate decisions "
               f"closed, {r['varying_gates']}/{r['gates']} gates vary (`scripts/plot_gates.py`; eta^2 "
               "adjusted for the number of groups: the share of the gate variance a factor explains).", ""]
        if not r["varying_gates"]:
            md += ["Every gate takes the same decision on every utterance: no factor to attribute.", ""]
            continue
        md += ["| factor | groups | eta^2 | plot |", "| --- | ---: | ---: | --- |"]
        for factor, v in sorted(r["factors"].items(), key=lambda kv: -(kv[1]["eta2"] or 0.0)):
            rel = os.path.relpath(plots / v["png"], out.resolve().parent)
            md.append(f"| {factor} | {v['groups']} | {fmt(v['eta2'], 3)} | [{v['png']}]({rel}) |")
        md.append("")
    return md


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, type=Path, help="Experiment root (exp).")
    parser.add_argument("--data", required=True, type=Path, help="Kaldi dirs (utt2corpus).")
    parser.add_argument("--models", nargs="+", required=True, help="Model dirs under --exp.")
    parser.add_argument("--test_sets", "--test-sets", nargs="+", required=True, help="<set>_<lang>_<task>.")
    parser.add_argument("--efficiency", type=Path, help="Profile JSON of stage 9.")
    parser.add_argument("--reference", default="full", help="Model the ratios refer to.")
    parser.add_argument("--title", default="Europarl-ST v1.1 S2T, context-aware dynamic pruning of OWSM",
                        help="RESULTS.md heading.")
    parser.add_argument("--base", type=Path, default=None,
                        help="The pre-trained model's dir of stage 4 (model.json); default <exp>/owsm.")
    parser.add_argument("--out", required=True, type=Path, help="RESULTS.md to write.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    exp, sets = args.exp, args.test_sets
    scores = {m: json.loads((exp / m / "scores.json").read_text()) for m in args.models}
    corpus = utt2corpus(args.data)
    base = (args.base or exp / "owsm") / "model.json"
    owsm = json.loads(base.read_text()) if base.is_file() else {}
    md = [f"# RESULTS: {args.title}", "",
          "Generated by `scripts/report.py` (stage 9 of the S2T recipes built on `egs2/TEMPLATE/pipeline.sh`).", "",
          f"- pre-trained model: `{owsm.get('model', '?')}` ({owsm.get('encoder')} "
          f"{owsm.get('encoder_blocks')} + {owsm.get('decoder')} {owsm.get('decoder_blocks')} "
          f"blocks, d={owsm.get('output_size')}, {owsm.get('num_tokens')} tokens)",
          f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')}",
          "- decoding: `conf/decode_s2t.yaml` (beam 5, ctc_weight 0, maxlenratio 0.0, batch 1), "
          "one run per test subset with its `--lang_sym/--task_sym`", ""]
    md += ["## Models", "", "| model | what | train s |", "| --- | --- | ---: |"]
    for m in args.models:
        t = exp / m / "train_seconds"
        md.append(f"| {m} | {DESCRIPTIONS.get(m, '')} | {t.read_text().strip() if t.exists() else '-'} |")
    md.append("")

    def table(subsets: List[str], metrics: List[str], title: str) -> None:
        if not subsets:
            return
        md.extend([f"## {title}", ""])
        head = [f"{s} {k}" for s in subsets for k in metrics]
        md.extend(["| model | " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(head)])
        for m in args.models:
            md.append(f"| {m} | " + " | ".join(
                fmt(scores[m]["subsets"][s].get(k)) for s in subsets for k in metrics) + " |")
        n = scores[args.models[0]]["subsets"]
        md.extend(["", "Utterances: " + ", ".join(f"{s} {n[s]['num_utts']}" for s in subsets), ""])

    table([s for s in sets if "_st_" in s], ["bleu", "chrf"],
          "Speech translation: BLEU / chrF per direction (sacrebleu, corpus level)")
    table([s for s in sets if s.endswith("_asr")], ["wer", "cer"],
          "ASR: WER / CER % per language and corpus (jiwer)")
    sig = scores[args.models[0]]
    md += ["Signatures: " + "; ".join(f"{k}: `{v}`" for k, v in sorted(sig["signatures"].items())),
           "", f"Normalisation: {sig['normalisation']}.", ""]

    md += ["## Efficiency", ""]
    if args.efficiency and args.efficiency.is_file():
        eff = json.loads(args.efficiency.read_text())
        md += [f"`espnet_ext.bin.profile` on `{args.efficiency.stem}` (same utterances, models "
               f"interleaved, identical settings); ratios vs `{eff.get('reference', args.reference)}`.",
               "", "| model | GFLOPs / utt | ratio | decode s (median) | ratio | peak MB |",
               "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for m, r in eff["models"].items():
            md.append(f"| {m} | {fmt(r.get('gflops_mean'), 3)} | {fmt(r.get('gflops_ratio'), 3)} | "
                      f"{fmt(r.get('time_median_s'), 3)} | {fmt(r.get('time_ratio'), 3)} | "
                      f"{fmt(r.get('peak_rss_mb'), 0)} |")
        settings = eff.get("settings", {})
        md += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()
                                            if k not in ("data_dir", "config", "model_file")), ""]
    else:
        md += ["(no profile JSON: stage 9's profile did not run)", ""]
    ref = decode_stats(exp / args.reference, sets)
    md += ["From stage 7 (all test subsets): closed units, GFLOPs actually spent per utterance:", "",
           "| model | closed units | GFLOPs / utt | ratio |", "| --- | ---: | ---: | ---: |"]
    for m in args.models:
        g = decode_stats(exp / m, sets)
        ratio = None if g["gflops"] is None or not ref["gflops"] else g["gflops"] / ref["gflops"]
        closed = "-" if g["closed"] is None else f"{100 * g['closed']:.1f} %"
        md.append(f"| {m} | {closed} | "
                  f"{fmt(g['gflops'], 3)} | {fmt(ratio, 3)} |")
    md.append("")

    for m in args.models:
        pat = gate_patterns(exp / m, sets, corpus)
        if pat is None:
            continue
        (exp / m / "gate_patterns.json").write_text(json.dumps(pat, indent=2) + "\n")
        md += [f"## Gate patterns: {m}", "",
               "Fraction of utterances in which a unit is open, averaged over layers, per "
               "(corpus, language, task). Per layer: `gate_patterns.json`.", ""]
        cols = [(side, u) for side in ("encoder", "decoder") for u in pat["units"].get(side, [])]
        md += ["| group | utts | " + " | ".join(f"{s[:3]} {u}" for s, u in cols) + " |",
               "| --- | ---: |" + " ---: |" * len(cols)]
        for g, e in pat["groups"].items():
            md.append(f"| {g} | {e['num_utts']} | " + " | ".join(
                fmt(e[s]["per_unit"][u]) if s in e else "-" for s, u in cols) + " |")
        if pat["corpus_differences"]:
            md += ["", "Corpus effect (mean |difference| of the per-layer open rates, 0 = same "
                   "sub-network): " + "; ".join(f"{k}: {v:.3f}"
                                                for k, v in pat["corpus_differences"].items())]
        md.append("")
    md += factor_section(exp / "plots", args.models, args.out)

    md += ["## Wall time per stage", "", "| stage | what | seconds |", "| --- | --- | ---: |"]
    for k, what in STAGES.items():
        f = exp / "stage_times" / k
        md.append(f"| {k} | {what} | {f.read_text().strip() if f.exists() else '-'} |")
    md += ["", "## Commands", "", "run.sh ran, in order:", "", "```"]
    seen: List[str] = []
    cmds = (exp / "commands.sh").read_text() if (exp / "commands.sh").exists() else ""
    for line in cmds.splitlines():
        if line in seen:
            seen.remove(line)
        seen.append(line)
    md += seen + ["```", ""]
    args.out.write_text("\n".join(md))
    logging.info(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
