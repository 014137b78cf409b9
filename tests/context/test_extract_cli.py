import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import espnet_ext
from espnet_ext.bin import extract_context, train_event_tagger
from espnet_ext.context.audio import AudioError, DataDirReader

pytestmark = pytest.mark.usefixtures("one_thread")

RATE = 16000
GAP = np.zeros(int(0.3 * RATE), dtype=np.float32)


@pytest.fixture
def data_dir(tmp_path, speech, sig):
    """Two recordings cut by `segments`: one 16 kHz file, one 22.05 kHz file
    read through a pipe."""
    import soxr

    data = tmp_path / "data" / "dev"
    data.mkdir(parents=True)
    segments, wav_scp = [], []
    for rec, spk, rate in (("recA", "en_m3", 16000), ("recB", "de_f4", 22050)):
        pieces, pos = [], 0.0
        for i, wav in enumerate(speech[spk][:3]):
            pieces += [wav, GAP]
            end = pos + len(wav) / RATE
            segments.append(f"{rec}-{i} {rec} {pos:.6f} {end:.6f}")
            pos = end + len(GAP) / RATE
        signal = np.concatenate(pieces)
        path = sig.write_wav(
            tmp_path / "audio" / f"{rec}.wav", soxr.resample(signal, RATE, rate), rate
        )
        wav_scp.append(f"{rec} {path}" if rate == RATE else f"{rec} cat {path} |")
    segments[-1] = " ".join(segments[-1].split()[:3] + ["-1"])  # to the end
    (data / "wav.scp").write_text("\n".join(wav_scp) + "\n")
    (data / "segments").write_text("\n".join(segments) + "\n")
    return data


def run_cli(*args: str) -> subprocess.CompletedProcess:
    # The subprocess imports the same espnet_ext as this test process: a
    # source checkout goes on PYTHONPATH, an installed copy is found anyway
    # (site-packages on PYTHONPATH would shadow the standard library).
    root = Path(espnet_ext.__file__).resolve().parents[1]
    env = dict(os.environ)
    if root != Path(sysconfig.get_paths()["purelib"]).resolve():
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "espnet_ext.bin.extract_context", "--num_threads", "1"]
        + list(args),
        capture_output=True,
        text=True,
        env=env,
    )


def test_reader_segments_pipe_and_resampling(data_dir, speech):
    reader = DataDirReader(data_dir)
    assert reader.utt_ids == [f"rec{r}-{i}" for r in "AB" for i in range(3)]
    a1 = reader.read("recA-1")
    # 16-bit wav: clipped to [-1, 1), quantised
    np.testing.assert_allclose(a1, np.clip(speech["en_m3"][1], -1, 1), atol=1e-4)
    b0 = reader.read("recB-0")  # 22.05 kHz through `cat ... |`, resampled
    assert b0.dtype == np.float32 and abs(len(b0) - len(speech["de_f4"][0])) <= 2
    b2 = reader.read("recB-2")  # end -1: to the end of the recording
    assert abs(len(b2) - len(speech["de_f4"][2]) - len(GAP)) <= 2


def test_extract_segments_and_resume(data_dir, tmp_path, caplog):
    out = tmp_path / "dump" / "dev"
    args = [
        "--kind",
        "speaker",
        "--model",
        "resemblyzer",
        "--data_dir",
        str(data_dir),
        "--out",
        str(out),
        "--batch_size",
        "4",
    ]
    extract_context.main(args)
    lines = (out / "spk_embed.scp").read_text().splitlines()
    utts = [line.split()[0] for line in lines]
    assert utts == sorted(f"rec{r}-{i}" for r in "AB" for i in range(3))
    paths = [Path(line.split()[1]) for line in lines]
    assert all(
        p.is_absolute() and p.parent == (out / "spk_embed").resolve() for p in paths
    )
    vecs = [np.load(p) for p in paths]
    assert all(v.shape == (256,) and v.dtype == np.float32 for v in vecs)
    # Speaker A's three segments are closer to each other than to speaker B's.
    sim = np.stack(vecs) @ np.stack(vecs).T
    assert sim[0, 1] > sim[0, 3] and sim[3, 4] > sim[3, 0]
    assert not list(out.glob("**/*.tmp"))

    # Rerun: nothing recomputed, nothing rewritten.
    mtimes = [p.stat().st_mtime_ns for p in paths]
    caplog.clear()
    with caplog.at_level("INFO"):
        extract_context.main(args)
    assert [p.stat().st_mtime_ns for p in paths] == mtimes
    assert "6 already done, 0 to extract" in caplog.text

    # A missing and a truncated npy are redone, the rest skipped.
    paths[0].unlink()
    paths[4].write_bytes(paths[4].read_bytes()[:40])
    counts = extract_context.extract(
        "speaker", "resemblyzer", data_dir, out, batch_size=4
    )
    assert counts == {"total": 6, "skipped": 4, "extracted": 2}
    np.testing.assert_allclose(np.load(paths[0]), vecs[0], atol=1e-6)
    np.testing.assert_allclose(np.load(paths[4]), vecs[4], atol=1e-6)


