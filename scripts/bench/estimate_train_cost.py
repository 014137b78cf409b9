#!/usr/bin/env python3
"""What fine-tuning OWSM v3.1 ebf (gated) costs: memory and FLOPs per utterance, measured
on the CPU at the real layer sizes, extrapolated to 18 + 18 layers.

For each ``--layers L`` a fresh process builds the gated model of
``conf/train_s2t_ebf_gated.yaml`` with ``num_blocks = L`` in encoder and decoder (d=1024,
16 heads, 4096 FFN/cgMLP, 50k-token list, random weights), then runs training steps
(forward + backward, fp32) on ``--batch`` utterances of 30 s (what the S2T preprocessor
feeds: every utterance is padded to 30 s) with ``--tokens`` target tokens, and reports
its peak RSS and step time. Two depths give the per-layer (encoder + decoder layer)
increments; the 18-layer figures are ``f(L1) + (18 - L1) * increment``. FLOPs come from
the same runs' analytic count (``espnet_ext.flops``, checked against fvcore in the tests):
a training step is ~3x a forward.

Prints and writes (``--out``) a JSON with the measurements and the extrapolation,
including optimizer state (AdamW: 2 fp32 moments) and gradient memory.

Usage:
    python scripts/bench/estimate_train_cost.py --layers 1 2 --batch 1 --tokens 64 --threads 2 \\
        --out exp/train_cost.json
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FS = 16000


def worker(layers: int, batch: int, tokens: int, threads: int, seconds: float) -> dict:
    import torch

    import espnet_ext

    espnet_ext.register()
    from espnet_ext.s2t.owsm import owsm_token_list, parse_config, synthetic_batch
    from espnet2.tasks.s2t import S2TTask

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokens_list = owsm_token_list(50000)
    args = parse_config(ROOT / "conf" / "train_s2t_ebf_gated.yaml", tokens_list, layers)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = S2TTask.build_model(args)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = int(seconds * FS)
    inputs = synthetic_batch(tokens_list, batch, seconds, tokens, "cpu", FS)
    times = []
    for _ in range(2):  # the first step warms up allocators
        model.zero_grad(set_to_none=False)
        t0 = time.perf_counter()
        loss, _, _ = model(*inputs)
        t1 = time.perf_counter()
        loss.backward()
        times.append((t1 - t0, time.perf_counter() - t1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from espnet_ext.flops import decoder_units, encoder_units, subsampling

    n_feats = n // 160 + 1
    frames = ((n_feats - 1) // 2 - 1) // 2  # conv2d subsampling (two stride-2 3x3 convs)
    d, vocab = model.encoder.output_size(), len(tokens_list)
    macs = {
        "subsampling": subsampling(model.encoder, n_feats, 80),
        "encoder_layers": float(encoder_units(model.encoder, frames).sum()),
        "decoder_layers": float(decoder_units(model.decoder, tokens + 1, tokens + 1, frames).sum()),
        "ctc_and_output": float(d * vocab * (frames + tokens + 1)),
    }
    return {"layers": layers, "batch": batch, "tokens": tokens, "threads": threads,
            "params": n_params, "rss_before_build_mb": rss0 / 1024,
            "rss_after_build_mb": rss_built / 1024, "peak_rss_mb": peak / 1024,
            "forward_s": times[-1][0], "backward_s": times[-1][1],
            "encoder_frames": frames, "gmac_per_utt": {k: v / 1e9 for k, v in macs.items()}}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, nargs=2, default=[1, 2], help="Two depths to run.")
    p.add_argument("--batch", type=int, default=1, help="Utterances per step.")
    p.add_argument("--tokens", type=int, default=64, help="Target tokens per utterance.")
    p.add_argument("--threads", type=int, default=2, help="torch threads.")
    p.add_argument("--seconds", type=float, default=30.0, help="Padded utterance length.")
    p.add_argument("--target_layers", "--target-layers",
                   type=int, default=18, help="Depth to extrapolate to.")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help="JSON output.")
    a = p.parse_args()
    if a.worker is not None:
        print(json.dumps(worker(a.worker, a.batch, a.tokens, a.threads, a.seconds)))
        return
    runs = []
    for layers in a.layers:
        cmd = [sys.executable, __file__, "--worker", str(layers), "--batch", str(a.batch),
               "--tokens", str(a.tokens), "--threads", str(a.threads), "--seconds", str(a.seconds)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"estimate_train_cost: error: worker {layers} failed: {out.stderr[-2000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"L={layers}: {runs[-1]}", flush=True)
    r1, r2 = runs
    dl = r2["layers"] - r1["layers"]
    k = a.target_layers - r1["layers"]
    inc = lambda key: (r2[key] - r1[key]) / dl  # noqa: E731
    params = r1["params"] + k * inc("params")
    act_mb = lambda r: r["peak_rss_mb"] - r["rss_after_build_mb"] - r["params"] * 4 / 2**20  # noqa: E731
    act = act_mb(r1) + k * (act_mb(r2) - act_mb(r1)) / dl
    est = {
        "params_M": params / 1e6,
        "weights_fp32_gb": params * 4 / 2**30,
        "grads_fp32_gb": params * 4 / 2**30,
        "adamw_states_gb": params * 8 / 2**30,
        "activations_gb_per_step": act / 1024,
        "activations_gb_per_utt": act / 1024 / a.batch,
        "cpu_step_s": r1["forward_s"] + r1["backward_s"]
        + k * (inc("forward_s") + inc("backward_s")),
    }
    est["static_gb"] = est["weights_fp32_gb"] + est["grads_fp32_gb"] + est["adamw_states_gb"]
    g1, g2 = r1["gmac_per_utt"], r2["gmac_per_utt"]
    fwd = sum(g1[key] + k * (g2[key] - g1[key]) / dl for key in g1)
    est["forward_gmac_per_utt"] = fwd
    est["train_tflop_per_utt"] = 3 * 2 * fwd / 1e3  # forward + backward (~2x forward), 2 FLOP/MAC
    result = {"runs": runs, "extrapolated": est,
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}}
    print(json.dumps(est, indent=2))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
