"""Distributed training (torch DDP, gloo, 2 CPU processes) through ESPnet's own launcher."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_corpus import s2t_train, train_args

pytestmark = pytest.mark.slow

STEPS = ("--max_epoch", "1", "--num_iters_per_epoch", "4", "--batch_size", "8")
SCOPES = ("both", "encoder", "decoder")


@pytest.mark.parametrize("scope", SCOPES)
def test_two_ranks_train_every_scope(tiny_corpus, tiny_config, tmp_path, scope):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(29500 + SCOPES.index(scope)),
           str(Path(__file__).parents[1] / "ddp_train.py"), str(tmp_path / "final")]
    cmd += train_args(tiny_corpus, tiny_config, out) + list(STEPS)
    cmd += ["--dist_backend", "gloo", "--multiprocessing_distributed", "false",
            "--model_conf", f"prune_scope={scope}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"final.rank{r}.pth", map_location="cpu") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    diff = max((ranks[0][k].float() - ranks[1][k].float()).abs().max().item() for k in ranks[0])
    assert diff == 0.0, diff
    # the schedule counts optimizer steps alike on every rank and in one process
    single = tmp_path / "single"
    s2t_train(tiny_corpus, tiny_config, single, *STEPS, "--model_conf", f"prune_scope={scope}")
    one = torch.load(single / "1epoch.pth", map_location="cpu")
    assert int(ranks[0]["gate_schedule.forwards"]) == int(one["gate_schedule.forwards"]) == 4
    # the forced-open side's predictor is frozen: on both ranks and in one process it keeps
    # the initial weights (same seed), where trained ones would differ between the runs
    frozen = {"both": None, "encoder": "decoder.", "decoder": "encoder."}[scope]
    if frozen:
        keys = [k for k in one if k.startswith(frozen) and "gate_predictor" in k]
        assert keys
        assert all(torch.equal(ranks[0][k], one[k]) for k in keys)
