"""Audio checks of the decoding CLI: other rates, stereo, unreadable and empty files."""

import logging

import numpy as np
import pytest
import soundfile as sf

from espnet_ext.context.audio import AudioError
from espnet_ext.s2t.audio_input import check_sound_inputs

FS = 16000


def tone(seconds=0.5, rate=FS, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


@pytest.fixture
def scp(tmp_path):
    files = {"ok": (tone(), FS), "low": (tone(rate=8000), 8000), "cd": (tone(rate=44100), 44100),
             "stereo": (tone(channels=2), FS)}
    lines = []
    for utt, (x, rate) in files.items():
        sf.write(tmp_path / f"{utt}.wav", x, rate)
        lines.append(f"{utt} {tmp_path / f'{utt}.wav'}\n")
    path = tmp_path / "wav.scp"
    path.write_text("".join(lines))
    return path


def test_other_rates_are_resampled_and_stereo_down_mixed(scp, tmp_path, caplog):
    work = tmp_path / "work"
    with caplog.at_level(logging.WARNING):
        [(path, name, kind)] = check_sound_inputs([(str(scp), "speech", "sound")], FS, "convert", work)
    assert (name, kind) == ("speech", "sound") and path == str(work / "speech.scp")
    table = dict(line.split() for line in open(path))
    assert table["ok"] == str(tmp_path / "ok.wav")  # untouched
    for utt in ("low", "cd", "stereo"):
        x, rate = sf.read(table[utt])
        assert rate == FS and x.ndim == 1 and abs(len(x) - FS // 2) <= 2, utt
    ref = tone()
    assert np.abs(sf.read(table["cd"])[0] - ref).max() < 0.01  # 44.1 kHz back to 16 kHz
    assert np.allclose(sf.read(table["stereo"])[0], 0.75 * ref, atol=1e-4)  # channel mean
    [line] = [r.message for r in caplog.records]
    assert "2 resampled, 1 down-mixed to 16000 Hz mono" in line


def test_error_mode_refuses_with_one_line(scp, tmp_path):
    with pytest.raises(AudioError, match=r"utterance low: .*low.wav: 8000 Hz, the model takes 16000 Hz"):
        check_sound_inputs([(str(scp), "speech", "sound")], FS, "error", tmp_path / "w")


def test_a_good_input_is_left_as_is(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), FS)
    (tmp_path / "wav.scp").write_text(f"a {tmp_path / 'a.wav'}\n")
    inputs = [(str(tmp_path / "wav.scp"), "speech", "sound"), ("x.npy.scp", "spk_embed", "npy")]
    assert check_sound_inputs(inputs, FS, "convert", tmp_path / "w") == inputs
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("mode", ["convert", "error"])
def test_broken_files_name_utterance_and_file(tmp_path, mode):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), FS)
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wav file")
    for utt, reason in (("empty", "empty audio"), ("junk", "unreadable audio")):
        (tmp_path / "wav.scp").write_text(f"{utt} {tmp_path / utt}.wav\n")
        with pytest.raises(AudioError, match=rf"utterance {utt}: .*{utt}.wav: ({reason})"):
            check_sound_inputs([(str(tmp_path / "wav.scp"), "speech", "sound")], FS, mode, tmp_path / "w")
