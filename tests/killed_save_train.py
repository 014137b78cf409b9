"""``s2t_train`` killed in the middle of writing its epoch-2 ``checkpoint.pth``.

For tests/reliability/test_interruption.py: the 2nd save of the checkpoint
writes the complete file, truncates it to half (what a kill during the write
leaves) and the process dies with exit code 137, as a SIGKILL would.
"""

import os
import sys

import torch

import espnet_ext.bin.s2t_train as train

stock_save = torch.save
saves = 0


def save(obj, f, *args, **kwargs):
    global saves
    stock_save(obj, f, *args, **kwargs)
    if "checkpoint.pth" in os.path.basename(str(f)):
        saves += 1
        if saves == 2:
            os.truncate(f, os.path.getsize(f) // 2)
            os._exit(137)


torch.save = save

if __name__ == "__main__":
    train.main(sys.argv[1:])
