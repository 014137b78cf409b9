#!/usr/bin/env python3
"""BLEU / WER vs GFLOPs of every model (full fine-tune, static baselines, gated variants).

Reads ``<exp>/<model>/scores.json`` (stage 8) and the GFLOPs each decode
actually spent (``<exp>/<model>/decode_<subset>/gflops``, stage 7). Per
model: mean GFLOPs per utterance over the ST subsets and the mean BLEU over
them (left panel), the same for the ASR subsets and WER (right panel).
Writes the PNG and a JSON of the plotted points.

Usage:
    python scripts/plot_tradeoff.py --exp exp --models full gated l0 layerprune \\
        --test_sets test_deu_st_eng test_eng_asr ... --out exp/plots/tradeoff.png
"""

import argparse
import json
import logging
import statistics
from pathlib import Path
from typing import Dict, List

from espnet_ext.results import decode_stats

PROG = "plot_tradeoff"
STYLE = {"full": ("k", "s"), "l0": ("tab:red", "^"), "layerprune": ("tab:orange", "v")}


def points(exp: Path, models: List[str], subsets: List[str], metric: str) -> Dict[str, dict]:
    out = {}
    for m in models:
        path = exp / m / "scores.json"
        if not path.is_file():
            logging.warning(f"{path}: missing, {m} left out")
            continue
        scores = json.loads(path.read_text())["subsets"]
        vals = [scores[s][metric] for s in subsets if s in scores and scores[s].get(metric) is not None]
        g = decode_stats(exp / m, subsets)["gflops"]
        if vals and g is not None:
            out[m] = {"gflops": g, metric: statistics.fmean(vals), "subsets": len(vals)}
    return out


def main():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, type=Path, help="Experiment root (exp).")
    parser.add_argument("--models", nargs="+", required=True, help="Model dirs under --exp.")
    parser.add_argument("--test_sets", "--test-sets",
                        nargs="+", required=True, help="test_<lang>_<task> subsets.")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write (+ .json).")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("ST", [s for s in args.test_sets if "_st_" in s], "bleu", "BLEU (higher is better)"),
              ("ASR", [s for s in args.test_sets if s.endswith("_asr")], "wer", "WER % (lower is better)")]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    data = {}
    for ax, (name, subsets, metric, label) in zip(axes[0], panels):
        pts = points(args.exp, args.models, subsets, metric)
        data[name] = pts
        for m, p in pts.items():
            color, marker = STYLE.get(m, ("tab:blue", "o"))
            ax.scatter(p["gflops"], p[metric], color=color, marker=marker, s=50, zorder=3)
            ax.annotate(m, (p["gflops"], p[metric]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel("GFLOPs / utterance (decode, measured)")
        ax.set_ylabel(label)
        ax.set_title(f"{name}: mean over {len(subsets)} test subsets", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    logging.info(f"wrote {args.out}")


if __name__ == "__main__":
    main()
