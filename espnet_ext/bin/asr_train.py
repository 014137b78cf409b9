#!/usr/bin/env python3
"""ESPnet's asr_train with our ASR task (``espnet_ext.asr.task.GatedASRTask``).

Usage:
    python -m espnet_ext.bin.asr_train --config conf/train_asr_gated.yaml ...

Same options as ``python -m espnet2.bin.asr_train``, plus the dynamic-pruning
ones (``tau_ini``, ``sparsity_end``, ``gate_lr``, ...). Config errors as in
``espnet_ext.bin.s2t_train``.
"""

from typing import List, Optional

import espnet_ext

espnet_ext.register()

from espnet_ext.asr.task import GatedASRTask  # noqa: E402
from espnet_ext.bin.s2t_train import run  # noqa: E402


def get_parser():
    return GatedASRTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    run(GatedASRTask, "asr_train", cmd)


if __name__ == "__main__":
    main()
