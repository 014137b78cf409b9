"""A training run's schedule in optimizer steps, printed and checked before the first step.

ESPnet's trainer runs ``max_epoch`` epochs of ``num_iters_per_epoch`` batches
(the whole training set when unset) and steps the optimizer after every
``accum_grad``-th batch of an epoch. ``batch_size`` is the global batch, split
over the GPUs, so their number changes neither. The gate schedules
(``GateSchedule``: tau, the sparsity target) and ESPnet's LR schedulers count
optimizer steps, so a run has ``max_epoch * (batches // accum_grad)`` of them:
halving ``batch_size`` and doubling ``accum_grad`` halves the run unless
``num_iters_per_epoch`` doubles too.

``check_run`` (called by ``espnet_ext.task.GatedTrainer.run``): before the first step
it logs the run's optimizer steps, the step (and epoch) at which tau and the
sparsity target reach their ends, and how many epochs can be selected for
averaging (``espnet_ext.checkpoint`` ranks only the epochs validated at the
final target); a run that can never reach an end stops with a one-line error (``--schedule_check
warn``: a warning, for runs cut short on purpose: smoke tests, timing probes).
Without training anything: ``python -m espnet_ext.gating.plan --config <yaml>``.
"""

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from espnet_ext.gating.schedule import GateSchedule


class ScheduleError(ValueError):
    """A run whose schedules cannot reach their ends (one-line message)."""


def _fmt(x: float) -> str:
    return f"{x:g}"


def end_epoch(step: int, steps_per_epoch: int) -> int:
    """The first epoch at whose end ``step`` optimizer steps are done."""
    return max(1, math.ceil(step / steps_per_epoch))


def plan_lines(
    schedule: Optional[GateSchedule],
    max_epoch: int,
    batches_per_epoch: Optional[int],
    accum_grad: int,
    keep_nbest_models: Union[int, Sequence[int]] = 1,
    num_gpus: Optional[int] = None,
    warmup_steps: Optional[int] = None,
    l0_ramp: Optional[Tuple[float, float, int]] = None,
) -> List[str]:
    """The start-up figures of a run, one string per line.

    Args:
        schedule: The model's gate schedule (None: a model without one).
        max_epoch: ESPnet's ``max_epoch``.
        batches_per_epoch: Training batches per epoch (``num_iters_per_epoch``,
            or the batch sampler's length when it is unset); None: unknown.
        accum_grad: ESPnet's ``accum_grad``.
        keep_nbest_models: ESPnet's ``keep_nbest_models`` (the epochs averaged).
        num_gpus: GPUs the global batch is split over (None or 0: not said).
        warmup_steps: The LR scheduler's warm-up, if it has one.
        l0_ramp: espnet_l0's FLOPs target (initial, final, target_warmup_steps).

    Returns:
        list of str: lines starting with "optimizer steps:", "lr warm-up:",
            "tau:", "sparsity target:", "FLOPs target:", "checkpoint selection:"
            (all but the first where they apply), and "warning: ..." lines.

    Raises:
        ScheduleError: An epoch without an optimizer step, or tau / the sparsity
            target reaching its end after the run's last step.
    """
    if batches_per_epoch is None:
        return ["optimizer steps: unknown (the iterator does not say how many batches an "
                "epoch has; set num_iters_per_epoch), the schedules are not checked"]
    steps_per_epoch = batches_per_epoch // accum_grad
    run = (f"{max_epoch} epochs x {batches_per_epoch} batches / accum_grad {accum_grad}")
    if steps_per_epoch == 0:
        raise ScheduleError(f"accum_grad {accum_grad} > the {batches_per_epoch} batches of an "
                            "epoch: ESPnet never steps the optimizer")
    total = max_epoch * steps_per_epoch
    gpus = ("the number of GPUs does not change it" if not num_gpus else
            f"batch_size is split over {num_gpus} GPU{'s' if num_gpus != 1 else ''}, "
            "which does not change it")
    lines = [f"optimizer steps: {total} = {max_epoch} epochs x {steps_per_epoch} "
             f"({batches_per_epoch} batches per epoch / accum_grad {accum_grad}; {gpus})"]
    if batches_per_epoch % accum_grad:
        lines.append(f"warning: {batches_per_epoch} batches per epoch is not a multiple of "
                     f"accum_grad {accum_grad}: ESPnet steps the last "
                     f"{batches_per_epoch % accum_grad} of each epoch with the next epoch's first")
    if warmup_steps:
        lines.append(f"lr warm-up: {warmup_steps} optimizer steps "
                     f"({100 * warmup_steps / total:.0f}% of the run)")
    ramps = []  # (name, key, initial, final, name of the final value, steps)
    if schedule is not None:
        ramps += [("tau", "tau_cooldown_steps", schedule.tau_ini, schedule.tau_end, "tau_end",
                   schedule.tau_cooldown_steps),
                  ("sparsity target", "sparsity_warmup_steps", schedule.sparsity_init,
                   schedule.sparsity_end, "sparsity_end", schedule.ramp_steps)]
    if l0_ramp is not None:
        ramps.append(("FLOPs target", "target_warmup_steps", l0_ramp[0], l0_ramp[1],
                      "target_flops", l0_ramp[2]))
    if not ramps:
        return lines
    need = math.ceil(max(r[-1] for r in ramps) / max_epoch)
    per = f" (= {need} steps x accum_grad {accum_grad})" if accum_grad > 1 else ""
    fix = f"set num_iters_per_epoch >= {need * accum_grad}{per} or raise max_epoch"
    for name, key, _, end, end_key, steps in ramps:
        if steps > total:
            raise ScheduleError(
                f"{key} {steps} > the run's {total} optimizer steps ({run}): {name} never "
                f"reaches {end_key} {_fmt(end)}; {fix}, or lower {key}")
    for name, _, ini, end, _, steps in ramps:
        lines.append(f"{name}: {_fmt(ini)} -> {_fmt(end)} at optimizer step {steps} "
                     f"(end of epoch {end_epoch(steps, steps_per_epoch)} of {max_epoch})")
    if schedule is None:
        return lines
    first = end_epoch(schedule.ramp_steps, steps_per_epoch)
    eligible = max_epoch - first + 1
    nbest = max([keep_nbest_models] if isinstance(keep_nbest_models, int) else keep_nbest_models)
    lines.append(f"checkpoint selection: {eligible} epoch{'s' if eligible != 1 else ''} "
                 f"({first}-{max_epoch}) validated at the final target; keep_nbest_models "
                 f"{nbest} averages {min(nbest, eligible)}")
    if eligible < nbest:
        room = max_epoch - nbest + 1  # the ramp must end by this epoch
        more = ("raise max_epoch" if room < 1 else
                f"set num_iters_per_epoch >= "
                f"{math.ceil(schedule.ramp_steps / room) * accum_grad} or raise max_epoch")
        lines.append(f"warning: only {eligible} epoch{'s' if eligible != 1 else ''} at the final "
                     f"sparsity target for keep_nbest_models {nbest}: {more}")
    return lines


