"""espnet_ext.startup: typeguard's import-time instrumentation off in the inference CLI."""

import os
import subprocess
import sys

CHECK = """
from espnet_ext.startup import skip_typechecks
print(skip_typechecks())
from typeguard import typechecked

@typechecked
def f(x: int) -> int:
    return x

@typechecked()
def g(x: int) -> int:
    return x

try:
    f("a"), g("a")
    print("unchecked")
except Exception as e:
    print(type(e).__name__)
"""


def _run(tmp_path, env_value):
    script = tmp_path / "check.py"  # typeguard instruments from source: a file, not -c
    script.write_text(CHECK)
    env = dict(os.environ)
    env.pop("ESPNET_EXT_TYPECHECK", None)
    if env_value is not None:
        env["ESPNET_EXT_TYPECHECK"] = env_value
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def test_skip_typechecks_makes_typechecked_a_no_op_both_forms(tmp_path):
    assert _run(tmp_path, None) == ["True", "unchecked"]
    assert _run(tmp_path, "0") == ["True", "unchecked"]


def test_env_keeps_the_checks(tmp_path):
    assert _run(tmp_path, "1") == ["False", "TypeCheckError"]


def test_inference_cli_skips_them_only_as_a_command():
    # importing the CLI module (tests, other tools) leaves typeguard alone
    import typeguard

    before = typeguard.typechecked
    import espnet_ext.bin.s2t_inference  # noqa: F401

    assert typeguard.typechecked is before
