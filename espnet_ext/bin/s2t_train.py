#!/usr/bin/env python3
"""ESPnet's s2t_train with our S2T task (``espnet_ext.s2t.task.GatedS2TTask``).

Usage:
    python -m espnet_ext.bin.s2t_train --config conf/train_s2t_ebf_gated.yaml ...

Same options as ``python -m espnet2.bin.s2t_train``, plus the dynamic-pruning
ones (``tau_ini``, ``sparsity_end``, ``gate_lr``, ...; ``--print_config`` lists
them). The stock entry point runs the same task once this package is installed
(docs/design.md, "ESPnet integration"). Registration happens at import, so
ESPnet's spawned multi-GPU workers, which re-import this module, have it too.

A bad key or value inside a ``*_conf`` mapping of the config (which ESPnet
only notices when it builds the model) ends in a one-line error, exit code 2.
"""

import sys
from typing import List, Optional

import espnet_ext

espnet_ext.register()

from espnet_ext.s2t.task import GatedS2TTask  # noqa: E402


def get_parser():
    return GatedS2TTask.get_parser()


def conf_error(e: Exception) -> Optional[str]:
    """The one-line message for a bad ``*_conf`` entry, or None for other errors."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, TypeError) and "unexpected keyword argument" in text:
        return f"{text} (check the *_conf keys of --config)"
    if type(e).__name__ == "TypeCheckError":  # typeguard: a value of the wrong type
        return f"{text} (check the *_conf values of --config)"
    return None


def run(task, prog: str, cmd: Optional[List[str]] = None) -> None:
    """``task.main(cmd=cmd)``; a config error ends in ``<prog>: error: ...``, exit code 2."""
    try:
        task.main(cmd=cmd)
    except Exception as e:  # noqa: BLE001 - re-raised unless it is a config error
        message = conf_error(e)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def main(cmd: Optional[List[str]] = None) -> None:
    run(GatedS2TTask, "s2t_train", cmd)


if __name__ == "__main__":
    main()
