"""scripts/format_data.py's length handling: an evaluation set (dev/test) keeps every
utterance, long ones included (decoded trimmed to speech_length, as ESPnet's Speech2Text),
a training set drops the long ones; both write utt_counts.json (set and subsets)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from script_loader import load_script

format_data = load_script("format_data")
validate_data_dir = load_script("validate_data_dir")

SPEECH_LENGTH = 2.0  # seconds
# utt -> (text prefix, seconds): one long (3.5 s > 2 s) German ASR utterance, one too short
UTTS = {
    "a_deu_asr": ("<deu><asr>", 1.0),
    "b_deu_asr": ("<deu><asr>", 3.5),
    "c_deu_st_eng": ("<deu><st_eng>", 1.5),
    "d_fra_asr": ("<fra><asr>", 0.05),
    "e_fra_asr": ("<fra><asr>", 2.0),
}


@pytest.fixture
def data(tmp_path) -> Path:
    d = tmp_path / "data"
    (d / "wav").mkdir(parents=True)
    wav, text, utt2spk = [], [], []
    for i, (utt, (prefix, seconds)) in enumerate(sorted(UTTS.items())):
        path = d / "wav" / f"{utt}.wav"
        sf.write(path, 0.1 * np.ones(int(seconds * 16000), "float32"), 16000)
        wav.append(f"{utt} {path}\n")
        text.append(f"{utt} {prefix}<notimestamps> word{i}\n")
        utt2spk.append(f"{utt} spk{i % 2}\n")
    for name, lines in (("wav.scp", wav), ("text", text), ("utt2spk", utt2spk)):
        (d / name).write_text("".join(lines))
    return d


def config(tmp_path) -> Path:
    path = tmp_path / "conf.yaml"
    path.write_text(f"preprocessor_conf:\n  speech_length: {SPEECH_LENGTH}\nfrontend_conf:\n"
                    "  hop_length: 160\nencoder_conf:\n  input_layer: conv2d\n")
    return path


def table(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def counts(d: Path) -> dict:
    return json.loads((d / "utt_counts.json").read_text())


def test_test_set_keeps_long_utterances_and_counts_them(data, tmp_path):
    out = tmp_path / "dump" / "test"
    assert format_data.main(["--data_dir", str(data), "--out", str(out),
                             "--config", str(config(tmp_path)), "--split_by_lang_task"]) == 0
    # the 3.5 s utterance is kept (decoding trims it); only the 0.05 s one is dropped
    assert sorted(table(out / "text")) == ["a_deu_asr", "b_deu_asr", "c_deu_st_eng", "e_fra_asr"]
    assert table(out / "long_utts") == {"b_deu_asr": "3.50"}
    assert table(out / "speech_shape")["b_deu_asr"] == str(int(3.5 * 16000))
    assert list(table(out / "bad_utts")) == ["d_fra_asr"]
    assert counts(out) == {"set": "test", "role": "eval", "official": 5, "utts": 4, "long": 1,
                           "dropped_long": 0, "dropped_short": 1, "bad": 0,
                           "speech_length": SPEECH_LENGTH, "long_utts": "trimmed"}
    sub = out.parent / "test_deu_asr"
    assert sorted(table(sub / "text")) == ["a_deu_asr", "b_deu_asr"]
    assert table(sub / "long_utts") == {"b_deu_asr": "3.50"}
    assert (counts(sub)["official"], counts(sub)["utts"], counts(sub)["long"]) == (2, 2, 1)
    fra = counts(out.parent / "test_fra_asr")
    assert (fra["official"], fra["utts"], fra["long"], fra["dropped_short"]) == (2, 1, 0, 1)
    assert (out.parent / "test_deu_st_eng" / "long_utts").read_text() == ""
    # 2.0 s is exactly speech_length: not long
    assert counts(out.parent / "test_deu_st_eng")["long"] == 0
    for d in (out, sub):  # the kept long utterance passes the stage's validation
        assert validate_data_dir.validate(d, min_samples=(960, "conv2d")) == []


def test_dev_set_with_eval_set_keeps_long_utterances(data, tmp_path):
    out = tmp_path / "dump" / "dev"
    assert format_data.main(["--data_dir", str(data), "--out", str(out),
                             "--config", str(config(tmp_path)), "--eval_set"]) == 0
    assert "b_deu_asr" in table(out / "text")
    assert counts(out)["role"] == "eval" and counts(out)["long"] == 1
    assert not list(out.parent.glob("dev_*"))  # no subsets without --split_by_lang_task


def test_training_set_drops_long_utterances_and_logs_the_count(data, tmp_path, caplog):
    out = tmp_path / "dump" / "train"
    caplog.set_level("INFO")
    assert format_data.main(["--data_dir", str(data), "--out", str(out),
                             "--config", str(config(tmp_path))]) == 0
    assert sorted(table(out / "text")) == ["a_deu_asr", "c_deu_st_eng", "e_fra_asr"]
    assert table(out / "bad_utts")["b_deu_asr"].startswith("too long: 3.50 s > speech_length 2.0 s")
    assert not (out / "long_utts").exists()
    assert counts(out) == {"set": "train", "role": "train", "official": 5, "utts": 3, "long": 0,
                           "dropped_long": 1, "dropped_short": 1, "bad": 0,
                           "speech_length": SPEECH_LENGTH, "long_utts": "dropped"}
    assert "(training set): 5 utterances, kept 3, dropped 1 longer than speech_length 2.0 s" \
        in caplog.text


def test_skipped_bad_utterances_are_counted_in_their_subset(data, tmp_path):
    (data / "wav" / "c_deu_st_eng.wav").unlink()
    out = tmp_path / "dump" / "test"
    assert format_data.main(["--data_dir", str(data), "--out", str(out), "--config",
                             str(config(tmp_path)), "--split_by_lang_task",
                             "--skip_bad_utts"]) == 0
    assert counts(out)["bad"] == 1 and counts(out)["official"] == 5
    assert not (out.parent / "test_deu_st_eng").exists()  # nothing of it left to decode
    assert counts(out.parent / "test_deu_asr")["bad"] == 0


@pytest.fixture
def asr_data(data) -> Path:
    """``data`` as a Kaldi ASR dir (LibriSpeech's layout): plain upper-case transcripts."""
    text = table(data / "text")
    (data / "text").write_text("".join(f"{u} {t.split('> ', 1)[1].upper()}\n" for u, t in text.items()))
    return data


def asr_config(tmp_path) -> Path:
    path = tmp_path / "asr.yaml"  # an ASR training YAML: no preprocessor speech_length
    path.write_text("frontend_conf:\n  hop_length: 160\nencoder_conf:\n  input_layer: conv2d\n")
    return path


def test_asr_eval_set_keeps_long_utterances_whole(asr_data, tmp_path):
    out = tmp_path / "dump" / "test_clean"
    assert format_data.main(["--asr", "--data_dir", str(asr_data), "--out", str(out), "--config",
                             str(asr_config(tmp_path)), "--eval_set", "--max_wav_duration", "3"]) == 0
    assert sorted(table(out / "text")) == ["a_deu_asr", "b_deu_asr", "c_deu_st_eng", "e_fra_asr"]
    assert table(out / "text")["a_deu_asr"] == "WORD0" and table(out / "wav.scp") == {
        u: str(asr_data / "wav" / f"{u}.wav") for u in table(out / "text")}  # audio not copied
    assert table(out / "long_utts") == {"b_deu_asr": "3.50"}
    assert list(table(out / "bad_utts")) == ["d_fra_asr"]
    assert table(out / "spk2utt") == {"spk0": "a_deu_asr c_deu_st_eng e_fra_asr", "spk1": "b_deu_asr"}
    assert counts(out) == {"set": "test_clean", "role": "eval", "official": 5, "utts": 4, "long": 1,
                           "dropped_long": 0, "dropped_short": 1, "bad": 0,
                           "speech_length": 3.0, "long_utts": "whole"}
    assert validate_data_dir.validate(out, min_samples=(960, "conv2d"), asr=True) == []
    with pytest.raises(ValueError, match="not with --asr"):
        format_data.format_data(asr_data, out, 3.0, True, asr=True)


def test_asr_training_set_drops_beyond_max_wav_duration(asr_data, tmp_path, caplog):
    out = tmp_path / "dump" / "train"
    caplog.set_level("INFO")
    argv = ["--asr", "--data_dir", str(asr_data), "--out", str(out), "--config", str(asr_config(tmp_path))]
    assert format_data.main(argv) == 0  # asr.sh's 20 s: every one kept but the short one
    assert sorted(table(out / "text")) == ["a_deu_asr", "b_deu_asr", "c_deu_st_eng", "e_fra_asr"]
    assert table(out / "speech_shape")["b_deu_asr"] == str(int(3.5 * 16000))
    assert format_data.main(argv + ["--max_wav_duration", "3"]) == 0
    assert table(out / "bad_utts")["b_deu_asr"].startswith("too long: 3.50 s > max_wav_duration 3.0 s")
    assert counts(out)["dropped_long"] == 1 and counts(out)["long_utts"] == "dropped"
    assert "kept 3, dropped 1 longer than max_wav_duration 3.0 s" in caplog.text
    # without --asr the plain transcripts are refused, each named
    assert format_data.main(argv[1:]) == 1


def test_asr_bad_rows_stop_or_are_skipped(asr_data, tmp_path, capsys):
    (asr_data / "wav" / "c_deu_st_eng.wav").unlink()
    sf.write(asr_data / "wav" / "a_deu_asr.wav", np.zeros((16000, 2), "float32"), 16000)  # stereo
    (asr_data / "utt2spk").write_text("".join(
        line + "\n" for line in (asr_data / "utt2spk").read_text().splitlines() if not line.startswith("e_")))
    out = tmp_path / "dump" / "test_other"
    argv = ["--asr", "--data_dir", str(asr_data), "--out", str(out), "--config", str(asr_config(tmp_path)),
            "--eval_set"]
    assert format_data.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("format_data: error: 3 bad utterance(s)") and "first: a_deu_asr" in err
    bad = table(out / "bad_utts")
    assert "2 channel(s); expected 16000 Hz mono" in bad["a_deu_asr"]
    assert "no such file" in bad["c_deu_st_eng"] and "not in" in bad["e_fra_asr"]
    assert format_data.main(argv + ["--skip_bad_utts"]) == 0
    assert sorted(table(out / "text")) == ["b_deu_asr"] and counts(out)["bad"] == 3
