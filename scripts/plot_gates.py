#!/usr/bin/env python3
"""Gate patterns of a dynamic model: how often each gate is open, per context group.

Reads the hard gate decisions stage 7 wrote for every decoded utterance
(``<exp>/<model>/decode_<subset>/gates/{encoder,decoder,units}``, one group of
0/1 per layer, see ``espnet_ext.s2t.inference.format_gates``) and the labels
of the utterances: language and task from the subset name
(``test_<lang>_<task>``), speaker from ``<dump>/<subset>/utt2spk``, acoustic
event from ``<dump>/<subset>/utt2event`` (an utterance without a line there is in
the group ``no spk`` / ``no event``, which the plot and the JSON explain). Writes,
per factor (language, task, speaker, event), a PNG of heatmaps (layer x unit,
one per group, encoder and decoder) of the fraction of utterances with the gate
open, and
``gate_factors.json`` with the numbers and, per factor, how much of the gate
variance it explains (correlation ratio eta^2 = between-group variance /
total variance of the 0/1 decisions, adjusted for the number of groups,
averaged over the gates that vary).

Usage:
    python scripts/plot_gates.py --exp exp --model gated --dump dump/raw \\
        --test_sets test_eng_asr test_deu_st_eng ... --out_dir exp/plots
"""

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import List, Optional

import numpy as np

from espnet_ext.kaldi import read_table
from espnet_ext.results import gate_bits, read_decode

PROG = "plot_gates"
FACTORS = ("language", "task", "speaker", "event")
# The group of the utterances that have no label of a factor (no line in utt2spk / utt2event,
# e.g. a set without event labels), and what the plots and gate_factors.json say about it.
UNLABELLED = {"speaker": "no spk", "event": "no event"}
UNLABELLED_LEGEND = {"speaker": "no spk: utterances without a line in <dump>/<set>/utt2spk",
                     "event": "no event: utterances without a line in <dump>/<set>/utt2event"}


def load(exp: Path, model: str, dump: Path, subsets: List[str]):
    """Gate arrays and labels of every decoded utterance.

    Returns:
        gates: {side: (N, layers, units)}, units: {side: [names]},
        labels: {factor: [N labels]}.
    """
    gates, units, labels = defaultdict(list), {}, defaultdict(list)
    for subset in subsets:
        decode = read_decode(exp / model / f"decode_{subset}")
        if not decode.gates:
            logging.warning(f"{exp / model / f'decode_{subset}'}: no gate decisions (not decoded, "
                            "or not a gated model)")
            continue
        units.update(decode.units)
        _, lang, task = subset.split("_", 2)
        spk = read_table(dump / subset / "utt2spk", missing_ok=True)
        event = read_table(dump / subset / "utt2event", missing_ok=True)
        for utt in sorted(set.intersection(*(set(t) for t in decode.gates.values()))):
            for side, table in decode.gates.items():
                gates[side].append(np.array(gate_bits(table[utt]), dtype=np.float64))
            labels["language"].append(lang)
            labels["task"].append(task)
            labels["speaker"].append(spk.get(utt, UNLABELLED["speaker"]))
            labels["event"].append(event.get(utt, UNLABELLED["event"]))
    if not labels:
        raise SystemExit(f"{PROG}: no gate decisions under {exp / model}/decode_*/gates")
    return {s: np.stack(v) for s, v in gates.items()}, units, {k: np.array(v) for k, v in labels.items()}


def eta_squared(bits: np.ndarray, groups: np.ndarray, adjusted: bool = True) -> Optional[float]:
    """Between-group / total variance of 0/1 decisions, mean over varying gates.

    Many small groups explain variance by chance (one utterance per group
    explains everything), so by default each gate's ratio is adjusted for the
    number of groups k like R^2: ``1 - (1 - eta2) (N - 1) / (N - k)``.

    Args:
        bits: (N, G) 0/1 decisions of G gates.
        groups: (N,) group labels.
        adjusted (bool): Adjust for the number of groups.

    Returns:
        The mean (adjusted, floored at 0) ratio, or None when no gate varies
        (nothing to explain) or there are no more utterances than groups.
    """
    total = bits.var(0)
    varying = total > 0
    if not varying.any():
        return None
    mean = bits.mean(0)
    between = np.zeros_like(mean)
    values = np.unique(groups)
    for g in values:
        sel = groups == g
        between += sel.mean() * (bits[sel].mean(0) - mean) ** 2
    ratio = between[varying] / total[varying]
    if adjusted:
        n, k = len(groups), len(values)
        if n <= k:
            return None
        ratio = 1.0 - (1.0 - ratio) * (n - 1) / (n - k)
    return max(0.0, float(ratio.mean()))


