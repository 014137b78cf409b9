#!/usr/bin/env python3
"""Max abs difference between the gated modules (all gates open) and stock ESPnet.

Builds the encoder and decoder of a gated training YAML (default: OWSM v3.1
ebf dims) and their stock twins, loads the stock weights into the gated
modules (reporting the missing keys: gate predictors only), and compares in
fp32/eval: encoder forward, teacher-forced decoder forward, and decoder
``batch_score`` over several incremental steps, under
``espnet_ext.gating.force_gates(model, 1.0)``.

Usage:
    python scripts/bench/check_equivalence.py                      # OWSM dims, 2+2 layers, 10 s
    python scripts/bench/check_equivalence.py --layers 18 --seconds 30
"""

import argparse
import sys
from pathlib import Path

import torch
import yaml

import espnet_ext

espnet_ext.register()

from espnet2.asr.decoder.transformer_decoder import TransformerDecoder  # noqa: E402
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder  # noqa: E402

from espnet_ext.gating import GATE_CONF_KEYS, force_gates  # noqa: E402
from espnet_ext.nets.e_branchformer_token_condition import EBranchformerTokenConditionEncoder  # noqa: E402
from espnet_ext.nets.transformer_decoder_token_condition import (  # noqa: E402
    TransformerDecoderTokenCondition,
)

ROOT = Path(__file__).resolve().parents[2]


def main(cmd=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "conf" / "train_s2t_ebf_gated.yaml",
                   help="Gated training YAML.")
    p.add_argument("--layers", type=int, default=2, help="Layers per side (OWSM: 18).")
    p.add_argument("--seconds", type=float, default=10.0, help="Input length (OWSM pads to 30).")
    p.add_argument("--vocab_size", type=int, default=50000, help="Vocabulary size.")
    p.add_argument("--batch", type=int, default=2, help="Batch size (2nd utterance 30%% shorter).")
    args = p.parse_args(cmd)
    torch.set_num_threads(2)
    conf = yaml.safe_load(args.config.read_text())
    strip = lambda c: {k: v for k, v in c.items() if k not in GATE_CONF_KEYS}  # noqa: E731
    enc_conf = dict(strip(conf["encoder_conf"]), num_blocks=args.layers, use_flash_attn=False)
    dec_conf = dict(strip(conf["decoder_conf"]), num_blocks=args.layers, use_flash_attn=False)
    d, v = enc_conf["output_size"], args.vocab_size

    torch.manual_seed(0)
    stock_enc, stock_dec = EBranchformerEncoder(80, **enc_conf).eval(), TransformerDecoder(v, d, **dec_conf).eval()
    enc = EBranchformerTokenConditionEncoder(80, gate_context=["lang", "task"], context_vocab_size=v,
                                             **enc_conf).eval()
    dec = TransformerDecoderTokenCondition(v, d, gate_context=["lang", "task"], **dec_conf).eval()
    for name, gated, stock in (("encoder", enc, stock_enc), ("decoder", dec, stock_dec)):
        missing, unexpected = gated.load_state_dict(stock.state_dict(), strict=False)
        others = [k for k in missing if not k.startswith("gate_predictor.")]
        print(f"{name}: {len(missing)} missing keys, all gate_predictor.*: {not others}; "
              f"unexpected: {unexpected}")

    n = int(args.seconds * 100) + 1
    feats = torch.randn(args.batch, n, 80)
    lens = torch.tensor([n] + [int(n * 0.7)] * (args.batch - 1))
    ys = torch.randint(0, v, (args.batch, 12))
    ylens = torch.tensor([12] + [9] * (args.batch - 1))
    with torch.no_grad(), force_gates(enc, 1.0), force_gates(dec, 1.0):
        ref, ref_lens, _ = stock_enc(feats, lens)
        out, _, _ = enc(feats, lens)
        diff = {"encoder forward": (ref - out).abs().max().item()}
        a, _ = stock_dec(ref, ref_lens, ys, ylens)
        b, _ = dec(ref, ref_lens, ys, ylens)
        diff["decoder forward"] = (a - b).abs().max().item()
        memory = ref[:1].expand(3, -1, -1)
        prefix = torch.randint(0, v, (3, 1))
        s_states, g_states, worst = [None] * 3, [None] * 3, 0.0
        for _ in range(5):
            la, s_states = stock_dec.batch_score(prefix, s_states, memory)
            lb, g_states = dec.batch_score(prefix, g_states, memory)
            worst = max(worst, (la - lb).abs().max().item())
            prefix = torch.cat([prefix, la.argmax(-1, keepdim=True)], 1)
        diff["decoder batch_score (5 steps)"] = worst
    print(f"{args.layers}+{args.layers} layers, d={d}, {args.seconds:g} s input, batch {args.batch}, fp32, eval")
    for k, val in diff.items():
        print(f"max abs diff, {k}: {val:.3e}")
    return diff


if __name__ == "__main__":
    main(sys.argv[1:])
