#!/usr/bin/env python3
"""Decoding speed: batched vs one-by-one, gated vs full (all gates open).

Decodes the same utterances, in one process, with fixed threads, a warm-up
and repeats (min and median of the wall-clock of decoding all of them), in
four modes: {gated, full} x {one_by_one, batched}. ``full`` is the same model
with every gate forced open (the stock network). Prints every setting (beam,
maxlenratio, batch, padding, threads, search) and, per mode: time, GFLOPs actually
spent (``DecodeMeter``), peak memory, and the ratios gated/full (GFLOPs,
time) and batched/one-by-one (time). Writes the whole report as JSON.

Models:
  --model CONFIG:CHECKPOINT   a trained model (e.g. exp/s2t_gated/config.yaml:
                              exp/s2t_gated/valid.acc.ave.pth) on --data_dir
                              (wav.scp; ``text`` gives each utterance's
                              <lang><task>, else --lang_sym/--task_sym);
  --owsm_random               the OWSM v3.1 ebf shape of
                              conf/train_s2t_ebf_gated.yaml (d=1024, 50k
                              vocabulary) with random weights and
                              --num_blocks layers each side, on random audio;
                              its gate predictor is untrained, so ``gated``
                              pins a random pattern per utterance closing
                              --closed of the units (rows of a batch differ).
Random weights never emit <eos>: use a negative --maxlenratio (fixed number
of tokens) with --owsm_random.

Peak memory: CUDA max allocated, or on the CPU the peak RSS of the process
while it runs the mode once more (model and interpreter included).

Usage:
    python scripts/bench/bench_decode.py --model exp/s2t_gated/config.yaml:exp/s2t_gated/valid.acc.ave.pth \\
        --data_dir dump/raw/test_deu_st_eng --n_utts 8 --batch_size 8 --out docs/results/bench_decode/bench_decode_mini.json
    python scripts/bench/bench_decode.py --owsm_random --num_blocks 4 --maxlenratio -20 \\
        --n_utts 4 --batch_size 4 --out docs/results/bench_decode/bench_decode_owsm.json
"""

import argparse
import hashlib
import json
import os
import platform
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import soundfile as sf
import torch
import yaml

import espnet_ext

espnet_ext.register()

from espnet_ext import timing  # noqa: E402
from espnet_ext.gating import force_gates, pin_gates  # noqa: E402
from espnet_ext.s2t.inference import SEARCHES, Speech2TextGated  # noqa: E402

from espnet_ext.s2t.owsm import build, owsm_token_list, parse_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

MODES = ("gated_one_by_one", "gated_batched", "full_one_by_one", "full_batched")


