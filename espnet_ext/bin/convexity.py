#!/usr/bin/env python3
"""Per-layer graph convexity of class regions (arXiv 2408.11858).

Usage:
    python -m espnet_ext.bin.convexity --config exp/base/config.yaml \\
        --model_file exp/base/valid.acc.ave.pth --data_dir dump/raw/dev \\
        --num_utts 200 --out exp/layerprune/convexity.json

For every encoder layer, the utterances' mean-pooled outputs labelled by
``--encoder_label`` (lang, task or lang_task, from the ``<lang><task>`` prefix of
``text``); for every decoder layer, the teacher-forced outputs at each target
position labelled by the token they predict. Builds a kNN graph (``--k``),
scores up to ``--max_paths`` shortest paths between same-class points and
prints the curve (one row per layer) and the layers the criterion keeps (up
to the peak). ``espnet_ext.bin.layer_prune`` reads the JSON.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import espnet_ext

espnet_ext.register()

from espnet2.tasks.s2t import S2TTask  # noqa: E402

from espnet_ext.pruning.convexity import graph_convexity, keep_until_peak  # noqa: E402
from espnet_ext.pruning.layers import ENCODER_LABELS, layer_representations  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, type=Path, help="Training config.yaml of a stock S2T model.")
    p.add_argument("--model_file", "--model-file", dest="model_file", required=True, type=Path,
                   help="Its checkpoint (.pth).")
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", required=True, type=Path,
                   help="Held-out Kaldi dir (wav.scp, text, text.ctc).")
    p.add_argument("--num_utts", "--num-utts",
                   type=int, default=None, help="First N utterances (default: all).")
    p.add_argument("--encoder_label", "--encoder-label", default="lang", choices=ENCODER_LABELS,
                   help="Utterance class of the encoder layers.")
    p.add_argument("--k", type=int, default=10, help="Neighbours of the kNN graph.")
    p.add_argument("--max_paths", "--max-paths",
                   type=int, default=5000, help="Same-class shortest paths per layer.")
    p.add_argument("--max_tokens", "--max-tokens",
                   type=int, default=3000, help="Decoder positions used (random subset).")
    p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    p.add_argument("--out", type=Path, help="Write the curve as JSON here.")
    return p


def convexity_curve(args) -> dict:
    model, train_args = S2TTask.build_model_from_file(args.config, args.model_file, "cpu")
    model.eval()
    preprocess = S2TTask.build_preprocess_fn(train_args, False)
    reps = layer_representations(model, preprocess, args.data_dir, args.num_utts,
                                 args.encoder_label, args.max_tokens, args.seed)
    out = {"settings": {"k": args.k, "max_paths": args.max_paths, "encoder_label": args.encoder_label,
                        "data_dir": str(args.data_dir), "model_file": str(args.model_file)}}
    for side, (layers, labels) in reps.items():
        scores = []
        for i, x in enumerate(layers, 1):
            r = graph_convexity(x, labels, k=args.k, max_paths=args.max_paths, seed=args.seed)
            scores.append(r["score"])
            logging.info(f"{side} layer {i}: convexity {r['score']:.4f} ({r['paths']} paths)")
        out[side] = {"scores": scores, "points": int(len(labels)),
                     "classes": int(len(set(labels.tolist()))), "keep": keep_until_peak(scores)}
    return out


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (convexity) %(levelname)s: %(message)s")
    out = convexity_curve(args)
    print("layer  encoder  decoder")
    n = max(len(out["encoder"]["scores"]), len(out["decoder"]["scores"]))
    for i in range(n):
        cells = [f"{out[s]['scores'][i]:.4f}" if i < len(out[s]["scores"]) else "   -  "
                 for s in ("encoder", "decoder")]
        print(f"{i + 1:5d}   {cells[0]}   {cells[1]}")
    print(f"keep (up to the peak): encoder {out['encoder']['keep']}, decoder {out['decoder']['keep']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
