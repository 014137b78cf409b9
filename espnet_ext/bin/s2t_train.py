#!/usr/bin/env python3
"""ESPnet's s2t_train with espnet_ext registered explicitly.

Usage:
    python -m espnet_ext.bin.s2t_train --config conf/train_s2t_ebf_gated.yaml ...

Same options as ``python -m espnet2.bin.s2t_train`` (which also works once
this package is installed: ``espnet_ext.pth`` registers it). Use this entry
point when the automatic registration is off (``ESPNET_EXT_AUTOREGISTER=0``).
Registration happens at import, so ESPnet's spawned multi-GPU workers, which
re-import this module, have it too.
"""

import espnet_ext

espnet_ext.register()

from espnet2.bin.s2t_train import get_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    main()
