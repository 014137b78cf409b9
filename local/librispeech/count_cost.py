#!/usr/bin/env python3
"""Parameters and analytic FLOPs of the recipe's models (no GPU, no data needed).

Builds the base and gated models of a training YAML with random weights (BPE 5000 token
list) and counts, with ``espnet_ext.flops``, the MACs of one forward pass for an utterance
of ``--seconds`` (default: the train-clean-100 mean, 12.69 s) with ``--tokens`` BPE tokens:
conv2d subsampling, encoder attention and FFN blocks (the gated units), decoder + output
layer, CTC projection. GFLOPs = 2 x MACs; a training step is taken as 3 x a forward.

Usage (from egs2/librispeech_100/asr1):
    python ../../../local/librispeech/count_cost.py conf/train_asr_transformer.yaml
"""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="Base training YAML; <name>_gated.yaml is read too.")
    parser.add_argument("--seconds", type=float, default=12.69, help="Utterance length.")
    parser.add_argument("--tokens", type=int, default=45, help="Target BPE tokens.")
    parser.add_argument("--vocab", type=int, default=5000, help="Token list size.")
    parser.add_argument("--utts", type=int, default=28539, help="Utterances per epoch.")
    args = parser.parse_args(argv)

    import torch

    import espnet_ext
    from espnet2.tasks.asr import ASRTask
    from espnet_ext import flops
    from espnet_ext.nets.transformer_encoder_token_condition import transformer_unit_costs

    espnet_ext.register()
    tokens = ["<blank>", "<unk>"] + [f"t{i}" for i in range(args.vocab - 3)] + ["<sos/eos>"]
    model = None
    for name in (args.config, args.config.replace(".yaml", "_gated.yaml")):
        a = ASRTask.get_parser().parse_args(
            ["--config", name, "--token_list", ",".join(tokens), "--output_dir", "unused"])
        a.token_list = tokens
        m = ASRTask.build_model(a)
        n = sum(p.numel() for p in m.parameters())
        g = sum(p.numel() for k, p in m.named_parameters() if "gate_predictor." in k)
        print(f"{name}: {n / 1e6:.2f} M parameters ({g} in gate predictors)")
        model = model or m
    enc, dec = model.encoder, model.decoder
    t_in = int(args.seconds * 100)  # 10 ms hop
    feats = model.frontend.output_size()
    with torch.no_grad():
        t = int(enc.embed(torch.zeros(1, t_in, feats), None)[0].size(1))
    sub = flops.subsampling(enc, t_in, feats)
    units = transformer_unit_costs(enc, t)
    d = enc.output_size()
    dec_macs = float(flops.decoder_units(dec, args.tokens, args.tokens, t).sum())
    dec_macs += args.tokens * d * args.vocab
    ctc = t * d * args.vocab
    g = {k: 2 * v / 1e9 for k, v in dict(
        sub=sub, attn=float(units[:, 0].sum()), ffn=float(units[:, 1].sum()),
        dec=dec_macs, ctc=ctc).items()}
    fwd = sum(g.values())
    print(f"{args.seconds} s = {t_in} frames, {t} after subsampling; forward GFLOPs: "
          f"subsampling {g['sub']:.2f}, attention {g['attn']:.2f}, FFN {g['ffn']:.2f}, "
          f"decoder+output {g['dec']:.2f}, CTC {g['ctc']:.2f}; total {fwd:.2f}")
    print(f"training: {3 * fwd * args.utts / 1e6:.2f} PFLOPs per epoch of {args.utts} utterances")
    share = (g["attn"] + g["ffn"]) / (g["sub"] + g["attn"] + g["ffn"])
    print(f"share of encoder FLOPs in gated blocks: {share:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
