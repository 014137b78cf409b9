#!/usr/bin/env python3
"""Does every saved FLOP become saved time? OWSM-v3.1-shaped gated modules vs stock.

Builds the encoder and decoder of ``conf/train_s2t_ebf_gated.yaml`` (OWSM v3.1
ebf medium dims) with random weights, the stock ESPnet twins with the same
weights, and measures side by side, interleaved, with a warm-up and repeats
(min and median reported), on fixed threads:

1. encoder, one 30 s utterance (OWSM pads every input to 30 s: 3001 fbank
   frames -> 749 frames): stock vs gated with every gate open (overhead),
   and gated with gate patterns closing a fraction of the units (time ratio
   vs GFLOPs ratio);
2. decoder, ESPnet's BatchBeamSearch (beam 5) for a fixed number of tokens
   (random weights never emit <eos>, so ``maxlenratio=-N``): stock vs gated
   open vs gated with decoder sparsity, all recomputing the source-attention
   K/V at every step as stock ESPnet does (the gating overhead alone), plus
   gated open with the K/V computed once per utterance (decoding's default);
3. one training step (forward + backward, one 10 s utterance, 40 tokens) of
   a reduced-depth model at OWSM width: stock vs gated (straight-through
   gates: every unit is computed and multiplied by its gate).

GFLOPs are the analytic counts of ``espnet_ext.flops`` (checked against
fvcore in tests/test_flops.py).

Usage:
    python scripts/bench/bench_gating.py --out docs/results/bench_gating/bench_gating.json
    python scripts/bench/bench_gating.py --enc_layers 6 --dec_layers 6 --steps 4   # quicker
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import yaml

import espnet_ext

espnet_ext.register()

from espnet2.asr.decoder.transformer_decoder import TransformerDecoder  # noqa: E402
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder  # noqa: E402
from espnet.nets.batch_beam_search import BatchBeamSearch  # noqa: E402

from espnet_ext import flops, timing  # noqa: E402
from espnet_ext.gating import GATE_CONF_KEYS, GateRecord, force_gates, pin_gates  # noqa: E402
from espnet_ext.nets.e_branchformer_token_condition import (  # noqa: E402
    EBranchformerTokenConditionEncoder,
)
from espnet_ext.nets.transformer_decoder_token_condition import (  # noqa: E402
    GatedScorer,
    TransformerDecoderTokenCondition,
)

ROOT = Path(__file__).resolve().parents[2]


def timed(fns: dict, warmup: int, repeats: int) -> dict:
    """Interleaved timing of callables: {name: (min_s, median_s)}."""
    runs = timing.interleaved(fns, warmup=warmup, repeats=repeats)
    return {n: (min(r), statistics.median(r)) for n, r in runs.items()}


def pattern(layers: int, units: int, closed: float, seed: int) -> torch.Tensor:
    """A (1, layers, units) gate pattern with round(closed * L * U) closed units."""
    g = torch.Generator().manual_seed(seed)
    gates = torch.ones(layers * units)
    gates[torch.randperm(layers * units, generator=g)[: round(closed * layers * units)]] = 0
    return gates.view(1, layers, units)


def bench_encoder(conf, args, report):
    enc_conf = {k: v for k, v in conf["encoder_conf"].items() if k not in GATE_CONF_KEYS}
    enc_conf.update(num_blocks=args.enc_layers, use_flash_attn=False)
    torch.manual_seed(0)
    stock = EBranchformerEncoder(80, **enc_conf).eval()
    gated = EBranchformerTokenConditionEncoder(80, gate_context=[], **enc_conf).eval()
    gated.load_state_dict(stock.state_dict(), strict=False)
    feats = torch.randn(1, 3001, 80)
    lens = torch.tensor([3001])
    frames = 749
    sub = flops.subsampling(gated, 3001, 80)
    units = len(gated.unit_names)

    def macs(gates):
        return sub + flops.encoder_spent(gated, frames, gates[0])

    open_gates = torch.ones(1, args.enc_layers, units)
    full = macs(open_gates)
    fns, gflops = {"stock": lambda: stock(feats, lens)}, {"stock": flops.to_gflops(full)}

    def run_open():
        with force_gates(gated, 1.0):
            gated(feats, lens)

    fns["gated_open"], gflops["gated_open"] = run_open, flops.to_gflops(full)
    for closed in args.closed:
        gates = pattern(args.enc_layers, units, closed, seed=1)
        name = f"gated_{int(closed * 100)}pct_closed"

        def run(gates=gates):
            with pin_gates(gated, gates):
                gated(feats, lens)

        fns[name], gflops[name] = run, flops.to_gflops(macs(gates))
    with torch.no_grad():
        times = timed(fns, args.warmup, args.repeats)
    report["encoder"] = rows(times, gflops, "stock")


def bench_decoder(conf, args, report):
    d = conf["encoder_conf"]["output_size"]
    dec_conf = {k: v for k, v in conf["decoder_conf"].items() if k not in GATE_CONF_KEYS}
    dec_conf.update(num_blocks=args.dec_layers, use_flash_attn=False)
    vocab = args.vocab_size
    torch.manual_seed(0)
    stock = TransformerDecoder(vocab, d, **dec_conf).eval()
    gated = TransformerDecoderTokenCondition(vocab, d, gate_context=[], **dec_conf).eval()
    gated.load_state_dict(stock.state_dict(), strict=False)
    gated.cache_src_kv = False  # like stock: the gating overhead alone
    memory = torch.randn(749, d)

    def search(decoder):
        bs = BatchBeamSearch(scorers={"decoder": decoder}, weights={"decoder": 1.0},
                             beam_size=args.beam_size, vocab_size=vocab, sos=vocab - 3,
                             eos=vocab - 2, token_list=None)

        def run():  # a gated decoder scores as in decoding: one GatedScorer per utterance
            with GatedScorer.installed(bs, None):
                return bs(memory, maxlenratio=-float(args.steps))
        return run

    def step_macs(gates):
        total = 0.0
        for t in range(1, args.steps + 2):  # <sos> step + N tokens (+ the final <eos> check)
            n = 1 if t == 1 else args.beam_size
            units = flops.decoder_units(gated, 1, t, 749)
            total += n * float((units * gates[0]).sum()) + n * d * vocab
        return flops.to_gflops(total)

    open_gates = torch.ones(1, args.dec_layers, 3)
    fns = {"stock": search(stock)}
    gflops = {"stock": step_macs(open_gates)}
    run_gated = search(gated)

    def run_open():
        with force_gates(gated, 1.0):
            run_gated()

    fns["gated_open"], gflops["gated_open"] = run_open, gflops["stock"]

    def run_open_cached():
        # source-attention K/V once per utterance (what decoding uses by default)
        gated.cache_src_kv = True
        try:
            run_open()
        finally:
            gated.cache_src_kv = False

    fns["gated_open_src_kv_cache"], gflops["gated_open_src_kv_cache"] = run_open_cached, gflops["stock"]
    for closed in args.closed:
        gates = pattern(args.dec_layers, 3, closed, seed=2)
        name = f"gated_{int(closed * 100)}pct_closed"

        def run(gates=gates):
            with pin_gates(gated, gates):
                run_gated()

        fns[name], gflops[name] = run, step_macs(gates)
    with torch.no_grad():
        times = timed(fns, args.warmup, args.repeats)
    report["decoder"] = rows(times, gflops, "stock")


def bench_train(conf, args, report):
    d = conf["encoder_conf"]["output_size"]
    enc_conf = {k: v for k, v in conf["encoder_conf"].items() if k not in GATE_CONF_KEYS}
    dec_conf = {k: v for k, v in conf["decoder_conf"].items() if k not in GATE_CONF_KEYS}
    enc_conf.update(num_blocks=args.train_layers, use_flash_attn=False)
    dec_conf.update(num_blocks=args.train_layers, use_flash_attn=False)
    vocab = args.vocab_size
    torch.manual_seed(0)
    stock = (EBranchformerEncoder(80, **enc_conf), TransformerDecoder(vocab, d, **dec_conf))
    gated = (EBranchformerTokenConditionEncoder(80, gate_context=[], **enc_conf),
             TransformerDecoderTokenCondition(vocab, d, gate_context=[], **dec_conf))
    for s, g in zip(stock, gated):
        g.load_state_dict(s.state_dict(), strict=False)
        s.train(), g.train()
    n = 100 * args.train_seconds + 1
    feats, lens = torch.randn(1, n, 80), torch.tensor([n])
    ys, ylens = torch.randint(0, vocab, (1, 40)), torch.tensor([40])

    def step(enc, dec, gated_model):
        def run():
            rec = GateRecord()
            kw = {"record": rec} if gated_model else {}
            h, hlens, _ = enc(feats, lens, **kw)
            logits, _ = dec(h, hlens, ys, ylens, **kw)
            loss = logits.logsumexp(-1).mean()
            if gated_model:  # the sparsity term reaches the predictors
                loss = loss + rec.gates["encoder"].mean() + rec.gates["decoder"].mean()
            loss.backward()
        return run

    times = timed({"stock": step(*stock, False), "gated": step(*gated, True)}, 1, args.repeats)
    report["train_step"] = {n: {"time_min_s": t[0], "time_median_s": t[1]} for n, t in times.items()}
    report["train_step"]["gated"]["time_ratio"] = times["gated"][1] / times["stock"][1]


def rows(times, gflops, ref):
    out = {}
    for name, (tmin, tmed) in times.items():
        out[name] = {"gflops": gflops[name], "time_min_s": tmin, "time_median_s": tmed,
                     "gflops_ratio": gflops[name] / gflops[ref],
                     "time_ratio": tmed / times[ref][1]}
    return out


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "conf" / "train_s2t_ebf_gated.yaml",
                   help="Gated training YAML whose encoder/decoder dims are used.")
    p.add_argument("--enc_layers", type=int, default=18, help="Encoder layers (OWSM: 18).")
    p.add_argument("--dec_layers", type=int, default=18, help="Decoder layers (OWSM: 18).")
    p.add_argument("--train_layers", type=int, default=4, help="Layers per side in the training-step benchmark.")
    p.add_argument("--train_seconds", type=int, default=10, help="Audio seconds of the training-step utterance.")
    p.add_argument("--vocab_size", type=int, default=50000, help="Output vocabulary (OWSM: ~50k).")
    p.add_argument("--steps", type=int, default=8, help="Decoded tokens per beam search.")
    p.add_argument("--beam_size", type=int, default=5, help="Beam size.")
    p.add_argument("--closed", type=float, nargs="+", default=[0.3, 0.5], help="Fractions of units closed.")
    p.add_argument("--threads", type=int, default=2, help="torch threads.")
    p.add_argument("--warmup", type=int, default=1, help="Untimed runs per variant.")
    p.add_argument("--repeats", type=int, default=3, help="Timed runs per variant.")
    p.add_argument("--parts", nargs="+", default=["encoder", "decoder", "train"],
                   choices=["encoder", "decoder", "train"], help="What to measure.")
    p.add_argument("--out", type=Path, help="Write the report as JSON.")
    return p


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    torch.set_num_threads(args.threads)
    conf = yaml.safe_load(args.config.read_text())
    report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    report["settings"]["torch"] = torch.__version__
    benches = {"encoder": bench_encoder, "decoder": bench_decoder, "train": bench_train}
    for part in args.parts:
        benches[part](conf, args, report)
        print(json.dumps({part: report.get(part, report.get("train_step"))}, indent=1), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
