import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "validate_data_dir.py"


def run(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def test_valid_dir_passes(tiny_corpus):
    root = tiny_corpus["train"].parents[1]
    proc = run("data/train", "data/valid", "--langs", "eng,deu", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "data/train: 48 utterances, OK" in proc.stdout


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: (d / "utt2spk").write_text("".join((d / "utt2spk").read_text().splitlines(True)[1:])),
         "utt2spk: no entry for"),
        (lambda d: (d / "text").write_text((d / "text").read_text().replace("<eng><asr>", "<eng>", 1)),
         "does not start with <lang><task><notimestamps>"),
        (lambda d: (d / "text").write_text("".join(reversed((d / "text").read_text().splitlines(True)))),
         "not sorted (LC_ALL=C)"),
        (lambda d: (d / "wav.scp").unlink(), "wav.scp: missing (required)"),
        (lambda d: (d / "wav.scp").write_text((d / "wav.scp").read_text().replace(".wav", ".flac", 1)),
         "no such file"),
    ],
)
def test_each_problem_is_named(tiny_corpus, tmp_path, break_it, message):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_corpus["valid"], bad)
    break_it(bad)
    proc = run(bad, cwd=tiny_corpus["valid"].parents[1])
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr


def test_config_tasks_and_audio_checks(tiny_corpus, tmp_path):
    import numpy as np
    import soundfile as sf

    bad = tmp_path / "bad"
    shutil.copytree(tiny_corpus["valid"], bad)
    root = tiny_corpus["valid"].parents[1]
    config = tmp_path / "conf.yaml"
    config.write_text("frontend_conf:\n  hop_length: 160\nencoder_conf:\n  input_layer: conv2d\n")
    wavs = [line.split(" ", 1) for line in (bad / "wav.scp").read_text().splitlines()]
    short = bad / "short.wav"
    sf.write(short, np.zeros(900, "float32"), 16000)  # < 960 = 7 frames of hop 160
    wavs[0][1] = str(short)
    (bad / "wav.scp").write_text("".join(f"{u} {w}\n" for u, w in wavs))
    proc = run(bad, "--tasks", "asr", "--check_audio", "--config", config, cwd=root)
    assert proc.returncode == 1
    assert (f"{bad}: {wavs[0][0]}: 900 samples, shorter than the 960 the encoder needs "
            "(7 frames of hop 160 for input_layer conv2d)") in proc.stderr, proc.stderr
    assert "speech_shape: " in proc.stderr and "but " + str(short) + " has 900" in proc.stderr
    assert "unknown task <st_eng> (expected ['asr'])" in proc.stderr


def test_asr_dirs_need_no_prefix_but_a_transcript(tiny_corpus, tmp_path):
    asr = tmp_path / "asr"
    shutil.copytree(tiny_corpus["valid"], asr)
    lines = (asr / "text").read_text().splitlines()
    plain = [line.split(" ", 1)[0] + " " + line.split("> ", 1)[-1] for line in lines]
    plain[1] = plain[1].split(" ", 1)[0] + " "
    (asr / "text").write_text("".join(f"{line}\n" for line in plain))
    root = tiny_corpus["valid"].parents[1]
    assert "does not start with <lang><task>" in run(asr, cwd=root).stderr
    proc = run(asr, "--asr", cwd=root)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{asr / 'text'}:2: no value for {plain[1].split()[0]}"
