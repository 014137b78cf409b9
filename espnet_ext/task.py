"""Dynamic pruning in ESPnet's S2T and ASR tasks: the top-level options and the trainer.

The paper's keys are valid verbatim at the top level of a training YAML::

    tau_ini: 1
    tau_end: 0.1
    tau_cooldown_steps: 15000
    sparsity_init: 0.0
    sparsity_end: 0.3

``GatedTask`` (a base of ``espnet_ext.s2t.task.GatedS2TTask`` and
``espnet_ext.asr.task.GatedASRTask``) adds them to the task's parser and hands
them to ``ESPnetS2TGatedModel.gate_schedule`` when the task builds the model,
for training and for loading a trained model alike; it trains with
``GatedTrainer``. ESPnet's own classes are not changed (docs/design.md lists
what ESPnet sees of us).
"""

import argparse
import dataclasses
import inspect
from typing import Optional

from espnet2.train import trainer as trainer_module
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.types import float_or_none, int_or_none

from espnet_ext import checkpoint
from espnet_ext.gating import plan

from espnet_ext.gating.schedule import (
    SPARSITY_CONTROLS,
    SPARSITY_LOSSES,
    TAU_SCHEDULES,
    GateSchedule,
    Multipliers,
)

SCHEDULE_CHECKS = ("error", "warn")

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
    (
        "sparsity_control",
        str,
        "penalty",
        f"{' | '.join(SPARSITY_CONTROLS)}: alpha*(|g-s*| + (g-s*)^2) (ICLR 2025), or "
        "multipliers trained by gradient ascent that reach s* whatever the loss's scale.",
    ),
    ("sparsity_loss_weight", float, 1.0, "alpha: weight of the 'penalty' sparsity loss."),
    ("sparsity_lambda_lr", float, 0.2, "Learning rate of the 'lagrangian' multipliers (ascent)."),
    (
        "gate_lr",
        float_or_none,
        None,
        "Learning rate of the gate predictors, whatever the model's (the scheduler scales it "
        "like the others); overrides gate_lr_scale. With Adam a parameter moves about lr per "
        "step: at fine-tuning rates (1e-5) the gates barely move from their initial open bias.",
    ),
    ("gate_lr_scale", float, 1.0, "Learning rate of the gate predictors as a multiple of lr."),
    (
        "schedule_check",
        str,
        "error",
        "error | warn: a run whose optimizer steps (max_epoch x num_iters_per_epoch / accum_grad) "
        "end before tau_cooldown_steps or sparsity_warmup_steps stops before its first step, "
        "or only warns (runs cut short on purpose).",
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
        choices = SCHEDULE_CHECKS if name == "schedule_check" else None
        group.add_argument(f"--{name}", type=type_, default=default, help=help_, choices=choices)


def schedule_conf(args: argparse.Namespace) -> dict:
    """The schedule options of ``args`` (defaults where a config lacks them)."""
    conf = {
        name: getattr(args, name, default)
        for name, _, default, _ in OPTIONS
        if name in GateSchedule.KEYS
    }
    conf["accum_grad"] = getattr(args, "accum_grad", 1) or 1
    return conf


def fill_context_vocab_size(args: argparse.Namespace, encoder_choices) -> None:
    """Sets ``encoder_conf.context_vocab_size`` to the token list size when a
    gated encoder uses lang/task context and the YAML leaves it unset."""
    from espnet_ext.gating import GatedModule

    encoder_class = encoder_choices.get_class(args.encoder)
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


def move_params(optimizer, params, **options) -> None:
    """Moves ``params`` out of every group of a fresh optimizer into groups of their own,
    each a copy of its old group's options updated with ``options``; a callable option
    is given the old group's value (schedulers built afterwards keep the ratios)."""
    ids = {id(p) for p in params}
    for group in list(optimizer.param_groups):
        mine = [p for p in group["params"] if id(p) in ids]
        if not mine:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in ids]
        new = {k: v for k, v in group.items() if k != "params"}
        new.update({k: v(group[k]) if callable(v) else v for k, v in options.items()})
        optimizer.add_param_group({**new, "params": mine})
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]


