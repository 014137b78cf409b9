#!/usr/bin/env python3
"""WER (jiwer) of decoded test sets, and the RESULTS.md table.

Reads ``<exp>/<model>/decode_<set>/1best_recog/text``, ``gates`` and ``gflops`` (written by
``python -m espnet_ext.asr.inference``) and the reference ``<data>/<set>/text``; writes
``<exp>/<model>/decode_<set>/wer.json`` ({"wer", "sub", "del", "ins", "ref_words", "utts",
"missing"}) and prints one Markdown table: WER (%) per model and set, the mean encoder
GFLOPs per utterance and the fraction of encoder units closed (over all the sets). A reference utterance without hypothesis counts as all
deletions (and is listed as missing).

Usage:
    python local/librispeech/score.py --exp exp --data data --models base gated \\
        --sets test_clean test_other --out RESULTS.md
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from espnet_ext.kaldi import read_table
from espnet_ext.results import count_closed, read_decode

PROG = "librispeech/score"


def score(ref_file: Path, hyp_file: Path) -> dict:
    """Corpus WER of the hypotheses against the references (upper-cased, as LibriSpeech)."""
    import jiwer

    refs, hyps = read_table(ref_file, allow_empty=True), read_table(hyp_file, allow_empty=True)
    keys = sorted(refs)
    missing = [k for k in keys if k not in hyps]
    ref = [refs[k].upper() for k in keys]
    hyp = [hyps.get(k, "").upper() for k in keys]
    out = jiwer.process_words(ref, hyp)
    n = sum(len(r.split()) for r in ref)
    return {
        "wer": 100.0 * out.wer, "sub": out.substitutions, "del": out.deletions,
        "ins": out.insertions, "ref_words": n, "utts": len(keys), "missing": missing,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp", type=Path, required=True, help="Experiment dir.")
    parser.add_argument("--data", type=Path, required=True, help="Dir of the reference sets.")
    parser.add_argument("--models", nargs="+", required=True, help="Model dirs under --exp.")
    parser.add_argument("--sets", nargs="+", required=True, help="Test sets.")
    parser.add_argument("--out", type=Path, help="Write the table (RESULTS.md) here too.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    rows = []
    for model in args.models:
        cells = []
        for s in args.sets:
            dec = args.exp / model / f"decode_{s}"
            hyp = dec / "1best_recog" / "text"
            if not hyp.exists():
                logging.error(f"{hyp}: missing (run the decoding stage)")
                return 1
            res = score(args.data / s / "text", hyp)
            (dec / "wer.json").write_text(json.dumps(res, indent=1) + "\n")
            if res["missing"]:
                logging.warning(f"{dec}: {len(res['missing'])} utterances without hypothesis")
            cells.append(f"{res['wer']:.2f}")
            logging.info(f"{model} {s}: WER {res['wer']:.2f}% ({res['ref_words']} words, "
                         f"{res['sub']} sub, {res['del']} del, {res['ins']} ins)")
        gflops, closed = [], []
        for s in args.sets:
            decode = read_decode(args.exp / model / f"decode_{s}")
            gflops += decode.gflops.values()
            for bits in decode.gates["encoder"].values():
                c, total = count_closed([bits])
                closed.append(c / total)
        rows.append(f"| {model} | " + " | ".join(cells)
                    + f" | {sum(gflops) / len(gflops):.4g} | {sum(closed) / len(closed):.3f} |")
    head = ("| model | " + " | ".join(f"{s} WER (%)" for s in args.sets)
            + " | encoder GFLOPs/utt | gate sparsity |")
    sep = "|" + "---|" * (len(args.sets) + 3)
    table = "\n".join([head, sep] + rows) + "\n"
    print(table, end="")
    if args.out:
        args.out.write_text(
            "# LibriSpeech 100 h: Transformer, base vs gated (I3D-style dynamic depth)\n\n"
            + table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
