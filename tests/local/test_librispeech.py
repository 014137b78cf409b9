"""LibriSpeech data preparation (local/librispeech/) on a miniature tree."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from script_loader import load_file

ROOT = Path(__file__).resolve().parents[2]


def load(name):
    return load_file(ROOT / "local/librispeech" / f"{name}.py")


prepare, make_mini = (load(n) for n in ("prepare", "make_mini"))


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs espeak-ng and sox")
    out = tmp_path_factory.mktemp("ls")
    make_mini.make_mini(out, utts=2)
    return out


def table(path: Path) -> dict:
    return dict(line.split(maxsplit=1) for line in path.read_text().splitlines())


def test_mini_tree_has_the_official_layout(mini):
    root = mini / "LibriSpeech"
    trans = sorted(root.glob("*/*/*/*.trans.txt"))
    assert {t.parts[-4] for t in trans} == set(prepare.PARTS)
    for t in trans:
        spk, chapter = t.parent.parent.name, t.parent.name
        assert t.name == f"{spk}-{chapter}.trans.txt"
        for line in t.read_text().splitlines():
            utt, text = line.split(maxsplit=1)
            assert utt.startswith(f"{spk}-{chapter}-") and text == text.upper()
            info = soundfile.info(str(t.parent / f"{utt}.flac"))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")


def test_prepare_writes_sorted_kaldi_dirs_and_dev(mini, tmp_path):
    assert prepare.main(["--root", str(mini), "--out", str(tmp_path)]) == 0
    for part in prepare.PARTS:
        d = tmp_path / part.replace("-", "_")
        lines = (d / "wav.scp").read_text().splitlines()
        assert lines == sorted(lines)
        wav, text, u2s = table(d / "wav.scp"), table(d / "text"), table(d / "utt2spk")
        assert set(wav) == set(text) == set(u2s)
        for utt, spk in u2s.items():
            assert utt.split("-")[0] == spk and Path(wav[utt]).is_file()
    train = table(tmp_path / "train_clean_100/text")
    assert len(train) == 4 and table(tmp_path / "train_clean_100/spk2utt").keys() == {"103", "1034"}
    dev = table(tmp_path / "dev/text")
    assert dev == {**table(tmp_path / "dev_clean/text"), **table(tmp_path / "dev_other/text")}
    assert len(dev) == 4


def test_prepare_skips_and_reports_bad_utterances(mini, tmp_path, caplog):
    src = tmp_path / "src"
    shutil.copytree(mini, src)
    d = src / "LibriSpeech/train-clean-100/103/100"
    (d / "103-100-0000.flac").unlink()  # transcript without audio
    soundfile.write(d / "103-100-0001.flac", np.zeros(8000, "float32"), 8000)  # 8 kHz
    soundfile.write(d / "103-100-0099.flac", np.zeros(16000, "float32"), 16000)  # no transcript
    out = tmp_path / "data"
    assert prepare.main(["--root", str(src / "LibriSpeech"), "--out", str(out),
                         "--parts", "train-clean-100"]) == 0
    assert sorted(table(out / "train_clean_100/text")) == ["1034-101-0000", "1034-101-0001"]
    msgs = "\n".join(r.getMessage() for r in caplog.records)
    assert "no audio 103-100-0000.flac" in msgs
    assert "103-100-0001.flac: 8000 Hz, expected 16000" in msgs
    assert "103-100-0099.flac: not in 103-100.trans.txt" in msgs
    # a part with no usable utterance is an error
    for utt in ("1034-101-0000", "1034-101-0001"):
        (src / f"LibriSpeech/train-clean-100/1034/101/{utt}.flac").unlink()
    assert prepare.main(["--root", str(src), "--out", str(out), "--parts", "train-clean-100"]) == 1
    assert "no usable utterance" in caplog.text


def test_prepare_fails_clearly_on_a_missing_part(mini, tmp_path, caplog):
    src = tmp_path / "src"
    shutil.copytree(mini, src)
    shutil.rmtree(src / "LibriSpeech/test-other")
    assert prepare.main(["--root", str(src), "--out", str(tmp_path / "d")]) == 1
    assert "test-other: missing" in caplog.text
    with pytest.raises(FileNotFoundError, match="no LibriSpeech parts"):
        prepare.find_root(tmp_path / "d")