def split_gate_params(optimizer, model, args: argparse.Namespace) -> None:
    """Gate predictors at ``gate_lr`` (or ``lr * gate_lr_scale``); the multipliers of a
    "lagrangian" schedule ascending at ``sparsity_lambda_lr``, without weight decay."""
    gate = [p for n, p in model.named_parameters() if "gate_predictor." in n]
    gate_lr = getattr(args, "gate_lr", None)
    scale = getattr(args, "gate_lr_scale", 1.0)
    if gate_lr is not None:
        move_params(optimizer, gate, lr=gate_lr)
    elif scale != 1.0:
        move_params(optimizer, gate, lr=lambda lr: lr * scale)
    schedule = getattr(model, "gate_schedule", None)
    multipliers = getattr(schedule, "multipliers", None)
    if isinstance(multipliers, Multipliers):
        if "maximize" not in optimizer.defaults:
            raise ValueError(f"sparsity_control: lagrangian needs an optimizer with 'maximize' "
                             f"(adam, adamw, sgd), not {type(optimizer).__name__}")
        move_params(optimizer, list(multipliers.parameters()), lr=schedule.sparsity_lambda_lr,
                    weight_decay=0.0, maximize=True)


@dataclasses.dataclass
class GatedTrainerOptions(TrainerOptions):
    """ESPnet's trainer options plus what ``plan.check_run`` needs (the epoch length)."""

    num_iters_per_epoch: Optional[int] = None
    iterator_type: str = "sequence"
    schedule_check: str = "error"


class GatedTrainer(Trainer):
    """ESPnet's ``Trainer`` that checks the run's schedules before the first step
    (``gating.plan``), saves ``checkpoint.pth`` atomically and ranks epochs at the
    final sparsity target (``espnet_ext.checkpoint``)."""

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> GatedTrainerOptions:
        return build_dataclass(GatedTrainerOptions, args)

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        plan.check_run(model, schedulers, train_iter_factory, trainer_options, distributed_option)
        with checkpoint.trainer_globals(trainer_module):
            super().run(model=model, optimizers=optimizers, schedulers=schedulers,
                        train_iter_factory=train_iter_factory,
                        valid_iter_factory=valid_iter_factory,
                        plot_attention_iter_factory=plot_attention_iter_factory,
                        trainer_options=trainer_options, distributed_option=distributed_option)


class GatedTask:
    """The dynamic-pruning part of our tasks (before ESPnet's task in the bases).

    Adds the top-level options (``OPTIONS``), fills ``context_vocab_size``,
    configures the model's ``GateSchedule`` from the options, gives the gate
    predictors (and "lagrangian" multipliers) their own optimizer groups, and
    trains with ``GatedTrainer``.
    """

    trainer = GatedTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        add_arguments(parser)

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        encoder_choices = next(c for c in cls.class_choices_list if c.name == "encoder")
        fill_context_vocab_size(args, encoder_choices)
        model = super().build_model(args)
        schedule = getattr(model, "gate_schedule", None)
        if isinstance(schedule, GateSchedule):
            schedule.configure(**schedule_conf(args))
        lagrangian = getattr(model, "lagrangian", None)  # espnet_l0's FLOPs-target ramp
        if lagrangian is not None and hasattr(lagrangian, "accum_grad"):
            lagrangian.accum_grad = getattr(args, "accum_grad", 1) or 1
        return model

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model):
        optimizers = super().build_optimizers(args, model)
        split_gate_params(optimizers[0], model, args)
        split = getattr(model, "split_param_groups", None)  # e.g. espnet_l0's masks/multipliers
        if callable(split):
            split(optimizers[0])
        return optimizers


def stock_class(task_cls) -> type:
    """ESPnet's own class behind ``task_cls``: itself, or the ESPnet base of ours."""
    return next(c for c in task_cls.__mro__ if not issubclass(c, GatedTask))


def use_in_stock_entry_points(task_module, gated: type) -> None:
    """Makes ``task_module.<ESPnet's class name>`` (``S2TTask``, ``ASRTask``) name
    ``gated``, for every module that imports it afterwards: ESPnet's ``s2t_train``,
    ``asr_train``, ``s2t_inference`` (the YAML-only use, docs/design.md) and code that
    builds models through ESPnet's task. ESPnet's class itself stays as it is. Idempotent."""
    setattr(task_module, stock_class(gated).__name__, gated)
