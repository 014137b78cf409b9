"""Our names are accepted by ESPnet's S2T and ASR tasks, in every interpreter."""

import multiprocessing
import os
import subprocess
import sys

import espnet_ext

NAMES = {
    "encoder_choices": "e_branchformer_token_condition",
    "decoder_choices": "transformer_decoder_token_condition",
}


def _registered(task: str) -> dict:
    import importlib

    module = importlib.import_module(f"espnet2.tasks.{task}")
    return {attr: name in getattr(module, attr).classes for attr, name in NAMES.items()}


def _child(queue):
    queue.put(_registered("s2t"))


def test_register_is_idempotent():
    from espnet2.tasks import asr, s2t

    espnet_ext.register()
    before = {k: dict(getattr(s2t, k).classes) for k in ("encoder_choices", "decoder_choices", "model_choices")}
    espnet_ext.register()
    espnet_ext.register()
    after = {k: dict(getattr(s2t, k).classes) for k in before}
    assert before == after
    assert s2t.model_choices.classes["espnet_gated"].__name__ == "ESPnetS2TGatedModel"
    assert "e_branchformer_token_condition" in asr.encoder_choices.classes
    assert s2t.S2TTask.get_parser().parse_args(
        ["--encoder", "e_branchformer_token_condition", "--tau_ini", "2"]
    ).tau_ini == 2.0


def test_stock_interpreter_registers_without_any_import_of_ours():
    code = (
        "import sys\n"
        "assert 'torch' not in sys.modules  # the .pth hook imports nothing heavy\n"
        "from espnet2.tasks import s2t, asr\n"
        "print(sorted(k for k in s2t.encoder_choices.classes if 'condition' in k),"
        " 'transformer_decoder_token_condition' in asr.decoder_choices.classes,"
        " 's2t_whisper' in s2t.preprocessor_choices.classes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == (
        "['e_branchformer_token_condition', 'transformer_token_condition', 'whisper_token_condition']"
        " True True")


def test_spawned_workers_are_registered():
    """ESPnet's multi-GPU training spawns fresh interpreters."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    result = queue.get(timeout=120)
    proc.join()
    assert result == {"encoder_choices": True, "decoder_choices": True}


def test_autoregistration_can_be_switched_off():
    env = dict(os.environ, ESPNET_EXT_AUTOREGISTER="0")
    code = "from espnet2.tasks import s2t; print('e_branchformer_token_condition' in s2t.encoder_choices.classes)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/")
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
