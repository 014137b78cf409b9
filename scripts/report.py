#!/usr/bin/env python3
"""Stage 9 of every S2T recipe: RESULTS.md from the recipe's outputs (``espnet_ext.results``).

Reads, for every model, ``<exp>/<model>/scores.json`` and ``decode_<set>/per_utt.json``
(stage 8), the decoding outputs ``decode_<set>/{gates/*,gflops,decode_seconds}`` (stage 7),
the profile JSON of stage 9 (``espnet_ext.bin.profile``), ``<exp>/plots/`` (gate factors),
the static baselines' JSON, ``<exp>/stage_times/<K>``, ``<exp>/<model>/train_seconds`` and
``<exp>/commands.sh``. Writes RESULTS.md with: the scores, whether the models listen (stage
8's warnings), the paired bootstrap of every model vs ``--reference`` per set (also in
``<exp>/compare.json``: ``{"reference", "n_resamples", "seed", "models": {model: {set:
{"metric", "num_utts", "delta", "ci_low", "ci_high", "p_value", "n_resamples", "score_a",
"score_b"}}}}``, delta = model - reference), efficiency, the baselines, plots, stage times and
commands. With ``--data``: gate patterns per (corpus, language, task) of every gated model,
the corpus of each utterance from ``<data>/*/utt2corpus`` (also in
``<exp>/<model>/gate_patterns.json``).

Usage:
    python scripts/report.py --exp exp --data data --models full gated \\
        --test_sets test_deu_asr test_deu_st_eng vftest_deu_asr \\
        --efficiency exp/efficiency/test_deu_st_eng.json --out RESULTS.md
    python scripts/report.py --exp exp --preset demo --title "mini Europarl S2T, preset \\`demo\\`" \\
        --models full gated --test_sets test_deu_st_eng test_eng_asr --out RESULTS.md
"""

import argparse
import logging
from pathlib import Path

from espnet_ext.kaldi import read_table
from espnet_ext.results import STAGES, write_results

PROG = "report"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, type=Path, help="Experiment root (exp).")
    parser.add_argument("--models", nargs="+", required=True, help="Model dirs under --exp.")
    parser.add_argument("--test_sets", "--test-sets", nargs="+", required=True, help="<set>_<lang>_<task>.")
    parser.add_argument("--out", required=True, type=Path, help="RESULTS.md to write.")
    parser.add_argument("--title", default="Europarl-ST v1.1 S2T, context-aware dynamic pruning of OWSM",
                        help="RESULTS.md heading.")
    parser.add_argument("--data", type=Path, help="Kaldi dirs with utt2corpus: gate patterns per corpus.")
    parser.add_argument("--dump", type=Path,
                        help="Stage 2's sets (<set>/utt_counts.json): utterances vs the official count.")
    parser.add_argument("--efficiency", type=Path,
                        help="Profile JSON of stage 9 (default <exp>/efficiency/<first ST set>.json).")
    parser.add_argument("--reference", default="full", help="Model the ratios and the paired bootstrap refer to.")
    parser.add_argument("--resamples", type=int, default=1000, help="Paired bootstrap resamples.")
    parser.add_argument("--seed", type=int, default=0, help="Paired bootstrap seed.")
    parser.add_argument("--pretrained", type=Path,
                        help="The pre-trained model's dir of stage 4 (model.json); default <exp>/owsm.")
    parser.add_argument("--preset", help="run.sh preset (named with the commands).")
    parser.add_argument("--base_scores", "--base-scores", type=Path,
                        help="scores.json of the pre-trained base model (a row of its own).")
    parser.add_argument("--base_name", "--base-name", default="pre-trained", help="Its name in that row.")
    parser.add_argument("--stage_names", "--stage-names", nargs="+", default=[], metavar="K=WHAT",
                        help=f"What a stage does, where the recipe differs from {STAGES}.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    stages = dict(STAGES)
    for item in args.stage_names:
        k, sep, what = item.partition("=")
        if not sep or k not in stages:
            parser.error(f"--stage_names: {item!r} is not K=WHAT with K in 1-9")
        stages[k] = what
    corpus = None
    if args.data:
        corpus = {}
        for f in sorted(args.data.glob("*/utt2corpus")):
            corpus.update(read_table(f))
    write_results(args.out, args.exp, args.models, args.test_sets, args.title, reference=args.reference,
                  efficiency=args.efficiency, corpus=corpus, pretrained=args.pretrained, preset=args.preset,
                  base_scores=args.base_scores, base_name=args.base_name, stage_names=stages,
                  resamples=args.resamples, seed=args.seed, dump=args.dump)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
