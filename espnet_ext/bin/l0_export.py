#!/usr/bin/env python3
"""Export an L0-pruned model (``model: espnet_l0``) as a plain, smaller ESPnet model.

Usage:
    python -m espnet_ext.bin.l0_export --config exp/l0_train/config.yaml \\
        --model_file exp/l0_train/valid.acc.ave.pth --out_dir exp/l0

Removes the FFN units and cgMLP channels whose eval-mode HardConcrete mask is
zero (the same number in every layer; stock ESPnet has one ``linear_units``
and ``cgmlp_linear_units`` per encoder/decoder), folds the kept mask values
into the weights, zeroes pruned attention heads and subsampling channels
(stock ESPnet cannot shrink them), and writes ``<out-dir>/config.yaml``
(``encoder: e_branchformer``, ``decoder: transformer``, ``model: espnet``),
``<out-dir>/valid.acc.ave.pth`` and ``<out-dir>/l0_export.json``. It then
loads the result with stock ESPnet (strict) and checks that encoder and
decoder outputs equal the masked model's on a random input (fails otherwise).
"""

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

import espnet_ext
from espnet_ext import startup

startup.command(__name__)  # before ESPnet is imported: ~11 s less start-up
espnet_ext.register()

from espnet2.tasks.s2t import S2TTask  # noqa: E402

from espnet_ext import flops  # noqa: E402
from espnet_ext.pruning.layers import layer_macs  # noqa: E402
from espnet_ext.pruning.prune import prune_model  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, type=Path, help="config.yaml of the espnet_l0 model.")
    p.add_argument("--model_file", "--model-file", dest="model_file", required=True, type=Path,
                   help="Its checkpoint.")
    p.add_argument("--out_dir", "--out-dir", required=True, type=Path, help="Output dir.")
    p.add_argument("--out_name", "--out-name",
                   default="valid.acc.ave.pth", help="Checkpoint name in --out_dir.")
    p.add_argument("--flops_tokens", "--flops-tokens",
                   type=int, default=20, help="Decoder positions of the FLOPs count.")
    p.add_argument("--atol", type=float, default=1e-4, help="Tolerance of the equivalence check.")
    return p


@torch.no_grad()
def check_equivalent(masked, stock, speech_seconds: float, atol: float) -> float:
    """Max abs difference of encoder and decoder outputs on a random input."""
    g = torch.Generator().manual_seed(0)
    n = int(speech_seconds * 16000)
    speech = 0.1 * torch.randn(2, n, generator=g)
    lengths = torch.tensor([n, n])
    e1, l1 = masked.encode(speech, lengths)
    e2, l2 = stock.encode(speech, lengths)
    ys = torch.randint(0, masked.vocab_size, (2, 6), generator=g)
    yl = torch.tensor([6, 6])
    d1 = masked.decoder(e1, l1, ys, yl)[0]
    d2 = stock.decoder(e2, l2, ys, yl)[0]
    diff = max(float((e1 - e2).abs().max()), float((d1 - d2).abs().max()))
    if diff > atol:
        raise RuntimeError(f"pruned model differs from the masked one by {diff:.3g} (> {atol})")
    return diff


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (l0_export) %(levelname)s: %(message)s")
    masked, _ = S2TTask.build_model_from_file(args.config, args.model_file, "cpu")
    masked.eval()
    config = yaml.safe_load(args.config.read_text())
    conf, state, report = prune_model(masked, config)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "config.yaml").write_text(yaml.safe_dump(conf, allow_unicode=True, sort_keys=False))
    stock, _ = S2TTask.build_model_from_file(args.out_dir / "config.yaml", None, "cpu")
    stock.load_state_dict(state, strict=True)
    stock.eval()
    torch.save(state, args.out_dir / args.out_name)
    pre = config.get("preprocessor_conf", {})
    seconds = float(pre.get("speech_length", 2))
    diff = check_equivalent(masked, stock, seconds, args.atol)
    n_in = int(seconds * pre.get("fs", 16000)) // config.get("frontend_conf", {}).get("hop_length", 160) + 1
    feat_dim = config.get("frontend_conf", {}).get("n_mels", 80)
    total = {}
    for name, model in (("full", masked), ("pruned", stock)):
        macs, fixed = layer_macs(model, n_in, feat_dim, args.flops_tokens)
        total[name] = fixed + sum(sum(v) for v in macs.values())
    params = {"masked": sum(p.numel() for n, p in masked.named_parameters() if ".l0_masks." not in n
                            and not n.startswith("lagrangian.")),
              "pruned": sum(p.numel() for p in stock.parameters())}
    out = {
        **asdict(report),
        "params_m": {k: v / 1e6 for k, v in params.items()},
        "gflops": {k: flops.to_gflops(v) for k, v in total.items()},
        "flops_fraction": total["pruned"] / total["full"],
        "max_abs_diff": diff,
    }
    (args.out_dir / "l0_export.json").write_text(json.dumps(out, indent=1))
    for side in report.kept:
        units = ", ".join(f"{g} {report.kept[side][g]}/{report.total[side][g]}"
                          f"{'' if report.removed[side][g] else ' (zeroed, not removable in stock ESPnet)'}"
                          for g in report.kept[side])
        print(f"{side}: kept per layer: {units}")
    print(f"params {params['masked'] / 1e6:.3f} M -> {params['pruned'] / 1e6:.3f} M; GFLOPs/utt "
          f"{out['gflops']['full']:.3f} -> {out['gflops']['pruned']:.3f} "
          f"({100 * out['flops_fraction']:.1f}%); max |diff| {diff:.2e}; -> {args.out_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
