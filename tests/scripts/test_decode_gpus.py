"""scripts/decode.py --nj --ngpu 1: each job gets one of the parent's GPUs (a fake device list)."""

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def decode():
    return load_script("decode")


def test_visible_gpus_are_the_parents_names(decode):
    assert decode.visible_gpus(None, 2) == ["0", "1"]
    assert decode.visible_gpus("4,5,6,7", 4) == ["4", "5", "6", "7"]
    assert decode.visible_gpus("6, 2", 2) == ["6", "2"]
    # CUDA stops at the first entry it does not know: device_count() says how many count
    assert decode.visible_gpus("3,1,99", 2) == ["3", "1"]
    assert decode.visible_gpus("GPU-8f1c,MIG-GPU-8f1c/1/0", 2) == ["GPU-8f1c", "MIG-GPU-8f1c/1/0"]
    assert decode.visible_gpus("", 0) == []


def fake_jobs(decode, monkeypatch, parent, count):
    """decode_split with ``count`` fake GPUs under ``CUDA_VISIBLE_DEVICES=parent``; its job
    processes only record the CUDA_VISIBLE_DEVICES they get (and fail, so nothing is merged)."""
    if parent is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", parent)
    monkeypatch.setattr(decode.torch.cuda, "device_count", lambda: count)
    seen = {}

    class Job:
        def __init__(self, argv, stdout=None, stderr=None, env=None):
            keys = argv[argv.index("--key_file") + 1]
            seen[int(keys.split(".")[-2])] = env.get("CUDA_VISIBLE_DEVICES")

        def wait(self):
            return 1

    monkeypatch.setattr(decode.subprocess, "Popen", Job)
    return seen


@pytest.mark.parametrize("parent, count, expected", [
    ("4,5,6,7", 4, ["4", "5", "6", "7", "4", "5"]),  # not the physical GPUs 0-3
    ("2,0", 2, ["2", "0", "2", "0", "2", "0"]),
    (None, 3, ["0", "1", "2", "0", "1", "2"]),
])
def test_jobs_land_on_the_parents_gpus(decode, monkeypatch, tmp_path, parent, count, expected):
    wav = tmp_path / "wav.scp"
    wav.write_text("".join(f"utt{i} /a/{i}.wav\n" for i in range(6)))
    seen = fake_jobs(decode, monkeypatch, parent, count)
    with pytest.raises(SystemExit, match="6 of 6 jobs failed"):
        decode.decode_split(["--ngpu", "1"], tmp_path / "out", wav, 6, gpu=True)
    assert [seen[j] for j in range(1, 7)] == expected


def test_no_visible_gpu_is_a_one_line_error_and_cpu_jobs_keep_the_parents_setting(
        decode, monkeypatch, tmp_path):
    wav = tmp_path / "wav.scp"
    wav.write_text("utt0 /a/0.wav\nutt1 /a/1.wav\n")
    seen = fake_jobs(decode, monkeypatch, "", 0)
    with pytest.raises(SystemExit, match=r"^decode: --ngpu 1 but no GPU is visible "
                                         r"\(CUDA_VISIBLE_DEVICES=''\)$"):
        decode.decode_split(["--ngpu", "1"], tmp_path / "out", wav, 2, gpu=True)
    assert seen == {}  # nothing started
    seen = fake_jobs(decode, monkeypatch, "5", 1)
    with pytest.raises(SystemExit):
        decode.decode_split(["--ngpu", "0"], tmp_path / "cpu", wav, 2, gpu=False)
    assert seen == {1: "5", 2: "5"}  # untouched


def test_jobs_through_a_backend_get_its_gpu_and_need_none_here(decode, monkeypatch, tmp_path):
    """--cmd: each job is `<cmd> --gpu 1 <log> python -m ...s2t_inference ...`, environment untouched,
    and no GPU needs to be visible to this process (a Slurm login node)."""
    wav = tmp_path / "wav.scp"
    wav.write_text("".join(f"utt{i} /a/{i}.wav\n" for i in range(4)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(decode.torch.cuda, "device_count", lambda: 0)
    calls = []

    class Job:
        def __init__(self, argv, stdout=None, stderr=None, env=None):
            calls.append((argv, env))

        def wait(self):
            return 1

    monkeypatch.setattr(decode.subprocess, "Popen", Job)
    (tmp_path / "out" / "logdir").mkdir(parents=True)
    (tmp_path / "out" / "logdir" / "decode.1.log").write_text("an earlier run\n")
    with pytest.raises(SystemExit, match="2 of 2 jobs failed"):
        decode.decode_split(["--ngpu", "1"], tmp_path / "out", wav, 2, gpu=True,
                            backend="local/slurm.pl --config conf/slurm.conf --mem 16G")
    assert len(calls) == 2
    for j, (argv, env) in enumerate(calls, start=1):
        log = tmp_path / "out" / "logdir" / f"decode.{j}.log"
        assert argv[:7] == ["local/slurm.pl", "--config", "conf/slurm.conf", "--mem", "16G", "--gpu", "1"]
        assert argv[7:10] == [str(log), decode.sys.executable, "-m"]
        assert argv[argv.index("--key_file") + 1] == str(tmp_path / "out" / "logdir" / f"keys.{j}.scp")
        assert env is None  # the backend's environment: no CUDA_VISIBLE_DEVICES chosen here
    assert not (tmp_path / "out" / "logdir" / "decode.1.log").exists()  # the backend appends: a fresh log