def owsm_random_model(num_blocks: int, out_dir: Path, vocab_size: int = 50000,
                      width: Optional[int] = None) -> Path:
    """Writes config.yaml + model.pth of a random-weight OWSM-shaped model (once)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / "model.pth").exists():
        torch.manual_seed(0)
        args = parse_config(ROOT / "conf" / "train_s2t_ebf_gated.yaml", owsm_token_list(vocab_size), num_blocks, width)
        args.bpemodel, args.token_type = None, None
        model = build(args)
        conf = {k: v for k, v in vars(args).items() if k != "config"}
        (out_dir / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(conf, default=str))))
        torch.save(model.state_dict(), out_dir / "model.pth.tmp")
        os.replace(out_dir / "model.pth.tmp", out_dir / "model.pth")
    return out_dir


def load_utterances(args) -> List[dict]:
    if args.owsm_random:
        rng = np.random.default_rng(0)
        langs = [("<eng>", "<asr>"), ("<deu>", "<st_eng>"), ("<fra>", "<asr>"), ("<ita>", "<st_eng>")]
        return [
            dict(key=f"rand{i}", speech=(0.1 * rng.standard_normal(int(16000 * (4 + 3 * i)))).astype(np.float32),
                 lang=langs[i % 4][0], task=langs[i % 4][1])
            for i in range(args.n_utts)
        ]
    data = Path(args.data_dir)
    text = {}
    if (data / "text").exists():
        for line in (data / "text").read_text().splitlines():
            key, _, rest = line.partition(" ")
            syms = rest.replace(">", "> ").split()
            text[key] = syms[:2]
    utts = []
    for line in (data / "wav.scp").read_text().splitlines()[: args.n_utts]:
        key, path = line.split(maxsplit=1)
        speech, rate = sf.read(path, dtype="float32")
        if rate != 16000:
            raise ValueError(f"{key}: {rate} Hz audio; the model needs 16 kHz")
        lang, task = text.get(key, (args.lang_sym, args.task_sym))
        utts.append(dict(key=key, speech=speech, lang=lang, task=task))
    return utts


def decode(s2t: Speech2TextGated, utts: List[dict], batch_size: int, patterns) -> Dict:
    """Decodes all utterances; returns per-utterance token ids and GFLOPs (total, per part)."""
    out = {"tokens": [], "gflops": [], "parts": []}
    for start in range(0, len(utts), batch_size):
        chunk = utts[start : start + batch_size]
        with ExitStack() as stack:
            if patterns is not None:  # (#utt, layers, units) per side
                for side, gates in patterns.items():
                    module = getattr(s2t.s2t_model, side)
                    stack.enter_context(pin_gates(module, gates[start : start + len(chunk)]))
            if batch_size == 1:
                u = chunk[0]
                d = s2t.decode_one(u["speech"], lang_sym=u["lang"], task_sym=u["task"])
                results, parts = [d.results], [d.gflops]
            else:
                decoded = s2t.decode_batch(
                    [u["speech"] for u in chunk], [u["lang"] for u in chunk], [u["task"] for u in chunk]
                )
                results, parts = [d.results for d in decoded], [d.gflops for d in decoded]
        out["tokens"] += [r[0][2] if r else [] for r in results]
        out["gflops"] += [p["total"] for p in parts]
        out["parts"] += parts
    return out


def peak_memory_mib(fn) -> Optional[float]:
    """Peak memory while ``fn`` runs: CUDA max allocated, or on the CPU the peak RSS of this
    process (model and interpreter included), from Linux's resettable high-water mark."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        fn()
        return torch.cuda.max_memory_allocated() / 2**20
    # Not a forked child: torch's OpenMP pool is invalid after fork ("Invalid thread pool").
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError as e:
        print(f"WARNING: no peak memory ({e}); needs Linux /proc", file=sys.stderr)
        return None
    fn()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    return None


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="CONFIG:CHECKPOINT of a trained model.")
    parser.add_argument("--data_dir", help="Kaldi dir with wav.scp (and text) for --model.")
    parser.add_argument("--owsm_random", action="store_true", help="Random-weight OWSM-shaped model.")
    parser.add_argument("--num_blocks", type=int, default=4, help="--owsm_random layers per side.")
    parser.add_argument("--closed", type=float, default=0.5, help="--owsm_random: fraction of units closed.")
    parser.add_argument("--vocab_size", type=int, default=50000,
                        help="--owsm_random: token list size (OWSM v3.1: 50000).")
    parser.add_argument("--width", type=int, help="--owsm_random: model dimension (OWSM v3.1: 1024).")
    parser.add_argument("--model_cache", default="/tmp/bench_decode_owsm", help="--owsm_random files.")
    parser.add_argument("--lang_sym", default="<eng>")
    parser.add_argument("--task_sym", default="<asr>")
    parser.add_argument("--n_utts", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--maxlenratio", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--speech_length", type=float,
                        help="Pad/trim every input to this many seconds instead of the model's "
                        "(OWSM: 30 s); makes CPU runs of the OWSM shape affordable.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--search", choices=SEARCHES, default="lean",
                        help="Beam search: lean (espnet_ext's) or espnet (ESPnet's BatchBeamSearch, "
                        "one utterance at a time also in batches).")
    parser.add_argument("--no_src_kv_cache", action="store_true",
                        help="Recompute the source-attention K/V at every step (as stock ESPnet).")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="Modes to run (default all; e.g. only the *_one_by_one ones for a "
                             "full-size model, whose batched run would take as long again).")
    parser.add_argument("--out", type=Path, help="JSON report (e.g. docs/results/bench_decode/bench_decode_owsm.json).")
    args = parser.parse_args(argv)
    if bool(args.model) == args.owsm_random:
        parser.error("give exactly one of --model CONFIG:CHECKPOINT and --owsm_random")
    if args.model and not args.data_dir:
        parser.error("--model needs --data_dir")
    torch.set_num_threads(args.threads)
    if args.owsm_random:
        conf_md5 = hashlib.md5((ROOT / "conf" / "train_s2t_ebf_gated.yaml").read_bytes()).hexdigest()
        d = owsm_random_model(args.num_blocks, Path(args.model_cache)
                              / f"L{args.num_blocks}-V{args.vocab_size}-W{args.width}-{conf_md5[:8]}",
                              args.vocab_size, args.width)
        config, ckpt = d / "config.yaml", d / "model.pth"
    else:
        config, _, ckpt = args.model.partition(":")
    s2t = Speech2TextGated(
        config, ckpt, device=args.device, beam_size=args.beam_size, maxlenratio=args.maxlenratio,
        lang_sym=args.lang_sym, task_sym=args.task_sym, nbest=1, search=args.search,
    )
    model_length = s2t.preprocessor_conf["speech_length"]
    if args.speech_length:
        s2t.preprocessor_conf["speech_length"] = args.speech_length
    model = s2t.s2t_model
    model.decoder.cache_src_kv = not args.no_src_kv_cache
    utts = load_utterances(args)
    patterns = None
    if args.owsm_random:
        g = torch.Generator().manual_seed(1)
        patterns = {}
        for side in ("encoder", "decoder"):
            m = getattr(model, side)
            n = m.num_layers * len(m.unit_names)
            gates = torch.ones(len(utts), n)
            for u in range(len(utts)):
                gates[u, torch.randperm(n, generator=g)[: round(args.closed * n)]] = 0
            patterns[side] = gates.view(len(utts), m.num_layers, len(m.unit_names))

    def run(mode: str):
        batch = args.batch_size if mode.endswith("batched") else 1
        if mode.startswith("full"):
            with force_gates(model, 1.0):
                return decode(s2t, utts, batch, None)
        return decode(s2t, utts, batch, patterns)

    settings = dict(
        model=args.model or f"owsm_random (OWSM v3.1 ebf shape, {args.num_blocks}+{args.num_blocks} layers, "
        f"{args.vocab_size} tokens, d={args.width or 1024}, "
        f"random weights, {args.closed:.0%} of units closed per utterance, random patterns)",
        n_utts=len(utts), beam_size=args.beam_size, maxlenratio=args.maxlenratio, batch_size=args.batch_size,
        padding=f"every utterance padded/trimmed to {s2t.preprocessor_conf['speech_length']} s"
        + (f" (--speech_length; the model's own: {model_length} s)" if args.speech_length
           else " (the model's own, as ESPnet)"),
        raw_seconds=[round(len(u["speech"]) / 16000, 2) for u in utts], threads=args.threads,
        device=args.device, warmup=args.warmup, repeats=args.repeats,
        search=s2t.search if s2t.search == args.search else f"{s2t.search} (lean unsupported)",
        src_kv_cache=not args.no_src_kv_cache, host=platform.node(), torch=torch.__version__,
    )
    print(json.dumps(settings, indent=1), flush=True)
    outputs = {}
    times = timing.interleaved(
        {m: (lambda m=m: outputs.__setitem__(m, run(m))) for m in args.modes},
        warmup=args.warmup, repeats=args.repeats, device=args.device,
        on_pass=lambda i, timed, _: print(f"round {i + 1}/{args.warmup + args.repeats} done",
                                          file=sys.stderr, flush=True))
    pairs = [s for s in ("gated", "full") if {f"{s}_one_by_one", f"{s}_batched"} <= set(outputs)]
    same = {s: outputs[f"{s}_one_by_one"]["tokens"] == outputs[f"{s}_batched"]["tokens"] for s in pairs}
    for side in pairs:
        if not same[side]:
            print(f"WARNING: {side}: batched and one-by-one hypotheses differ", file=sys.stderr)
    report = {"settings": settings, "modes": {}}
    for mode in args.modes:
        report["modes"][mode] = dict(
            **timing.summary(times[mode]),
            gflops=sum(outputs[mode]["gflops"]), peak_mib=peak_memory_mib(lambda m=mode: run(m)),
            # per part (all utterances); the conv subsampling is never gated
            gflops_parts={k: sum(p[k] for p in outputs[mode]["parts"])
                          for k in outputs[mode]["parts"][0] if k != "total"},
        )
    r = report["modes"]
    ratios = {}
    for mode in ("one_by_one", "batched"):
        if {f"gated_{mode}", f"full_{mode}"} <= set(r):
            gated, full = r[f"gated_{mode}"], r[f"full_{mode}"]
            # GFLOPs do not depend on batching: the batched pair's figure wins when both ran
            ratios["gflops_gated/full"] = gated["gflops"] / full["gflops"]
            ratios[f"time_gated/full_{mode}"] = gated["median_s"] / full["median_s"]
    for side in pairs:
        ratios[f"time_batched/one_by_one_{side}"] = (
            r[f"{side}_batched"]["median_s"] / r[f"{side}_one_by_one"]["median_s"])
    if pairs:
        ratios["same_hyps_batched_vs_one_by_one"] = all(same.values())
    report["ratios"] = ratios
    print("GFLOPs: fvcore's convention, one multiply-add = one flop")
    print(f"{'mode':18s} {'min s':>8s} {'median s':>9s} {'GFLOPs':>9s} {'peak MiB':>9s}")
    for mode, v in r.items():
        mem = "-" if v["peak_mib"] is None else f"{v['peak_mib']:.0f}"
        print(f"{mode:18s} {v['min_s']:8.3f} {v['median_s']:9.3f} {v['gflops']:9.2f} {mem:>9s}")
    for k, v in report["ratios"].items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
