"""Start-up cost of the command-line tools.

typeguard's ``@typechecked`` instruments a function at import time by
re-parsing the source of its whole module. ESPnet decorates hundreds of
functions, and inflect (imported by ESPnet's phoneme tokenizer through g2p_en)
23 methods of one 4000-line module: on a 2-core CPU about 11 of the 17 s that
ESPnet's inference imports take. Python's own switch for this is ``-O``
(typeguard returns the function unchanged when ``__debug__`` is false), which
also strips every ``assert``. ``skip_typechecks`` turns off the
instrumentation alone. The commands that only load models (decoding, the
profile, FLOPs matching, export, ``scripts/decode.py``, ``scripts/check_init.py``)
call it through ``command``; training keeps the checks.
"""

import os

import typeguard

ENV = "ESPNET_EXT_TYPECHECK"


def _unchecked(target=None, **_options):
    """``typeguard.typechecked`` that returns its target unchanged (bare or with options)."""
    return target if target is not None else _unchecked


def skip_typechecks() -> bool:
    """Makes ``@typechecked`` a no-op for every module imported from now on.

    Call it before importing ESPnet, in a command's ``__main__`` only: it changes
    typeguard for the whole process. The checks only ever raise on an argument
    of the wrong type, so results do not change. ``ESPNET_EXT_TYPECHECK=1``
    keeps them.

    Returns:
        bool: Whether the checks are off.
    """
    if os.environ.get(ENV, "0") not in ("", "0"):
        return False
    typeguard.typechecked = _unchecked
    return True


def command(module_name: str) -> None:
    """``skip_typechecks`` when the calling module runs as a command.

    Usage, before the module imports ESPnet: ``startup.command(__name__)``.
    """
    if module_name == "__main__":
        skip_typechecks()
