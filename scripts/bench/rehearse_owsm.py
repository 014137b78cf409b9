#!/usr/bin/env python3
"""GPU rehearsal of the OWSM v3.1 gated fine-tune: training steps and batched decoding.

Before days of GPU time: builds the full and the gated model of
``conf/train_s2t_ebf_{full,gated}.yaml`` (OWSM v3.1 ebf, d=1024, 50k-token list,
random weights, ``--num_blocks`` layers per side: 18 is the real model), each in a
process of its own, and runs ``--steps`` training steps of each through ESPnet's own
``S2TTask.build_model`` / ``build_optimizers`` (AdamW, our gate groups and
multipliers) on ``--batch`` utterances of ``--seconds`` (OWSM pads to 30 s): step
time (min, median) and peak memory (CUDA max allocated, or peak RSS on the CPU).
Then ``scripts/bench/bench_decode.py --owsm_random`` decodes ``--decode_utts`` utterances
batched, gated (``--closed`` of the units closed) and full: time and GFLOPs ratios.
Prints every setting and writes all of it as JSON (``--out``).

On a GPU (the real size, bf16 autocast as OWSM's use_amp):
    python scripts/bench/rehearse_owsm.py --device cuda --num_blocks 18 --batch 8 --amp \\
        --out exp/rehearsal_owsm.json
On the CPU at reduced size (what the tests run, so the script does not rot):
    python scripts/bench/rehearse_owsm.py --device cpu --num_blocks 1 --width 256 --vocab_size 1600 --batch 1 \\
        --seconds 2 --tokens 8 --steps 2 --decode_utts 2 --maxlenratio -3 --out /tmp/rehearsal.json
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"full": ROOT / "conf" / "train_s2t_ebf_full.yaml",
           "gated": ROOT / "conf" / "train_s2t_ebf_gated.yaml"}
FS = 16000


def train_steps(kind: str, a: argparse.Namespace) -> dict:
    """Builds ``kind`` as s2t_train does and times ``a.steps`` optimizer steps (after 1 warm-up)."""
    import torch

    import espnet_ext

    espnet_ext.register()
    from espnet2.tasks.s2t import S2TTask

    from espnet_ext.s2t.owsm import owsm_token_list, parse_config, synthetic_batch

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tokens = owsm_token_list(a.vocab_size)
    args = parse_config(CONFIGS[kind], tokens, a.num_blocks, a.width)
    model = S2TTask.build_model(args).to(a.device).train()
    optimizer = S2TTask.build_optimizers(args, model)[0]
    inputs = synthetic_batch(tokens, a.batch, a.seconds, a.tokens, a.device, FS)
    cuda = a.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, stats = [], {}
    for step in range(1 + a.steps):  # the first step warms up allocators and kernels
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(a.device.split(":")[0], dtype=torch.bfloat16, enabled=a.amp):
            loss, stats, _ = model(*inputs)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "step_s_min": min(times), "step_s_median": statistics.median(times),
        "peak_mib": peak, "peak_kind": "cuda max allocated" if cuda else "peak RSS (process)",
        "loss": float(loss), "sparsity": float(stats["sparsity"]) if "sparsity" in stats else None,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda | cpu")
    p.add_argument("--num_blocks", type=int, default=18, help="Layers per side (OWSM v3.1: 18).")
    p.add_argument("--width", type=int, help="Model dimension (OWSM v3.1: 1024); smaller for the CPU.")
    p.add_argument("--vocab_size", type=int, default=50000, help="Token list size (OWSM v3.1: 50000).")
    p.add_argument("--batch", type=int, default=8, help="Utterances per training step.")
    p.add_argument("--seconds", type=float, default=30.0, help="Utterance length (OWSM pads to 30 s).")
    p.add_argument("--tokens", type=int, default=64, help="Target tokens per utterance.")
    p.add_argument("--steps", type=int, default=5, help="Timed training steps per model.")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (OWSM: use_amp true).")
    p.add_argument("--threads", type=int, default=2, help="torch threads (CPU).")
    p.add_argument("--decode_utts", type=int, default=8)
    p.add_argument("--decode_batch", type=int, default=8)
    p.add_argument("--beam_size", type=int, default=5)
    p.add_argument("--maxlenratio", type=float, default=-20,
                   help="Negative: a fixed number of tokens (random weights never end).")
    p.add_argument("--closed", type=float, default=0.5, help="Fraction of units the gated decode closes.")
    p.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help="JSON report.")
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(train_steps(a.worker, a)))
        return
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items() if k != "worker"}
    settings.update(host=platform.node(), configs={k: str(v.relative_to(ROOT)) for k, v in CONFIGS.items()})
    print(json.dumps(settings, indent=1), flush=True)
    report = {"settings": settings, "train": {}}
    base = [sys.executable, str(Path(__file__).resolve())] + (argv if argv is not None else sys.argv[1:])
    for kind in ("full", "gated"):
        proc = subprocess.run(base + ["--worker", kind], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"rehearse_owsm: error: training {kind} failed: {proc.stderr[-2000:]}")
        report["train"][kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"train {kind}: {report['train'][kind]}", flush=True)
    full, gated = report["train"]["full"], report["train"]["gated"]
    report["train"]["ratios"] = {"step_time_gated/full": gated["step_s_median"] / full["step_s_median"],
                                 "peak_memory_gated/full": gated["peak_mib"] / full["peak_mib"]}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "scripts" / "bench" / "bench_decode.py"), "--owsm_random",
               "--num_blocks", str(a.num_blocks), "--vocab_size", str(a.vocab_size),
               *(["--width", str(a.width)] if a.width else []), "--device", a.device, "--threads", str(a.threads),
               "--n_utts", str(a.decode_utts), "--batch_size", str(a.decode_batch),
               "--beam_size", str(a.beam_size), "--maxlenratio", str(a.maxlenratio),
               "--closed", str(a.closed), "--modes", "gated_batched", "full_batched",
               "--repeats", "2", "--out", f"{tmp}/decode.json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"rehearse_owsm: error: decoding failed: {proc.stderr[-2000:]}")
        report["decode"] = json.loads(Path(f"{tmp}/decode.json").read_text())
    print(json.dumps({"train": report["train"]["ratios"], "decode": report["decode"]["ratios"]}, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
