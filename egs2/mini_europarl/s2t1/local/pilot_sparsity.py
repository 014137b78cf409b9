#!/usr/bin/env python3
"""Pilot of the OWSM config's sparsity control on the mini base model.

Trains the demo's gated model (the mini base + gate predictors) with the
optimizer, scheduler and gate settings of ``conf/train_s2t_ebf_gated.yaml``
taken verbatim (AdamW lr 1e-5, warmuplr, the summed S2T loss, its gate and
schedule options), only the step counts (lr warmup, tau and sparsity ramps,
total steps) multiplied by ``--scale``, twice:

- ``default``: the config as it is (``sparsity_control: lagrangian``, ``gate_lr``);
- ``penalty``: the same with the earlier settings (the paper's fixed-alpha
  penalty, alpha 1, gate predictors at the model's learning rate).

It prints the logged sparsity against its target every ``--log_interval``
steps and, per run, the largest distance to the target after the ramp, and
writes them to ``<out>/pilot.json``. Needs the demo's data, statistics and
base model (``./run.sh --preset demo --stop_stage 5``). Each run resumes.

Usage (in egs2/mini_europarl/s2t1):
    ./run.sh --preset demo --stop_stage 5      # or a whole `make demo`
    python local/pilot_sparsity.py --exp exp --dump dump/raw --out exp/pilot
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[4]
OWSM = ROOT / "conf" / "train_s2t_ebf_gated.yaml"
# What the pilot takes from the OWSM config: everything that decides how the gates train.
TOP_KEYS = ("optim", "optim_conf", "scheduler", "tau_ini", "tau_end", "tau_schedule",
            "sparsity_init", "sparsity_end", "sparsity_loss_weight", "sparsity_control",
            "sparsity_lambda_lr", "gate_lr", "gate_lr_scale", "grad_clip", "accum_grad")
MODEL_KEYS = ("length_normalized_loss", "prune_scope", "sparsity_weighting")
SIDE_KEYS = ("gate_context", "context_dim", "gate_pooling")
STEP_KEYS = ("tau_cooldown_steps", "sparsity_warmup_steps")
# The settings before the Lagrangian became the default.
PENALTY = {"sparsity_control": "penalty", "gate_lr": None, "gate_lr_scale": 1.0}


def pilot_config(arch: dict, owsm: dict, scale: float, iters: int, **overrides) -> dict:
    """``arch`` (the demo's gated config) with ``owsm``'s gate-training settings, steps scaled."""
    conf = dict(arch)
    for key in TOP_KEYS:  # a key the OWSM config leaves out takes its default there
        if key in owsm:
            conf[key] = owsm[key]
        else:
            conf.pop(key, None)
    for key in STEP_KEYS:
        conf[key] = max(1, round(owsm[key] * scale))
    conf["scheduler_conf"] = {"warmup_steps": max(1, round(owsm["scheduler_conf"]["warmup_steps"] * scale))}
    conf["model_conf"] = {**arch["model_conf"], **{k: owsm["model_conf"][k] for k in MODEL_KEYS}}
    for side in ("encoder_conf", "decoder_conf"):
        conf[side] = {**arch[side], **{k: owsm[side][k] for k in SIDE_KEYS}}
    total = owsm["max_epoch"] * owsm["num_iters_per_epoch"] * scale
    conf.update(num_iters_per_epoch=iters, max_epoch=max(1, round(total / iters)))
    conf.update(overrides)
    return conf


def data_opts(mode: str, data: Path, shapes: Path) -> list:
    opts = []
    for name, kind in (("wav.scp", "speech,sound"), ("text.prev", "text_prev,text"),
                       ("text.ctc", "text_ctc,text"), ("text", "text,text")):
        opts += [f"--{mode}_data_path_and_name_and_type", f"{data}/{name},{kind}"]
    for name in ("speech_shape", "text_shape.bpe", "text_prev_shape.bpe", "text_ctc_shape.bpe"):
        opts += [f"--{mode}_shape_file", f"{shapes}/{name}"]
    return opts


def curve(log: str, iters: int) -> list:
    """[(step, sparsity, target)] from the trainer's 'Nepoch:train:a-bbatch' lines."""
    out = []
    for m in re.finditer(r"(\d+)epoch:train:\d+-(\d+)batch: (.*)", log):
        stats = dict(re.findall(r"(\w+)=([-0-9.e+]+)", m.group(3)))
        step = (int(m.group(1)) - 1) * iters + int(m.group(2))
        out.append((step, float(stats["sparsity"]), float(stats["sparsity_target"])))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True, help="The demo's exp dir (base/, s2t_stats_base/).")
    parser.add_argument("--dump", type=Path, required=True, help="The demo's dump/raw.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("conf/demo/train_gated.yaml"),
                        help="Architecture and data settings (the mini gated model).")
    parser.add_argument("--scale", type=float, default=0.01,
                        help="Step counts of the OWSM config times this (0.01: 300 of 30k steps).")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=8)
    parser.add_argument("--iters_per_epoch", "--iters-per-epoch", type=int, default=50)
    parser.add_argument("--log_interval", "--log-interval", type=int, default=10)
    parser.add_argument("--runs", nargs="+", default=["default", "penalty"],
                        choices=["default", "penalty"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="Override a top-level option of the OWSM config in every run "
                             "(e.g. sparsity_lambda_lr=0.2); repeatable.")
    args = parser.parse_args()

    arch = yaml.safe_load(args.config.read_text())
    owsm = yaml.safe_load(OWSM.read_text())
    for item in args.set:
        key, _, value = item.partition("=")
        owsm[key] = yaml.safe_load(value)
    base = args.exp / "base"
    stats = args.exp / "s2t_stats_base" / "train"
    args.out.mkdir(parents=True, exist_ok=True)
    procs = {}
    for run in args.runs:
        conf = pilot_config(arch, owsm, args.scale, args.iters_per_epoch, batch_size=args.batch_size,
                            **(PENALTY if run == "penalty" else {}))
        out = args.out / run
        out.mkdir(exist_ok=True)
        (out / "pilot.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
        cmd = [sys.executable, "-m", "espnet_ext.bin.s2t_train", "--config", str(out / "pilot.yaml"),
               "--use_preprocessor", "true", "--token_type", "bpe",
               "--bpemodel", str(base / "bpe.model"), "--token_list", str(base / "tokens.txt"),
               "--ngpu", "0", "--use_tensorboard", "false", "--use_matplotlib", "false",
               "--normalize", "global_mvn", "--normalize_conf", f"stats_file={base / 'feats_stats.npz'}",
               "--init_param", str(base / "model.pth"), "--log_interval", str(args.log_interval),
               "--output_dir", str(out), "--resume", "true",
               *data_opts("train", args.dump / "train", stats / "train"),
               *data_opts("valid", args.dump / "dev", stats / "valid")]
        print(f"{run}: python -m espnet_ext.bin.s2t_train ... (log: {out / 'train.log'})", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # the runs side by side
        procs[run] = subprocess.Popen(cmd, stdout=open(out / "train.log", "a"),
                                      stderr=subprocess.STDOUT, env=env)
    report = {"owsm_config": str(OWSM.relative_to(ROOT)), "overrides": args.set, "scale": args.scale,
              "batch_size": args.batch_size, "runs": {}}
    for run, proc in procs.items():
        if proc.wait() != 0:
            sys.exit(f"pilot_sparsity: {run} failed, see {args.out / run / 'train.log'}")
        conf = yaml.safe_load((args.out / run / "pilot.yaml").read_text())
        points = curve((args.out / run / "train.log").read_text(), args.iters_per_epoch)
        ramp = conf["sparsity_warmup_steps"]
        after = [abs(g - t) for step, g, t in points if step > ramp]
        report["runs"][run] = {
            "settings": {k: conf.get(k) for k in ("sparsity_control", "sparsity_loss_weight",
                                                  "sparsity_lambda_lr", "gate_lr", "gate_lr_scale")},
            "ramp_steps": ramp, "steps": conf["max_epoch"] * conf["num_iters_per_epoch"],
            "curve": points, "max_gap_after_ramp": max(after) if after else None,
        }
    (args.out / "pilot.json").write_text(json.dumps(report, indent=1))
    runs = report["runs"]
    print("step " + " ".join(f"{r:>18}" for r in runs) + "   (sparsity / target, mean of the interval)")
    for i, (step, _, _) in enumerate(next(iter(runs.values()))["curve"]):
        row = [f"{v['curve'][i][1]:.3f} / {v['curve'][i][2]:.3f}" if i < len(v["curve"]) else "-"
               for v in runs.values()]
        print(f"{step:4d} " + " ".join(f"{c:>18}" for c in row))
    for run, v in runs.items():
        gap = v["max_gap_after_ramp"]
        print(f"{run}: {v['settings']}: largest |sparsity - target| after the ramp "
              f"(step > {v['ramp_steps']}): {'-' if gap is None else f'{gap:.3f}'}")


if __name__ == "__main__":
    main()
