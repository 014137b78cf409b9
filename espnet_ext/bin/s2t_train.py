#!/usr/bin/env python3
"""ESPnet's s2t_train with espnet_ext registered explicitly.

Usage:
    python -m espnet_ext.bin.s2t_train --config conf/train_s2t_ebf_gated.yaml ...

Same options as ``python -m espnet2.bin.s2t_train`` (which also works once
this package is installed: ``espnet_ext.pth`` registers it). Use this entry
point when the automatic registration is off (``ESPNET_EXT_AUTOREGISTER=0``).
Registration happens at import, so ESPnet's spawned multi-GPU workers, which
re-import this module, have it too.

A bad key or value inside a ``*_conf`` mapping of the config (which ESPnet
only notices when it builds the model) ends in a one-line error, exit code 2.
"""

import sys
from typing import List, Optional

import espnet_ext

espnet_ext.register()

from espnet2.bin.s2t_train import get_parser  # noqa: E402,F401
from espnet2.bin.s2t_train import main as espnet_main  # noqa: E402


def conf_error(e: Exception) -> Optional[str]:
    """The one-line message for a bad ``*_conf`` entry, or None for other errors."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, TypeError) and "unexpected keyword argument" in text:
        return f"{text} (check the *_conf keys of --config)"
    if type(e).__name__ == "TypeCheckError":  # typeguard: a value of the wrong type
        return f"{text} (check the *_conf values of --config)"
    return None


def main(cmd: Optional[List[str]] = None) -> None:
    try:
        espnet_main(cmd)
    except Exception as e:  # noqa: BLE001 - re-raised unless it is a config error
        message = conf_error(e)
        if message is None:
            raise
        print(f"s2t_train: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
