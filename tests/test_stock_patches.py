"""What ESPnet sees of us besides the registries (docs/design.md, "What ESPnet sees of us").

Each test fails when ESPnet (202511 here) changes what one of them relies on.
"""

import dataclasses
import inspect

import typeguard

import espnet_ext


def test_stock_entry_points_take_the_task_by_name_from_the_task_module():
    """``use_in_stock_entry_points``: ESPnet's s2t_train / asr_train / s2t_inference
    import ``S2TTask`` / ``ASRTask`` from the task module, then call it by that name."""
    from espnet2.bin import asr_train, s2t_inference, s2t_train

    from espnet_ext.asr.task import GatedASRTask
    from espnet_ext.s2t.task import GatedS2TTask

    espnet_ext.register()
    for module, name, gated in ((s2t_train, "S2TTask", GatedS2TTask),
                                (asr_train, "ASRTask", GatedASRTask),
                                (s2t_inference, "S2TTask", GatedS2TTask)):
        task_module = name.replace("Task", "").lower()
        assert f"from espnet2.tasks.{task_module} import {name}\n" in inspect.getsource(module)
        assert getattr(module, name) is gated, module.__name__
    assert "S2TTask" in s2t_train.main.__code__.co_names
    assert "ASRTask" in asr_train.main.__code__.co_names
    assert "S2TTask" in inspect.getsource(s2t_inference.Speech2Text.__init__)


def test_the_task_runs_its_trainer_attribute_and_builds_through_cls():
    """``GatedTask`` overrides classmethods and ``trainer``; ESPnet's task must call them on cls."""
    from espnet2.tasks.abs_task import AbsTask

    source = inspect.getsource(AbsTask.main_worker)
    for call in ("cls.build_model(args=args)", "cls.build_optimizers(args, model=model)",
                 "cls.trainer.build_options(args)", "cls.trainer.run("):
        assert call in source, call
    assert "cls.add_task_arguments(parser)" in inspect.getsource(AbsTask.get_parser)


def test_trainer_run_saves_reports_and_averages_through_module_globals():
    """``checkpoint.trainer_globals`` swaps these names of ``espnet2.train.trainer`` during
    ``GatedTrainer.run``; ESPnet's run must still look them up there."""
    from espnet2.train import trainer

    from espnet_ext.task import GatedTrainer, GatedTrainerOptions

    source = inspect.getsource(trainer.Trainer.run)
    for use in ("reporter = Reporter()", "torch.save(", "average_nbest_models("):
        assert use in source, use
    for name in ("torch", "Reporter", "average_nbest_models"):
        assert hasattr(trainer, name), name
    stock = list(inspect.signature(trainer.Trainer.run).parameters)
    assert list(inspect.signature(GatedTrainer.run).parameters) == stock
    assert dataclasses.is_dataclass(GatedTrainerOptions)
    assert issubclass(GatedTrainerOptions, trainer.TrainerOptions)


def test_target_reporter_overrides_a_method_reporter_still_has():
    from espnet2.train.reporter import Reporter

    assert list(inspect.signature(Reporter.sort_epochs_and_values).parameters) == [
        "self", "key", "key2", "mode"]
    assert "self.sort_epochs_and_values(" in inspect.getsource(Reporter.sort_epochs)
    assert "self.sort_epochs(" in inspect.getsource(Reporter.get_best_epoch)


def test_espnet_imports_typechecked_by_name_at_import():
    """``startup.skip_typechecks`` replaces ``typeguard.typechecked`` before ESPnet is imported."""
    from espnet2.tasks import abs_task
    from espnet2.train import trainer

    assert abs_task.typechecked is typeguard.typechecked
    assert trainer.typechecked is typeguard.typechecked


def test_print_config_lists_the_stock_keys_of_the_gated_nets():
    """``nets.with_stock_arguments``: ESPnet reads a class's conf keys from its signature."""
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
    from espnet2.utils.get_default_kwargs import get_default_kwargs

    from espnet_ext.nets.e_branchformer_token_condition import EBranchformerTokenConditionEncoder
    from espnet_ext.nets.transformer_decoder_token_condition import TransformerDecoderTokenCondition
    from espnet_ext.nets.transformer_encoder_token_condition import TransformerTokenConditionEncoder

    for gated, stock in ((EBranchformerTokenConditionEncoder, EBranchformerEncoder),
                         (TransformerDecoderTokenCondition, TransformerDecoder),
                         (TransformerTokenConditionEncoder, TransformerEncoder)):
        shown = get_default_kwargs(gated)
        assert get_default_kwargs(stock).items() <= shown.items(), gated.__name__
        assert shown["gate_context"] is not None and "gate_init_bias" in shown
