"""Checkpoints that a kill cannot break.

ESPnet's trainer writes ``checkpoint.pth`` (model, optimizer and scheduler
states) in place at the end of every epoch (espnet #5407): a job killed during
that write, which at OWSM size with AdamW state takes long enough for a
preemption to hit it, leaves a truncated file and no resume point.
``install`` makes the trainer's ``torch.save`` write to a temporary file in
the same directory and rename it over the target once it is complete, so the
previous checkpoint stays valid until the new one is whole.
"""

import os
import types
from pathlib import Path

import torch


def atomic_save(obj, f, *args, **kwargs) -> None:
    """``torch.save`` that replaces a file path only once the new file is complete."""
    if not isinstance(f, (str, os.PathLike)):  # a buffer: nothing to protect
        return torch.save(obj, f, *args, **kwargs)
    path = Path(f)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp, *args, **kwargs)
        with open(tmp, "rb") as fd:
            os.fsync(fd.fileno())
        os.replace(tmp, path)  # atomic on POSIX
    finally:
        if tmp.exists():
            tmp.unlink()


class _Torch(types.ModuleType):
    """``torch`` as seen by the trainer module: the same but for ``save``."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    save = staticmethod(atomic_save)


def install(trainer_module) -> None:
    """Makes ``trainer_module`` (``espnet2.train.trainer``) save atomically. Idempotent."""
    if not isinstance(trainer_module.torch, _Torch):
        trainer_module.torch = _Torch()