def test_empty_recording_fails_and_keeps_earlier(tmp_path, speech, sig):
    data = tmp_path / "data"
    good = [
        sig.write_wav(tmp_path / f"{u}.wav", speech["fr_m5"][i])
        for i, u in enumerate(("u1", "u2"))
    ]
    (data / "wav.scp").parent.mkdir()
    (data / "wav.scp").write_text(
        "".join(f"u{i + 1} {p}\n" for i, p in enumerate(good))
    )
    out = tmp_path / "out"
    first = run_cli(
        "--kind",
        "speaker",
        "--model",
        "resemblyzer",
        "--data_dir",
        str(data),
        "--out",
        str(out),
    )
    assert first.returncode == 0, first.stderr
    scp = (out / "spk_embed.scp").read_text()

    empty = tmp_path / "u3.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), RATE)
    fresh = sig.write_wav(tmp_path / "u0.wav", speech["fr_m5"][2])
    with open(data / "wav.scp", "a") as f:
        f.write(f"u3 {empty}\nu0 {fresh}\n")
    proc = run_cli(
        "--kind",
        "speaker",
        "--model",
        "resemblyzer",
        "--data_dir",
        str(data),
        "--out",
        str(out),
        "--batch_size",
        "1",
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    assert "u3" in errors[0] and str(empty) in errors[0] and "empty" in errors[0]
    assert "Traceback" not in proc.stderr
    # Earlier vectors stay, the one before the bad utterance was written,
    # and the scp of the last good run is untouched.
    assert sorted(p.name for p in (out / "spk_embed").iterdir()) == [
        "u0.npy",
        "u1.npy",
        "u2.npy",
    ]
    assert (out / "spk_embed.scp").read_text() == scp


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b"RIFF garbage"), "unreadable audio"),
        (
            lambda p: sf.write(p, np.zeros((1600, 2), dtype=np.float32), RATE),
            "2 channels, expected mono",
        ),
        (lambda p: None, "no such file"),
    ],
)
def test_bad_audio_error_line(tmp_path, capsys, make, reason):
    bad = tmp_path / "bad.wav"
    make(bad)
    (tmp_path / "wav.scp").write_text(f"spk1-bad {bad}\n")
    with pytest.raises(SystemExit) as exc:
        extract_context.main(
            [
                "--kind",
                "speaker",
                "--model",
                "resemblyzer",
                "--data_dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("extract_context: error: utterance spk1-bad: ")
    assert str(bad) in err and reason in err


def test_reader_errors(tmp_path, speech, sig):
    path = sig.write_wav(tmp_path / "r.wav", speech["it_f3"][0])
    (tmp_path / "wav.scp").write_text(f"r {path}\nq false |\n")
    (tmp_path / "segments").write_text("r-late r 100.0 101.0\nq-0 q 0 1\n")
    reader = DataDirReader(tmp_path)
    with pytest.raises(
        AudioError, match=r"utterance r-late: .*r.wav: segment 100.0-101.0 s"
    ):
        reader.read("r-late")
    with pytest.raises(AudioError, match=r"utterance q-0: false \|: command exited 1"):
        reader.read("q-0")
    (tmp_path / "segments").write_text("x r 0 1\nx r 1 2\n")
    with pytest.raises(ValueError, match="duplicated key 'x'"):
        DataDirReader(tmp_path)


def test_train_tagger_then_extract(tmp_path, speech, sig):
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    scp, labels = [], []
    for spk in ("en_f2", "it_f3"):
        for i, wav in enumerate(speech[spk][:4]):
            label = ("alarm", "rumble")[i % 2]
            utt = f"{spk}-{i}"
            path = sig.write_wav(
                tmp_path / "wav" / f"{utt}.wav",
                sig.mix(wav, sig.events[label](len(wav), rng), 5),
            )
            scp.append(f"{utt} {path}\n")
            labels.append(f"{utt} {label}\n")
    data.mkdir()
    (data / "wav.scp").write_text("".join(scp))
    (data / "utt2event").write_text("".join(labels))
    ckpt = tmp_path / "exp" / "tagger.pth"
    train_event_tagger.main(
        [
            "--data_dir",
            str(data),
            "--out",
            str(ckpt),
            "--epochs",
            "2",
            "--channels",
            "4",
            "8",
            "--embed_dim",
            "16",
            "--crop_seconds",
            "1",
        ]
    )
    out = tmp_path / "dump"
    extract_context.main(
        [
            "--kind",
            "event",
            "--model",
            str(ckpt),
            "--data_dir",
            str(data),
            "--out",
            str(out),
        ]
    )
    lines = (out / "event_embed.scp").read_text().splitlines()
    assert len(lines) == 8
    assert np.load(lines[0].split()[1]).shape == (16,)
