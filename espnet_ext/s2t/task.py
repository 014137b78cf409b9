"""Top-level training options of dynamic pruning for ESPnet's S2T and ASR tasks.

The paper's keys are valid verbatim at the top level of a training YAML::

    tau_ini: 1
    tau_end: 0.1
    tau_cooldown_steps: 15000
    sparsity_init: 0.0
    sparsity_end: 0.3

``install(S2TTask)`` / ``install(ASRTask)`` (run by ``espnet_ext.register``) adds them to the task's
parser and hands them to ``ESPnetS2TGatedModel.gate_schedule`` when the task
builds the model, for training and for loading a trained model alike.
"""

import argparse
import inspect

from espnet2.utils.types import int_or_none

from espnet_ext.gating.schedule import SPARSITY_LOSSES, TAU_SCHEDULES, GateSchedule

OPTIONS = [
    ("tau_ini", float, 1.0, "Initial Gumbel-softmax temperature."),
    ("tau_end", float, 0.1, "Final Gumbel-softmax temperature."),
    ("tau_cooldown_steps", int, 15000, "Optimizer steps from tau_ini to tau_end."),
    ("tau_schedule", str, "linear", f"Interpolation of tau: {' | '.join(TAU_SCHEDULES)}."),
    ("sparsity_init", float, 0.0, "Initial target fraction of closed gated units."),
    ("sparsity_end", float, 0.3, "Final target fraction of closed gated units."),
    (
        "sparsity_warmup_steps",
        int_or_none,
        None,
        "Steps of the linear sparsity-target ramp (default: tau_cooldown_steps).",
    ),
    ("sparsity_loss_weight", float, 1.0, "alpha: weight of the sparsity loss."),
    (
        "gate_lr_scale",
        float,
        1.0,
        "Learning-rate multiplier of the gate predictors. With Adam a parameter moves about "
        "lr per step, so at fine-tuning rates (1e-5) the gate logits barely move from their "
        "initial open bias unless this is large (e.g. 100).",
    ),
    (
        "sparsity_loss_type",
        str,
        "abs_squared",
        f"{' | '.join(SPARSITY_LOSSES)}: alpha*(|g-s*| + (g-s*)^2) or alpha*(g-s*)^2.",
    ),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the dynamic-pruning options (idempotent)."""
    if any(a.dest == "tau_ini" for a in parser._actions):
        return
    group = parser.add_argument_group("Context-aware dynamic pruning (espnet_ext)")
    for name, type_, default, help_ in OPTIONS:
        group.add_argument(f"--{name}", type=type_, default=default, help=help_)


def schedule_conf(args: argparse.Namespace) -> dict:
    """The schedule options of ``args`` (defaults where a config lacks them)."""
    conf = {
        name: getattr(args, name, default)
        for name, _, default, _ in OPTIONS
        if name in GateSchedule.KEYS
    }
    conf["accum_grad"] = getattr(args, "accum_grad", 1) or 1
    return conf


def task_module_of(task_cls):
    import sys

    return sys.modules[task_cls.__module__]


def fill_context_vocab_size(args: argparse.Namespace, task_module) -> None:
    """Sets ``encoder_conf.context_vocab_size`` to the token list size when a
    gated encoder uses lang/task context and the YAML leaves it unset."""
    from espnet_ext.gating import GatedModule

    encoder_class = task_module.encoder_choices.get_class(args.encoder)
    conf = args.encoder_conf
    if not issubclass(encoder_class, GatedModule) or conf.get("context_vocab_size"):
        return
    default = inspect.signature(encoder_class).parameters.get("gate_context")
    default = default.default if default is not None else ["lang", "task"]
    if not {"lang", "task"} & set(conf.get("gate_context", default)):
        return
    token_list = args.token_list
    if isinstance(token_list, str):
        with open(token_list, encoding="utf-8") as f:
            token_list = [line.rstrip() for line in f]
    if token_list is None:
        raise ValueError("encoder_conf.context_vocab_size is unset and there is no --token_list")
    conf["context_vocab_size"] = len(token_list)


def scale_gate_lr(optimizer, model, scale: float) -> None:
    """Moves the gate-predictor parameters of every group of a fresh optimizer
    into groups of their own with ``lr * scale`` (schedulers keep the ratio)."""
    gate = {id(p) for n, p in model.named_parameters() if "gate_predictor." in n}
    for group in list(optimizer.param_groups):
        mine = [p for p in group["params"] if id(p) in gate]
        if not mine:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in gate]
        optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"},
                                   "params": mine, "lr": group["lr"] * scale})


def install(task_cls) -> None:
    """Extends ``task_cls`` (ESPnet's ``S2TTask``) in place, once."""
    if getattr(task_cls, "_espnet_ext_installed", False):
        return
    add_task_arguments = task_cls.add_task_arguments.__func__
    build_model = task_cls.build_model.__func__

    def _add_task_arguments(cls, parser):
        add_task_arguments(cls, parser)
        add_arguments(parser)

    def _build_model(cls, args):
        fill_context_vocab_size(args, task_module_of(task_cls))
        model = build_model(cls, args)
        schedule = getattr(model, "gate_schedule", None)
        if isinstance(schedule, GateSchedule):
            schedule.configure(**schedule_conf(args))
        return model

    build_optimizers = task_cls.build_optimizers.__func__

    def _build_optimizers(cls, args, model):
        optimizers = build_optimizers(cls, args, model)
        scale = getattr(args, "gate_lr_scale", 1.0)
        if scale != 1.0:
            scale_gate_lr(optimizers[0], model, scale)
        split = getattr(model, "split_param_groups", None)  # e.g. espnet_l0's masks/multipliers
        if callable(split):
            split(optimizers[0])
        return optimizers

    task_cls.add_task_arguments = classmethod(_add_task_arguments)
    task_cls.build_model = classmethod(_build_model)
    task_cls.build_optimizers = classmethod(_build_optimizers)
    task_cls._espnet_ext_installed = True
