#!/usr/bin/env python3
"""Drop the top layers of a stock S2T model (convexity criterion or explicit).

Usage:
    python -m espnet_ext.bin.layer_prune --config exp/base/config.yaml \\
        --model_file exp/base/valid.acc.ave.pth \\
        --convexity exp/layerprune/convexity.json [--target_fraction 0.7] \\
        --out_dir exp/layerprune/init

    python -m espnet_ext.bin.layer_prune --config ... --model_file ... \\
        --keep_encoder 3 --keep_decoder 2 --out_dir ...

With ``--convexity`` (``espnet_ext.bin.convexity``'s JSON) each side keeps its
layers up to its convexity peak; ``--target_fraction`` then drops further top
layers (from the side whose top layer is less convex) until the analytic
MACs (``espnet_ext.flops``, one utterance of the model's padded length and
``--flops_tokens`` decoder steps of a ``--flops_beam`` beam search, as the
budget of ``espnet_ext.bin.match_flops`` counts a decode) are at most that
fraction of the full model. Writes ``<out-dir>/{config.yaml,model.pth,layer_prune.json,train_opts}``: a
stock ESPnet model (smaller ``num_blocks``), to fine-tune with
``--init_param <out-dir>/model.pth`` and the ``num_blocks`` overrides in
``train_opts``.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
import yaml

import espnet_ext

espnet_ext.register()

from espnet2.tasks.s2t import S2TTask  # noqa: E402

from espnet_ext import flops  # noqa: E402
from espnet_ext.pruning.convexity import layer_budget  # noqa: E402
from espnet_ext.pruning.layers import drop_layers, layer_macs  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, type=Path, help="config.yaml of a stock S2T model.")
    p.add_argument("--model_file", "--model-file", dest="model_file", required=True, type=Path,
                   help="Its checkpoint.")
    p.add_argument("--convexity", type=Path, help="JSON of espnet_ext.bin.convexity.")
    p.add_argument("--target_fraction", "--target-fraction",
                   type=float, help="FLOPs budget (fraction of the full model).")
    p.add_argument("--keep_encoder", "--keep-encoder",
                   type=int, help="Encoder layers to keep (instead of --convexity).")
    p.add_argument("--keep_decoder", "--keep-decoder",
                   type=int, help="Decoder layers to keep (instead of --convexity).")
    p.add_argument("--flops_tokens", "--flops-tokens",
                   type=int, default=20, help="Decoder positions of the FLOPs count.")
    p.add_argument("--flops_beam", "--flops-beam", type=int, default=5,
                   help="Count the decoder as a beam search of this width spends it (the budget of "
                        "espnet_ext.bin.match_flops is a beam-5 decode); 0: one teacher-forced pass.")
    p.add_argument("--out_dir", "--out-dir", required=True, type=Path, help="Output dir.")
    return p


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (layer_prune) %(levelname)s: %(message)s")
    explicit = args.keep_encoder is not None or args.keep_decoder is not None
    if explicit == (args.convexity is not None):
        raise SystemExit("layer_prune: give either --convexity or --keep_encoder/--keep_decoder")
    model, train_args = S2TTask.build_model_from_file(args.config, args.model_file, "cpu")
    config = yaml.safe_load(args.config.read_text())
    pre = config.get("preprocessor_conf", {})
    hop = config.get("frontend_conf", {}).get("hop_length", 160)
    n_in = int(pre.get("speech_length", 30) * pre.get("fs", 16000)) // hop + 1
    feat_dim = config.get("frontend_conf", {}).get("n_mels", 80)
    macs, fixed = layer_macs(model, n_in, feat_dim, args.flops_tokens, args.flops_beam)
    if explicit:
        keep = {"encoder": args.keep_encoder or len(macs["encoder"]),
                "decoder": args.keep_decoder or len(macs["decoder"])}
        curve = None
    else:
        curve = json.loads(args.convexity.read_text())
        scores = {s: curve[s]["scores"] for s in ("encoder", "decoder")}
        keep = layer_budget(scores, macs, fixed, args.target_fraction)
    full = fixed + sum(sum(v) for v in macs.values())
    kept = fixed + sum(sum(macs[s][: keep[s]]) for s in macs)
    if args.target_fraction is not None and kept > args.target_fraction * full:
        logging.warning(f"the FLOPs budget {args.target_fraction} is out of reach with one layer "
                        f"per side: {kept / full:.3f} of the full model")
    state = torch.load(args.model_file, map_location="cpu")
    conf, state = drop_layers(config, state, keep)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "config.yaml").write_text(yaml.safe_dump(conf, allow_unicode=True, sort_keys=False))
    pruned, _ = S2TTask.build_model_from_file(args.out_dir / "config.yaml", None, "cpu")
    pruned.load_state_dict(state, strict=True)
    torch.save(state, args.out_dir / "model.pth")
    report = {
        "keep": keep,
        "layers": {s: len(v) for s, v in macs.items()},
        "gflops": {"full": flops.to_gflops(full), "pruned": flops.to_gflops(kept)},
        "flops_fraction": kept / full,
        "flops_count": {"input_frames": n_in, "tokens": args.flops_tokens, "beam": args.flops_beam},
        "target_fraction": args.target_fraction,
        "convexity": None if curve is None else {s: curve[s]["scores"] for s in ("encoder", "decoder")},
    }
    (args.out_dir / "layer_prune.json").write_text(json.dumps(report, indent=1))
    (args.out_dir / "train_opts").write_text(  # for s2t_train, with --init_param <out-dir>/model.pth
        f"--encoder_conf num_blocks={keep['encoder']} --decoder_conf num_blocks={keep['decoder']}\n")
    print(f"kept encoder {keep['encoder']}/{len(macs['encoder'])}, decoder "
          f"{keep['decoder']}/{len(macs['decoder'])} layers: {flops.to_gflops(kept):.3f} of "
          f"{flops.to_gflops(full):.3f} GFLOPs ({100 * kept / full:.1f}%) -> {args.out_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
