"""Checkpoints that a kill cannot break, and the choice of the checkpoint to decode.

ESPnet's trainer writes ``checkpoint.pth`` (model, optimizer and scheduler
states) in place at the end of every epoch (espnet #5407): a job killed during
that write, which at OWSM size with AdamW state takes long enough for a
preemption to hit it, leaves a truncated file and no resume point.
``trainer_globals`` makes the trainer's ``torch.save`` write to a temporary file in
the same directory and rename it over the target once it is complete, so the
previous checkpoint stays valid until the new one is whole.

A gated model is decoded at its final sparsity target. The target ramps up over
the first epochs, and the less pruned early epochs often validate best, so
ESPnet's ``valid.acc.ave`` (the n best epochs by accuracy) would average gate
predictors trained at different sparsities. ``TargetReporter`` ranks only the
epochs whose ``sparsity_target`` is the latest epoch's (after the ramp: every
epoch at ``sparsity_end``) and whose validated sparsity has reached it (the
gates lag the ramp), for every ``best_model_criterion``: the
``*.best.pth`` links, the files ``keep_nbest_models`` keeps and the averaged
``*.ave.pth`` all come from those. The averaged model's step counters
(``COUNTERS``) are the latest averaged epoch's, where ESPnet's averaging sums them.
"""

import contextlib
import logging
import os
import types
from pathlib import Path

import torch
from espnet2.main_funcs.average_nbest_models import average_nbest_models
from espnet2.train.reporter import Reporter

# Integer step counters of our models: schedules continue from them, so they must stay exact.
COUNTERS = ("gate_schedule.forwards", "lagrangian.step")
TARGET_KEY = "sparsity_target"
SPARSITY_KEY = "sparsity"  # the measured fraction closed (in "valid": the inference decisions)
TOLERANCE = 0.03  # how far below the target a candidate's measured sparsity may be


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


class TargetReporter(Reporter):
    """ESPnet's ``Reporter`` whose epoch rankings skip epochs below the final sparsity target.

    An epoch is a candidate when its ``sparsity_target`` (in the ranked phase,
    e.g. ``valid``) equals the latest epoch's (while the target still ramps only
    the latest epoch does, after the ramp every epoch at ``sparsity_end``) and
    its measured ``sparsity`` is at most ``TOLERANCE`` below it; if no epoch at
    the target has reached it, the latest one. Models without the stats (stock,
    L0) are ranked as by ESPnet.
    """

    def sort_epochs_and_values(self, key: str, key2: str, mode: str):
        values = super().sort_epochs_and_values(key, key2, mode)
        targets = {e: float(s[key][TARGET_KEY]) for e, s in self.stats.items()
                   if TARGET_KEY in s.get(key, {})}
        if not targets:
            return values
        final = targets[max(targets)]
        at_target = [(e, v) for e, v in values if abs(targets.get(e, -1.0) - final) < 1e-6]
        # the gates lag the target: an epoch right after the ramp may validate (with the
        # inference decisions) well below it, and be the most accurate for that reason
        measured = {e: float(self.stats[e][key][SPARSITY_KEY]) for e, _ in at_target
                    if SPARSITY_KEY in self.stats[e][key]}
        reached = [(e, v) for e, v in at_target if measured.get(e, final) >= final - TOLERANCE]
        if reached:
            return reached
        latest = max(e for e, _ in at_target)  # none reached: the most trained one
        return [(e, v) for e, v in at_target if e == latest]


def _counter(path: Path, key: str) -> int:
    # mmap: reads one scalar, not the whole (GBs at OWSM size) state dict
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)[key])


def average_at_target(output_dir: Path, reporter: Reporter, best_model_criterion, nbest,
                      suffix=None, use_deepspeed: bool = False) -> None:
    """ESPnet's ``average_nbest_models``, then the averaged files' ``COUNTERS`` set to
    the latest averaged epoch's (ESPnet sums integer tensors)."""
    average_nbest_models(output_dir=output_dir, reporter=reporter,
                         best_model_criterion=best_model_criterion, nbest=nbest,
                         suffix=suffix, use_deepspeed=use_deepspeed)
    if use_deepspeed:
        return
    nbests = [nbest] if isinstance(nbest, int) else list(nbest)
    suffix = f"{suffix}." if suffix is not None else ""
    for ph, cr, mode in best_model_criterion:
        if not reporter.has(ph, cr):
            continue
        ranked = reporter.sort_epochs(ph, cr, mode)
        if isinstance(reporter, TargetReporter) and len(ranked) < max(nbests):
            logging.warning(f"{ph}.{cr}: only epochs {sorted(ranked)} have reached the final "
                            f"sparsity target; averaging {len(ranked)}, not {max(nbests)}")
        for n in nbests:
            path = output_dir / f"{ph}.{cr}.ave_{n}best.{suffix}pth"
            if n < 2 or n > len(ranked) or path.is_symlink() or not path.exists():
                continue
            state = torch.load(path, map_location="cpu", weights_only=False)
            keys = [k for k in state if k.endswith(COUNTERS)]
            if not keys:
                continue
            latest = output_dir / f"{max(ranked[:n])}epoch.pth"
            for k in keys:
                state[k] = torch.tensor(_counter(latest, k), dtype=state[k].dtype)
            atomic_save(state, path)
            logging.info(f"{path.name}: epochs {sorted(ranked[:n])}, step counters of "
                         f"epoch {max(ranked[:n])}")


@contextlib.contextmanager
def trainer_globals(trainer_module):
    """For the time of a ``Trainer.run`` (``espnet_ext.task.GatedTrainer``): the names
    ESPnet's ``trainer_module`` (``espnet2.train.trainer``) saves, reports and averages
    with become ours (``run`` makes its ``Reporter()``, ``torch.save``s and calls
    ``average_nbest_models`` with no hook to pass others): atomic saves, epochs ranked
    at the final sparsity target, exact step counters. Restored on exit."""
    ours = {"torch": _Torch(), "Reporter": TargetReporter,
            "average_nbest_models": average_at_target}
    saved = {name: getattr(trainer_module, name) for name in ours}
    for name, value in ours.items():
        setattr(trainer_module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(trainer_module, name, value)
