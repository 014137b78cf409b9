#!/usr/bin/env python3
"""FLOPs target of the static baselines: the dynamic model's measured GFLOPs / the full model's.

Usage:
    python -m espnet_ext.bin.match_flops --reference exp/full --model exp/gated \\
        --data_dir dump/raw/dev --num_utts 20 --out exp/baseline_target.json

Decodes the utterances (beam search, each with its own ``<lang><task>``) with
the gated model and counts the GFLOPs it spent and the GFLOPs the full model
spends on the same decodes (same steps and hypotheses, every unit open; see
``espnet_ext.pruning.match``). Writes ``{"fraction": gated / full,
"gflops": {...}}`` (and the bare fraction to ``--fraction_out``). ``run.sh`` passes it to the L0 model
(``--model_conf target_flops=...``) and to ``espnet_ext.bin.layer_prune
--target_fraction``.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import espnet_ext
from espnet_ext import startup

startup.command(__name__)  # before ESPnet is imported: ~11 s less start-up
espnet_ext.register()

from espnet_ext.pruning.match import matched_gflops  # noqa: E402


def main(cmd=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, type=Path, help="exp/<full model> (config.yaml inside).")
    p.add_argument("--model", required=True, type=Path, help="exp/<dynamic model>.")
    p.add_argument("--model_file", "--model-file",
                   default="valid.acc.ave.pth", help="Checkpoint name in both dirs.")
    p.add_argument("--data_dir", "--data-dir", required=True, type=Path, help="Kaldi dir (wav.scp, text).")
    p.add_argument("--num_utts", "--num-utts", type=int, default=20, help="First N utterances.")
    p.add_argument("--beam_size", "--beam-size", type=int, default=5, help="Beam size.")
    p.add_argument("--out", required=True, type=Path, help="JSON to write.")
    p.add_argument("--fraction_out", "--fraction-out",
                   type=Path, help="Also write the bare fraction to this file.")
    args = p.parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (match_flops) %(levelname)s: %(message)s")
    res = matched_gflops(args.model / "config.yaml", args.model / args.model_file,
                         args.reference / "config.yaml", args.reference / args.model_file,
                         args.data_dir, args.num_utts, args.beam_size)
    fraction = res["fraction"]
    out = {"fraction": fraction, "reference": str(args.reference), "model": str(args.model),
           "data_dir": str(args.data_dir), "gflops": res["gflops"], "utterances": res["utterances"],
           "beam_size": args.beam_size}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    if args.fraction_out:
        args.fraction_out.write_text(f"{fraction:.4f}\n")
    print(f"FLOPs fraction {fraction:.4f} (GFLOPs/utt {out['gflops']['model']:.4f} gated / "
          f"{out['gflops']['reference']:.4f} full on the same decodes, {out['utterances']} utterances)")


if __name__ == "__main__":
    main(sys.argv[1:])
