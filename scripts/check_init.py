#!/usr/bin/env python3
"""Checks that a pre-trained state dict initialises a (gated) model completely.

ESPnet loads ``--init_param`` with ``strict=False``: a renamed or missing parameter
would silently stay random. This builds the model exactly as ``s2t_train`` (``--task asr``:
``asr_train``, ESPnet's ASRTask with the gated ASR model) would
(same arguments), loads the state dict and fails unless the only missing keys belong
to the new gate modules (``gate_predictor.*``, ``gate_schedule.*``) and nothing is
unexpected.

Usage (the arguments after ``--`` are those of s2t_train):
    python scripts/check_init.py --init exp/base/valid.acc.ave.pth -- \\
        --config conf/demo/train_gated.yaml --token_list data/token_list/bpe_unigram300/tokens.txt ...
    python scripts/check_init.py --task asr --init exp/base/valid.acc.ave.pth -- \\
        --config conf/train_asr_transformer_gated.yaml --token_list data/token_list/bpe_unigram5000/tokens.txt ...
"""

import argparse
import logging
import sys

import torch

import espnet_ext
from espnet_ext import quiet, startup

startup.command(__name__)  # before ESPnet is imported: ~11 s less start-up
quiet.install()  # no flash-attention line, no NLTK download (espnet_ext/quiet.py)
espnet_ext.register()

from espnet2.tasks.asr import ASRTask  # noqa: E402
from espnet2.tasks.s2t import S2TTask  # noqa: E402

PROG = "check_init"
NEW_MODULES = ("gate_predictor", "gate_schedule")
TASKS = {"s2t": S2TTask, "asr": ASRTask}  # ESPnet's, with our models registered


def is_new(key: str) -> bool:
    """Whether a parameter/buffer name belongs to a gate module."""
    return any(part in NEW_MODULES for part in key.split("."))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--init", required=True, help="State dict (.pth) to load.")
    parser.add_argument("--task", choices=TASKS, default="s2t",
                        help="The training task: s2t (s2t_train) or asr (asr_train).")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="-- followed by the s2t_train (asr_train) arguments.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    task = TASKS[args.task]
    targs = task.get_parser().parse_args(train_args)
    model = task.build_model(targs)
    state = torch.load(args.init, map_location="cpu")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not is_new(k)]
    new = [k for k in result.missing_keys if is_new(k)]
    if missing or result.unexpected_keys:
        print(f"{PROG}: error: {args.init} does not initialise {targs.config} fully: "
              f"missing {missing[:10]} ({len(missing)}), "
              f"unexpected {result.unexpected_keys[:10]} ({len(result.unexpected_keys)})",
              file=sys.stderr)
        sys.exit(1)
    n_new = sum(p.numel() for n, p in model.named_parameters() if is_new(n))
    logging.info(f"{args.init} -> {type(model).__name__}: {len(state)} tensors loaded; "
                 f"new (gate) tensors: {len(new)} ({n_new} parameters), "
                 f"e.g. {', '.join(sorted(new)[:3])}")


if __name__ == "__main__":
    main()
