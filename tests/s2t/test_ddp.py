"""Distributed training (torch DDP, gloo, 2 CPU processes) through ESPnet's own launcher."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_corpus import s2t_train, train_args

pytestmark = pytest.mark.slow

# 4 steps of the tiny config's 150-step schedules: cut short on purpose
STEPS = ("--max_epoch", "1", "--num_iters_per_epoch", "4", "--batch_size", "8", "--schedule_check", "warn")
SCOPES = ("both", "encoder", "decoder")
# every context kind: the speaker/event projections must get a gradient (or be frozen) alike
EMBED_DIMS = {"spk": 8, "event": 4}


def context_args(corpus: dict, root: Path) -> list:
    """Speaker/event npy inputs for the tiny corpus and the gate options that read them."""
    rng = np.random.default_rng(0)
    args = ["--allow_variable_data_keys", "true"]
    for split, mode in (("train", "train"), ("valid", "valid")):
        for kind, dim in EMBED_DIMS.items():
            utts = [line.split()[0] for line in (corpus[split] / "wav.scp").read_text().splitlines()]
            (root / split).mkdir(parents=True, exist_ok=True)
            lines = []
            for utt in utts:
                np.save(root / split / f"{utt}.{kind}.npy", rng.standard_normal(dim).astype(np.float32))
                lines.append(f"{utt} {root / split / f'{utt}.{kind}.npy'}")
            scp = root / split / f"{kind}_embed.scp"
            scp.write_text("\n".join(lines) + "\n")
            args += [f"--{mode}_data_path_and_name_and_type", f"{scp},{kind}_embed,npy"]
    for side in ("encoder", "decoder"):
        args += [f"--{side}_conf", "gate_context=[lang,task,spk,event]"]
        args += [f"--{side}_conf", f"spk_embed_dim={EMBED_DIMS['spk']}",
                 f"--{side}_conf", f"event_embed_dim={EMBED_DIMS['event']}"]
    return args


@pytest.mark.parametrize("scope", SCOPES)
def test_two_ranks_train_every_scope_and_context(tiny_corpus, tiny_config, tmp_path, scope):
    out = tmp_path / "ddp"
    context = context_args(tiny_corpus, tmp_path / "embed")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(29500 + SCOPES.index(scope)),
           str(Path(__file__).parents[1] / "ddp_train.py"), str(tmp_path / "final")]
    cmd += train_args(tiny_corpus, tiny_config, out) + list(STEPS)
    cmd += ["--dist_backend", "gloo", "--multiprocessing_distributed", "false",
            "--model_conf", f"prune_scope={scope}"] + context
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"final.rank{r}.pth", map_location="cpu") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for kind in EMBED_DIMS:  # the speaker/event projections are part of the model
        assert any(f"context.proj.{kind}." in k for k in ranks[0]), kind
    diff = max((ranks[0][k].float() - ranks[1][k].float()).abs().max().item() for k in ranks[0])
    assert diff == 0.0, diff
    # the schedule counts optimizer steps alike on every rank and in one process
    single = tmp_path / "single"
    s2t_train(tiny_corpus, tiny_config, single, *STEPS, "--model_conf", f"prune_scope={scope}", *context)
    one = torch.load(single / "1epoch.pth", map_location="cpu")
    assert int(ranks[0]["gate_schedule.forwards"]) == int(one["gate_schedule.forwards"]) == 4
    # the forced-open side's predictor is frozen: on both ranks and in one process it keeps
    # the initial weights (same seed), where trained ones would differ between the runs
    frozen = {"both": None, "encoder": "decoder.", "decoder": "encoder."}[scope]
    if frozen:
        keys = [k for k in one if k.startswith(frozen) and "gate_predictor" in k]
        assert keys
        assert all(torch.equal(ranks[0][k], one[k]) for k in keys)
