"""Bad data at stage 2 (scripts/format_data.py), in validation and in extraction.

Each bad input must stop the stage with one line that names the utterance (or the
file and line) and what to do; ``--skip_bad_utts`` leaves bad utterances out and
lists each in ``<out>/bad_utts`` with its reason. docs/reliability.md has the table.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "egs2" / "mini_europarl" / "s2t1" / "conf" / "tiny" / "train_base.yaml"


format_data = load_script("format_data")
validate_data_dir = load_script("validate_data_dir")

FIRST = "spk0_train0000_eng_asr"  # first utterance of the tiny corpus' train dir


@pytest.fixture
def data(tiny_corpus, tmp_path):
    """A copy of the tiny train dir (own wavs) without the files stage 2 writes."""
    d = tmp_path / "data"
    shutil.copytree(tiny_corpus["train"], d)
    for name in ("speech_shape", "text_shape.bpe", "text_prev_shape.bpe", "text_ctc_shape.bpe"):
        (d / name).unlink()
    scp = (d / "wav.scp").read_text().replace(str(tiny_corpus["train"]), str(d))
    (d / "wav.scp").write_text(scp)
    return d


def wav_of(d: Path, utt: str = FIRST) -> Path:
    return d / "wav" / f"{utt}.wav"


def edit_line(path: Path, fn, index: int = 0) -> None:
    lines = path.read_text().splitlines(True)
    lines[index] = fn(lines[index])
    path.write_text("".join(lines))


BAD = {
    "missing audio": (lambda d: wav_of(d).unlink(), f"{FIRST}: .*{FIRST}.wav: no such file"),
    "empty file": (lambda d: wav_of(d).write_bytes(b""),
                   f"{FIRST}: .*: unreadable audio .*re-encode it as 16 kHz mono"),
    "corrupt audio": (lambda d: wav_of(d).write_bytes(b"RIFF" + bytes(range(200))),
                      f"{FIRST}: .*: unreadable audio .*re-encode it as 16 kHz mono"),
    "0 samples": (lambda d: sf.write(wav_of(d), np.zeros(0, "float32"), 16000),
                  f"{FIRST}: .*: empty audio \\(0 samples\\)"),
    "8 kHz": (lambda d: sf.write(wav_of(d), np.zeros(8000, "float32"), 8000),
              f"{FIRST}: .*: 8000 Hz, 1 channel\\(s\\); expected 16000 Hz mono \\(resample"),
    "stereo": (lambda d: sf.write(wav_of(d), np.zeros((16000, 2), "float32"), 16000),
               f"{FIRST}: .*: 16000 Hz, 2 channel\\(s\\); expected 16000 Hz mono"),
    "utt missing from text": (lambda d: edit_line(d / "text", lambda _: ""),
                              f"{FIRST}: not in .*/text \\(every table needs"),
    "utt only in utt2spk": (lambda d: edit_line(d / "utt2spk", lambda s: s + "zzz spk9\n", -1),
                            "zzz: in .*/utt2spk but not in .*/wav.scp"),
    "no <lang><task> prefix": (lambda d: edit_line(d / "text", lambda s: s.replace("<eng><asr>", "")),
                               f"{FIRST}: .*/text: text '<notimestamps> .*' does not start with"),
    "unknown language": (lambda d: edit_line(d / "text", lambda s: s.replace("<eng>", "<xyz>")),
                         f"{FIRST}: .*unknown language token <xyz> in text \\(the token list "
                         "has <eng> <deu> <fra> <ita>; fix the text, or add the language to "
                         "--langs and the token list\\)"),
    "unknown task": (lambda d: edit_line(d / "text", lambda s: s.replace("<asr>", "<sum>")),
                     f"{FIRST}: .*unknown task token <sum> in text"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_utterance_stops_with_one_line_or_is_skipped(data, tmp_path, capsys, case):
    break_it, message = BAD[case]
    break_it(data)
    out = tmp_path / "out"
    args = ["--data_dir", str(data), "--out", str(out), "--config", str(CONFIG),
            "--langs", "eng,deu,fra,ita", "--tasks", "asr,st_eng"]
    assert format_data.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("format_data: error: 1 bad utterance(s) in "), err
    assert re.search(message, err), err
    assert err.endswith("; fix them or rerun with --skip_bad_utts)"), err
    assert not (out / "wav.scp").exists()  # nothing half-written

    assert format_data.main(args + ["--skip_bad_utts"]) == 0
    report = (out / "bad_utts").read_text().splitlines()
    assert len(report) == 1 and report[0].split(" ", 1)[0] in (FIRST, "zzz"), report
    kept = (out / "wav.scp").read_text().splitlines()
    n = len((data / "wav.scp").read_text().splitlines())
    assert len(kept) == (n if case == "utt only in utt2spk" else n - 1)
    assert all(not line.startswith(FIRST + " ") for line in kept) or case == "utt only in utt2spk"
    assert validate_data_dir.validate(out, ["eng", "deu"], tasks=["asr", "st_eng"]) == []


@pytest.mark.parametrize("text, where", [
    ("a x\na y\n", ":2: duplicated key 'a' (keep one line per key)"),
    ("a\n", ":1: no value for key 'a' (give it one or delete the line)"),
])
def test_malformed_table_names_file_line_and_key(data, tmp_path, capsys, text, where):
    (data / "utt2spk").write_text(text)
    assert format_data.main(["--data_dir", str(data), "--out", str(tmp_path / "o"),
                             "--config", str(CONFIG)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"format_data: error: {data / 'utt2spk'}{where}", err


def test_too_short_for_subsampling_is_dropped_with_the_minimum(data, tmp_path, capsys):
    import yaml

    conf = yaml.safe_load(CONFIG.read_text())
    from espnet_ext.context.audio import min_samples_for

    assert min_samples_for(conf) == (960, "7 frames of hop 160 for input_layer conv2d")
    conf["encoder_conf"]["input_layer"] = "conv2d8"  # 15 frames: 2240 samples > 0.1 s
    config = tmp_path / "conv2d8.yaml"
    config.write_text(yaml.safe_dump(conf))
    sf.write(wav_of(data), 0.1 * np.ones(2000, "float32"), 16000)
    out = tmp_path / "out"
    assert format_data.main(["--data_dir", str(data), "--out", str(out),
                             "--config", str(config)]) == 0
    assert (out / "bad_utts").read_text() == (
        f"{FIRST} too short: 2000 samples (0.125 s) < 2240 (kept: >= 0.1 s and >= 2240 "
        "samples = 15 frames of hop 160 for input_layer conv2d8)\n")
    assert FIRST not in (out / "wav.scp").read_text()
    # validate_data_dir flags the same utterance up front in the input dir
    problems = validate_data_dir.validate(data, check_audio=True,
                                          min_samples=min_samples_for(conf))
    assert problems == [f"{data}: {FIRST}: 2000 samples, shorter than the 2240 the encoder "
                        "needs (15 frames of hop 160 for input_layer conv2d8); drop it "
                        "(scripts/format_data.py does)"]


def test_validate_names_wrong_audio_and_stale_shapes(data, tmp_path):
    sf.write(wav_of(data), np.zeros(4000, "float32"), 8000)
    (data / "speech_shape").write_text(
        "".join(f"{line.split()[0]} 1000\n" for line in (data / "wav.scp").read_text().splitlines()))
    problems = validate_data_dir.validate(data, check_audio=True, min_samples=(960, "why"))
    assert any(p.startswith(f"{data / 'wav.scp'}: {FIRST}: ") and "8000 Hz, 1 channel(s); "
               "expected 16 kHz mono" in p for p in problems), problems
    assert any(p.startswith(f"{data / 'speech_shape'}: ") and "1000 samples, but " in p
               for p in problems), problems


def test_extraction_of_corrupt_audio_is_one_line(data, capsys):
    context = load_script("context")
    wav_of(data, "spk1_train0001_deu_asr").write_bytes(b"not audio")
    assert context.main(["extract", "--kind", "speaker", "--model", "resemblyzer",
                         "--num_threads", "1", "--batch_size", "4", str(data)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("context: error: utterance spk1_train0001_deu_asr: ")
    assert "unreadable audio" in err and err.endswith(
        "(fix the file or remove the utterance from the data dir (the recipes: "
        "scripts/format_data.py --skip_bad_utts); finished npys are kept and a rerun resumes)")
    # the batches before the bad utterance's were written (a rerun keeps them)
    utts = sorted(line.split()[0] for line in (data / "wav.scp").read_text().splitlines())
    done = utts.index("spk1_train0001_deu_asr") // 4 * 4
    assert done > 0
    assert sorted(p.stem for p in (data / "recordings" / "spk_embed").glob("*.npy")) == utts[:done]


def test_extraction_unknown_model_is_one_line(data, capsys):
    context = load_script("context")
    assert context.main(["extract", "--kind", "event", "--model", "nosuch", str(data)]) == 1
    assert capsys.readouterr().err.strip() == (
        "context: error: unknown event model: nosuch (choose from ['beats', 'tagger'], "
        "name:path, or an existing local checkpoint)")


def test_validate_npy_sizes_name_the_odd_utterance(data, tmp_path):
    npy = tmp_path / "npy"
    npy.mkdir()
    lines = []
    for i, line in enumerate((data / "wav.scp").read_text().splitlines()):
        utt = line.split()[0]
        np.save(npy / f"{utt}.npy", np.zeros(12 if i == 3 else 16, "float32"))
        lines.append(f"{utt} {npy / utt}.npy\n")
    (data / "spk_embed.scp").write_text("".join(lines))
    odd = lines[3].split()[0]
    problems = validate_data_dir.validate(data, check_npy=True)
    assert problems == [f"{data / 'spk_embed.scp'}: {odd}: size 12, the others have 16 "
                        "(re-extract it, recipe stage 3)"], problems
