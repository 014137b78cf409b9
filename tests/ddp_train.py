"""ESPnet's stock ``s2t_train`` that also saves every rank's final weights.

Launched by torchrun in tests/s2t/test_ddp.py: ``python ddp_train.py <out.pth prefix> <s2t_train args>``.
ESPnet saves rank 0's model only; the test compares the ranks.
"""

import sys

import torch
import torch.distributed as dist
from espnet2.bin.s2t_train import main
from espnet2.train.trainer import Trainer

prefix = sys.argv.pop(1)
stock_run = Trainer.run.__func__


def run(cls, model, *args, **kwargs):
    stock_run(cls, model, *args, **kwargs)
    torch.save(model.state_dict(), f"{prefix}.rank{dist.get_rank()}.pth")


Trainer.run = classmethod(run)

if __name__ == "__main__":
    main()