def batches_per_epoch_of(num_iters_per_epoch: Optional[int], iterator_type: str,
                         train_iter_factory) -> Optional[int]:
    """Training batches per epoch as ESPnet's iterator factories make them."""
    if iterator_type == "chunk":  # there num_iters_per_epoch counts samples
        return None
    if num_iters_per_epoch is not None:  # sequence, category and multiple iterators alike
        return num_iters_per_epoch
    sampler = getattr(train_iter_factory, "sampler", None)
    return None if sampler is None else len(sampler)


def _warmup_steps(schedulers) -> Optional[int]:
    for s in schedulers or []:
        steps = getattr(s, "warmup_steps", None)
        if isinstance(steps, (int, float)) and steps > 0:
            return int(steps)
    return None


def prog() -> str:
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "train"


def check_run(model, schedulers, train_iter_factory, trainer_options, distributed_option) -> None:
    """Logs the run's figures and sets the schedule's epoch length; a run that cannot
    reach its ends exits (code 2) with ``<prog>: error: <message>`` (one line)."""
    schedule = getattr(model, "gate_schedule", None)
    if not isinstance(schedule, GateSchedule):
        schedule = None
    lagrangian = getattr(model, "lagrangian", None)
    l0_ramp = None
    if lagrangian is not None and hasattr(lagrangian, "batches_per_epoch"):
        l0_ramp = (lagrangian.target_init, lagrangian.target_end, lagrangian.warmup_steps)
    batches = batches_per_epoch_of(trainer_options.num_iters_per_epoch,
                                   trainer_options.iterator_type, train_iter_factory)
    gpus = None  # (CPU workers: not GPUs)
    if trainer_options.ngpu:
        gpus = getattr(distributed_option, "dist_world_size", None) or trainer_options.ngpu
    try:
        lines = plan_lines(schedule, trainer_options.max_epoch, batches, trainer_options.accum_grad,
                           trainer_options.keep_nbest_models, gpus, _warmup_steps(schedulers),
                           l0_ramp)
    except ScheduleError as e:
        if trainer_options.schedule_check != "warn":
            logging.error(str(e))
            print(f"{prog()}: error: {e} (--schedule_check warn: run anyway)", file=sys.stderr)
            raise SystemExit(2) from None
        lines = [f"warning: {e} (--schedule_check warn: running anyway)"]
    for line in lines:
        (logging.warning if line.startswith("warning:") else logging.info)(f"schedule {line}")
    if batches is not None:
        if schedule is not None:
            schedule.configure(batches_per_epoch=batches, accum_grad=trainer_options.accum_grad)
        if l0_ramp is not None:
            lagrangian.batches_per_epoch = batches
            lagrangian.accum_grad = trainer_options.accum_grad


def main(argv=None) -> None:
    import yaml

    parser = argparse.ArgumentParser(
        prog="plan", description="The start-up figures of a training YAML (as training logs them).")
    parser.add_argument("--config", required=True, type=Path)
    for key, type_ in (("accum_grad", int), ("num_iters_per_epoch", int), ("max_epoch", int),
                       ("keep_nbest_models", int), ("ngpu", int), ("tau_cooldown_steps", int),
                       ("sparsity_warmup_steps", int)):
        parser.add_argument(f"--{key}", type=type_, help="Overrides the YAML's.")
    args = parser.parse_args(argv)
    conf = yaml.safe_load(args.config.read_text())
    conf.update({k: v for k, v in vars(args).items() if v is not None and k != "config"})
    schedule = None
    if conf.get("model") == "espnet_gated":  # (ESPnet's config.yaml has tau_ini etc. for any model)
        schedule = GateSchedule(**{k: conf[k] for k in GateSchedule.KEYS
                                   if k in conf and k not in ("accum_grad", "batches_per_epoch")})
    l0_ramp = None
    if conf.get("model") == "espnet_l0":
        model_conf = conf.get("model_conf") or {}
        l0_ramp = (1.0, model_conf.get("target_flops", 0.7), model_conf.get("target_warmup_steps", 1000))
    warmup = (conf.get("scheduler_conf") or {}).get("warmup_steps")
    try:
        lines = plan_lines(schedule, conf.get("max_epoch", 40), conf.get("num_iters_per_epoch"),
                           conf.get("accum_grad", 1), conf.get("keep_nbest_models", 10),
                           conf.get("ngpu"), warmup, l0_ramp)
    except ScheduleError as e:
        sys.exit(f"plan: error: {e}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
