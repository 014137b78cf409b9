"""SIGKILL in the middle of extraction or training, then the same command again.

The rerun must resume (extraction: skip the utterances whose npy is written;
training: ESPnet's ``--resume true`` from the last epoch's checkpoint, as the
recipe's stage 6 passes it) and end with the same outputs as a run that was
never interrupted: byte-identical npys and scp, identical parameters and gate
schedule state.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def kill_when(cmd, ready, timeout=300.0):
    """Starts ``cmd`` and SIGKILLs it once ``ready(stderr lines so far)`` holds.

    ``ready`` is polled every 10 ms (and on every stderr line). Returns the lines.
    """
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env(), cwd=ROOT)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    start = time.time()
    try:
        while not ready(lines):
            assert proc.poll() is None, "finished before the kill: " + "".join(lines[-20:])
            assert time.time() - start < timeout, "".join(lines[-20:])
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        reader.join()
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    return lines


def run(cmd) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.fixture
def small_dir(tiny_corpus, tmp_path):
    """32 utterances of the tiny corpus (wav.scp only: what extraction reads)."""
    d = tmp_path / "data"
    d.mkdir()
    lines = (tiny_corpus["train"] / "wav.scp").read_text().splitlines(True)[:32]
    (d / "wav.scp").write_text("".join(lines))
    return d


def test_killed_extraction_resumes_to_identical_outputs(small_dir, tmp_path):
    def cmd(out):
        return [sys.executable, "-m", "espnet_ext.bin.extract_context", "--kind", "speaker",
                "--model", "resemblyzer", "--data_dir", str(small_dir), "--out", str(out),
                "--batch_size", "1", "--num_threads", "1"]

    # the reference run with the same command: batch size and threads change the last bits
    whole, split = tmp_path / "whole", tmp_path / "split"
    run(cmd(whole))
    assert len(list((whole / "spk_embed").glob("*.npy"))) == 32
    npys = split / "spk_embed"
    # progress is only on the tqdm bar: kill once 5 npys are on disk
    kill_when(cmd(split), lambda _: len(list(npys.glob("*.npy"))) >= 5 if npys.is_dir() else False)
    done = sorted(p.name for p in npys.glob("*.npy"))
    assert 5 <= len(done) < 32, done
    assert not (split / "spk_embed.scp").exists()
    log = run(cmd(split))
    assert f"32 utterances, {len(done)} already done, {32 - len(done)} to extract" in log, log
    assert sorted(p.name for p in npys.glob("*.npy")) == sorted(
        p.name for p in (whole / "spk_embed").glob("*.npy"))
    for p in (whole / "spk_embed").glob("*.npy"):
        assert np.array_equal(np.load(p), np.load(npys / p.name)), p.name
    a = (whole / "spk_embed.scp").read_text().replace(str(whole), "OUT")
    b = (split / "spk_embed.scp").read_text().replace(str(split), "OUT")
    assert a == b and len(a.splitlines()) == 32
    # a finished extraction reruns as a no-op; a changed recording is redone
    from espnet_ext.bin.extract_context import extract

    assert extract("speaker", "resemblyzer", small_dir, split)["extracted"] == 0
    wav = Path((small_dir / "wav.scp").read_text().split()[1])
    os.utime(wav, (time.time() + 5, time.time() + 5))
    assert extract("speaker", "resemblyzer", small_dir, split)["extracted"] == 1


def test_killed_training_resumes_to_identical_model(tiny_corpus, tiny_config, tmp_path):
    import torch

    from tiny_corpus import train_args

    def cmd(out):  # --resume true, as the recipe passes it
        return [sys.executable, "-m", "espnet_ext.bin.s2t_train",
                *train_args(tiny_corpus, tiny_config, out), "--max_epoch", "2",
                "--num_iters_per_epoch", "6", "--log_interval", "2", "--schedule_check", "warn",
                "--use_tensorboard", "false", "--keep_nbest_models", "5"]

    whole, split = tmp_path / "whole", tmp_path / "split"
    run(cmd(whole))
    # kill inside epoch 2, after its first logged iterations
    lines = kill_when(cmd(split), lambda ls: any("2epoch:train:" in line for line in ls))
    assert (split / "1epoch.pth").exists() and not (split / "2epoch.pth").exists()
    assert not any("2epoch results" in line for line in lines)
    assert any("1epoch results" in line for line in lines)
    log = run(cmd(split))
    assert "1epoch results" not in log and "2epoch results" in log  # resumed at epoch 2
    a = torch.load(whole / "2epoch.pth", map_location="cpu")
    b = torch.load(split / "2epoch.pth", map_location="cpu")
    assert int(a["gate_schedule.forwards"]) == int(b["gate_schedule.forwards"]) == 12
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # optimizer and scheduler state (the schedule ESPnet resumes) match too
    ca = torch.load(whole / "checkpoint.pth", map_location="cpu", weights_only=False)
    cb = torch.load(split / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert ca["schedulers"] == cb["schedulers"]
    sa, sb = ca["optimizers"][0]["state"], cb["optimizers"][0]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq"):
            if name in sa[k]:
                assert torch.equal(sa[k][name], sb[k][name]), (k, name)
    # while the sparsity target ramps, only the latest epoch is a candidate for decoding
    # (espnet_ext.checkpoint.TargetReporter), so ESPnet's keep_nbest_models keeps no other
    assert not (whole / "1epoch.pth").exists() and not (split / "1epoch.pth").exists()
    # the final models give the same gates and hypotheses
    import soundfile as sf

    from espnet_ext.s2t.inference import Speech2TextGated

    wavs = [line.split()[1] for line in
            (tiny_corpus["valid"] / "wav.scp").read_text().splitlines()[:2]]
    outputs = []
    for exp in (whole, split):
        s2t = Speech2TextGated(s2t_train_config=exp / "config.yaml",
                               s2t_model_file=exp / "2epoch.pth", beam_size=1,
                               maxlenratio=0.3, lang_sym="<eng>", task_sym="<asr>")
        outs = []
        for wav in wavs:
            speech = sf.read(wav, dtype="float32")[0]
            gates = s2t.predict_gates(speech, "<eng>", "<asr>")
            outs.append(({k: v.tolist() for k, v in gates.items()}, s2t(speech)[0][0]))
        outputs.append(outs)
    assert outputs[0] == outputs[1]
    assert outputs[0][0][0]["encoder"]  # gates were predicted
    shutil.rmtree(whole)


def test_kill_during_checkpoint_write_keeps_the_resume_point(tiny_corpus, tiny_config, tmp_path):
    """espnet #5407: ESPnet writes checkpoint.pth in place; ours replaces it once complete."""
    import torch

    from tiny_corpus import train_args

    out = tmp_path / "exp"
    args = [*train_args(tiny_corpus, tiny_config, out), "--max_epoch", "3",
            "--num_iters_per_epoch", "4", "--use_tensorboard", "false", "--schedule_check", "warn"]
    killed = subprocess.run([sys.executable, str(ROOT / "tests" / "killed_save_train.py"), *args],
                            capture_output=True, text=True, env=env(), cwd=ROOT)
    assert killed.returncode == 137, killed.stderr[-3000:]
    ckpt = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert ckpt["reporter"]["epoch"] == 1  # epoch 1's checkpoint, whole
    log = run([sys.executable, "-m", "espnet_ext.bin.s2t_train", *args])
    assert "1epoch results" not in log and "2epoch results" in log and "3epoch results" in log
    assert not list(out.glob(".*.tmp"))
