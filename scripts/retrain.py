"""Re-trains one model of a recipe with changed options, then decodes and scores it.

A variant of a trained model (another seed, another sparsity target, a longer schedule)
is stages 6-8 again with a few options changed. This script takes the commands the
pipeline recorded for model FROM in ``<exp>/commands.sh`` (its last training, decoding
and scoring commands), points them at ``<exp>/NAME``, appends the extra training options
(later options win in ESPnet's argument parser) and runs them from the recipe directory,
recording them in ``<exp>/commands.sh`` too. Training resumes if interrupted (the recorded
command has ``--resume true``); a finished variant is not trained again. Compare the
variants with the recipe's report afterwards, e.g.
``scripts/report.py --models full gated gated_seed1 ...``.

Usage (from a recipe directory, after ``run.sh`` has run stages 6-8 for FROM):
    python scripts/retrain.py --from_model gated --name gated_seed1 -- --seed 1
    python scripts/retrain.py --from_model gated --name gated_s01 --nj 2 \
        -- --sparsity_end 0.1
"""

import argparse
import logging
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

TRAINERS = ("espnet_ext.bin.s2t_train", "espnet2.bin.s2t_train")


def option(args: List[str], name: str) -> Optional[str]:
    """Value of the last ``--name value`` in ``args``; None if absent."""
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]
    return values[-1] if values else None


def replaced(args: List[str], name: str, value: str) -> List[str]:
    """``args`` with the value of every ``--name`` set to ``value``."""
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a == name:
            out[i + 1] = value
    return out


def is_dir(value: Optional[str], exp: Path, model: str) -> bool:
    return value is not None and Path(value).name == model and Path(value).parent.resolve() == exp


def find_commands(lines: List[str], exp: Path, model: str) -> dict:
    """The last recorded training, decoding and scoring commands of ``<exp>/<model>``."""
    found = {}
    for line in lines:
        args = shlex.split(line)
        if any(t in args for t in TRAINERS) and option(args, "--collect_stats") != "true":
            if is_dir(option(args, "--output_dir"), exp, model):
                found["train"] = args
        elif any(a.endswith("scripts/decode.py") for a in args):
            if is_dir(option(args, "--model_dir"), exp, model):
                found["decode"] = args
        elif any(a.endswith("scripts/score.py") for a in args):
            if is_dir(option(args, "--exp"), exp, model):
                found["score"] = args
    missing = [k for k in ("train", "decode", "score") if k not in found]
    if missing:
        raise SystemExit(f"retrain: no {'/'.join(missing)} command for {exp / model} in "
                         f"{exp / 'commands.sh'} (run.sh stages 6-8 record them)")
    return found


def variant_commands(found: dict, exp: Path, name: str, extra: List[str],
                     nj: Optional[int]) -> List[List[str]]:
    out = str(exp / name)
    train = replaced(found["train"], "--output_dir", out) + extra
    decode = replaced(found["decode"], "--model_dir", out)
    if nj is not None:
        decode = replaced(decode, "--nj", str(nj))
    return [train, decode, replaced(found["score"], "--exp", out)]


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    i = argv.index("--") if "--" in argv else len(argv)  # after "--": training options
    argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", default="exp", help="The recipe's exp dir (holds commands.sh).")
    p.add_argument("--from_model", required=True, help="Model dir under --exp to vary.")
    p.add_argument("--name", required=True, help="New model dir under --exp.")
    p.add_argument("--nj", type=int, default=None,
                   help="Decoding jobs per set (default: as recorded; the pipeline records 1 "
                        "when models decode side by side).")
    p.add_argument("--dry_run", action="store_true", help="Print the commands, run nothing.")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (retrain) %(levelname)s: %(message)s")
    exp = Path(args.exp).resolve()
    if args.name == args.from_model or not args.name or "/" in args.name:
        raise SystemExit(f"retrain: --name must be a new dir name under {exp}, got {args.name!r}")
    record = exp / "commands.sh"
    if not record.is_file():
        raise SystemExit(f"retrain: {record} not found (run run.sh first)")
    found = find_commands(record.read_text().splitlines(), exp, args.from_model)
    commands = variant_commands(found, exp, args.name, extra, args.nj)
    config = option(commands[0], "--config")
    if config and not Path(config).is_file():
        raise SystemExit(f"retrain: {config} not found: run this from the recipe directory "
                         f"(where run.sh ran the commands)")
    if args.dry_run:
        print("\n".join(shlex.join(c) for c in commands))
        return
    if (exp / args.name / "valid.acc.ave.pth").is_file():
        logging.info(f"{exp / args.name} is trained; decoding and scoring only")
        commands = commands[1:]
    for cmd in commands:
        with open(record, "a") as f:
            f.write(shlex.join(cmd) + "\n")
        logging.info(shlex.join(cmd[:4]) + " ...")
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"retrain: failed: {shlex.join(cmd[:4])} ... (its log is above)")
    logging.info(f"{exp / args.name}: scores in scores.json")


if __name__ == "__main__":
    main()
