#!/usr/bin/env python3
"""Whole-process decoding time: ESPnet's s2t_inference vs ours, side by side.

Runs, as separate processes with the same settings (model, data, beam,
maxlenratio, ctc_weight, batch 1, threads), alternating in every pass:

* ``stock``: ``python -m espnet2.bin.s2t_inference`` (ESPnet's BatchBeamSearch);
* ``ours``: ``python -m espnet_ext.bin.s2t_inference`` (lean beam search);
* ``ours_espnet``: ours with ``--search espnet`` (ESPnet's search, our CLI);
* ``ours_batched``: ours, lean, ``--batch_size`` ``--ours_batch_size`` (stock decodes one at
  a time only; every other variant runs batch 1).

Each timing is the wall-clock of the whole command (start-up, model loading,
decoding every utterance, writing outputs); the first ``--warmup`` passes are
discarded (file cache), then min and median over ``--repeats``. The 1-best
token ids of every variant are compared with stock's: a speed-up only counts
at identical hypotheses. Needs a model stock ESPnet can load (e.g. a full
fine-tune; gated models need our CLI).

Usage:
    python scripts/bench/bench_cli.py --config exp/full/config.yaml \\
        --model_file exp/full/valid.acc.ave.pth --data_dir dump/raw/test_deu_st_eng \\
        --lang_sym deu --task_sym st_eng --threads 1 --repeats 3 --out docs/results/decode_speed/cli_bench_full.json
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import torch

from espnet_ext import timing
from espnet_ext.kaldi import read_table

VARIANTS = {
    "stock": ["-m", "espnet2.bin.s2t_inference"],
    "ours": ["-m", "espnet_ext.bin.s2t_inference", "--search", "lean"],
    "ours_espnet": ["-m", "espnet_ext.bin.s2t_inference", "--search", "espnet"],
    "ours_batched": ["-m", "espnet_ext.bin.s2t_inference", "--search", "lean"],
}


def command(variant: str, args, out: Path) -> List[str]:
    sym = lambda s: f"<{s.lstrip('<').rstrip('>')}>"  # noqa: E731
    return [
        sys.executable, *VARIANTS[variant], "--ngpu", "1" if args.device == "cuda" else "0",
        "--s2t_train_config", str(args.config), "--s2t_model_file", str(args.model_file),
        "--data_path_and_name_and_type", f"{args.data_dir / 'wav.scp'},speech,sound",
        "--lang_sym", sym(args.lang_sym), "--task_sym", sym(args.task_sym),
        "--beam_size", str(args.beam_size), "--maxlenratio", str(args.maxlenratio),
        "--ctc_weight", str(args.ctc_weight), "--nbest", "1",
        "--batch_size", str(args.ours_batch_size if variant == "ours_batched" else 1),
        "--output_dir", str(out),
    ]


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="The model's config.yaml.")
    p.add_argument("--model_file", type=Path, required=True, help="The model's .pth.")
    p.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir with wav.scp.")
    p.add_argument("--lang_sym", required=True)
    p.add_argument("--task_sym", required=True)
    p.add_argument("--beam_size", type=int, default=5)
    p.add_argument("--maxlenratio", type=float, default=0.0)
    p.add_argument("--ctc_weight", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process.")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="The first is the reference of the speed-ups and hypothesis checks.")
    p.add_argument("--ours_batch_size", type=int, default=8, help="Batch of the ours_batched variant.")
    p.add_argument("--out", type=Path, help="JSON report.")
    args = p.parse_args(argv)
    n_utts = len(read_table(args.data_dir / "wav.scp"))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    work = Path(tempfile.mkdtemp(prefix="bench_cli_"))
    hyps: Dict[str, Dict[str, str]] = {}

    def run(variant: str):
        def fn():
            out = work / variant
            shutil.rmtree(out, ignore_errors=True)
            proc = subprocess.run(command(variant, args, out), env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{variant} failed:\n{proc.stderr[-3000:]}")
            hyps[variant] = read_table(out / "1best_recog" / "token_int")
        return fn

    def on_pass(i, timed, seconds):
        print(f"pass {i + 1}/{args.warmup + args.repeats}{'' if timed else ' (warm-up)'}: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), file=sys.stderr, flush=True)

    try:
        times = timing.interleaved({v: run(v) for v in args.variants}, warmup=args.warmup,
                                   repeats=args.repeats, device=args.device, on_pass=on_pass)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ref = args.variants[0]
    settings = dict(
        model=str(args.model_file), data_dir=str(args.data_dir), n_utts=n_utts, lang_sym=args.lang_sym,
        task_sym=args.task_sym, beam_size=args.beam_size, maxlenratio=args.maxlenratio,
        ctc_weight=args.ctc_weight, batch_size=1, ours_batched_batch_size=args.ours_batch_size, threads=args.threads, device=args.device,
        warmup=args.warmup, repeats=args.repeats, reference=ref, torch=torch.__version__,
        machine=platform.processor() or platform.machine(),
        commands={v: " ".join(command(v, args, Path("OUT"))[1:]) for v in args.variants},
    )
    report = {"settings": settings, "variants": {}}
    ref_median = timing.summary(times[ref])["median_s"]
    for v in args.variants:
        s = timing.summary(times[v])
        report["variants"][v] = dict(
            **s, speedup_vs_reference=ref_median / s["median_s"],
            same_hyps_as_reference=hyps[v] == hyps[ref],
            differing_utts=sum(hyps[v].get(k) != t for k, t in hyps[ref].items()),
        )
    print(json.dumps(settings, indent=1))
    print(f"whole-process seconds for {n_utts} utts, {args.threads} thread(s), beam {args.beam_size}, "
          f"batch 1 (ours_batched: {args.ours_batch_size})")
    print(f"{'variant':<14}{'min s':>9}{'median s':>10}{'speed-up':>10}  same hyps as {ref}")
    for v, r in report["variants"].items():
        print(f"{v:<14}{r['min_s']:>9.2f}{r['median_s']:>10.2f}{r['speedup_vs_reference']:>10.2f}  "
              f"{r['same_hyps_as_reference']} ({r['differing_utts']} differ)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
