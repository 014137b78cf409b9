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