def plot_factor(factor: str, gates, units, labels, out: Path, max_groups: int) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, counts = np.unique(labels[factor], return_counts=True)
    order = [v for _, v in sorted(zip(-counts, values))][:max_groups]
    sides = list(gates)
    fig, axes = plt.subplots(len(sides), len(order), squeeze=False, constrained_layout=True,
                             figsize=(1.8 + 1.6 * len(order), 1.0 + 2.6 * len(sides)))
    image = None
    for r, side in enumerate(sides):
        for c, value in enumerate(order):
            sel = labels[factor] == value
            rate = gates[side][sel].mean(0)  # (layers, units)
            ax = axes[r][c]
            image = ax.imshow(rate, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(units[side])))
            ax.set_xticklabels(units[side], rotation=60, fontsize=7)
            ax.set_yticks(range(rate.shape[0]))
            ax.set_yticklabels([str(i + 1) for i in range(rate.shape[0])], fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{side} layer", fontsize=8)
            ax.set_title(f"{value} (n={int(sel.sum())})", fontsize=8)
    fig.suptitle(f"fraction of utterances with the gate open, by {factor}", fontsize=9)
    if UNLABELLED.get(factor) in order:
        fig.supxlabel(UNLABELLED_LEGEND[factor], fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return order


def main():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, type=Path, help="Experiment root (exp).")
    parser.add_argument("--model", default="gated", help="Gated model dir under --exp.")
    parser.add_argument("--dump", required=True, type=Path, help="dump/raw (utt2spk, utt2event).")
    parser.add_argument("--test_sets", "--test-sets",
                        nargs="+", required=True, help="test_<lang>_<task> subsets.")
    parser.add_argument("--max_groups", "--max-groups",
                        type=int, default=8, help="Largest groups plotted per factor.")
    parser.add_argument("--out_dir", "--out-dir",
                        required=True, type=Path, help="PNGs and gate_factors.json.")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    gates, units, labels = load(args.exp, args.model, args.dump, args.test_sets)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    flat = np.concatenate([g.reshape(g.shape[0], -1) for g in gates.values()], axis=1)
    report = {"model": args.model, "utterances": int(flat.shape[0]),
              "closed_fraction": float(1 - flat.mean()),
              "varying_gates": int((flat.var(0) > 0).sum()), "gates": int(flat.shape[1]), "factors": {}}
    for factor in FACTORS:
        if len(np.unique(labels[factor])) < 2:
            logging.info(f"{factor}: one group only, skipped")
            continue
        png = args.out_dir / f"gates_{args.model}_{factor}.png"
        shown = plot_factor(factor, gates, units, labels, png, args.max_groups)
        report["factors"][factor] = {
            "eta2": eta_squared(flat, labels[factor]),
            "eta2_raw": eta_squared(flat, labels[factor], adjusted=False),
            "groups": int(len(np.unique(labels[factor]))),
            "png": png.name,
            **({"unlabelled": UNLABELLED_LEGEND[factor]} if UNLABELLED.get(factor) in labels[factor] else {}),
            "open_rate": {v: {s: gates[s][labels[factor] == v].mean(0).round(4).tolist() for s in gates}
                          for v in shown},
        }
        logging.info(f"wrote {png}")
    (args.out_dir / f"gate_factors_{args.model}.json").write_text(json.dumps(report, indent=1))
    print(f"{args.model}: {report['utterances']} utterances, {100 * report['closed_fraction']:.1f}% of "
          f"gate decisions closed, {report['varying_gates']}/{report['gates']} gates vary")
    if not report["varying_gates"]:
        print("every gate takes the same decision on every utterance: no factor to attribute")
        return
    print(f"{'factor':10s} groups  eta^2 adjusted (raw): share of gate variance explained")
    ranked = sorted(report["factors"].items(), key=lambda kv: -(kv[1]["eta2"] or 0.0))
    for factor, r in ranked:
        adj = "  n/a" if r["eta2"] is None else f"{r['eta2']:.3f}"
        print(f"{factor:10s} {r['groups']:6d}  {adj} ({r['eta2_raw']:.3f})")
    for factor, r in ranked:
        if "unlabelled" in r:
            print(f"{factor}: {r['unlabelled']}")


if __name__ == "__main__":
    main()
