"""local/europarl_st (data prep, validation, download, OWSM model dir) and
scripts/segment_audio.py on a miniature Europarl-ST v1.1 tree (tests/europarl_fixture.py)."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import europarl_fixture as F
from script_loader import load_file

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def load(name: str, path: Path):
    return load_file(path, name)


prep = load("europarl_st_prepare", ROOT / "local" / "europarl_st" / "prepare.py")
owsm = load("europarl_st_owsm_model", ROOT / "scripts" / "owsm_model.py")
combine = load("europarl_st_combine", ROOT / "local" / "europarl_st" / "combine.py")
seg = load("segment_audio", ROOT / "scripts" / "segment_audio.py")


def table(path: Path) -> dict:
    lines = path.read_text(encoding="utf-8").splitlines()
    keys = [line.split(" ", 1)[0] for line in lines]
    assert keys == sorted(keys, key=str.encode), f"{path} not in C order"
    assert len(set(keys)) == len(keys)
    return dict(line.split(" ", 1) for line in lines)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return F.make_europarl_st(tmp_path_factory.mktemp("epst"))


def copy_tree(corpus, tmp_path) -> Path:
    root = tmp_path / "v1.1"
    shutil.copytree(corpus["root"], root)
    return root


def test_prepare_layout_prefixes_and_counts(corpus, tmp_path):
    summary = prep.prepare(corpus["root"], tmp_path, ["de", "fr", "it"], "en")
    assert set(summary) == {"train", "dev", "test"}
    for split in ("train", "dev", "test"):
        d = tmp_path / split
        text, ctc, segs = table(d / "text"), table(d / "text.ctc"), table(d / "segments")
        # 3 sources x 3 segments x (ASR + ST)
        assert len(text) == 18 and summary[split]["utts"] == 18
        assert set(table(d / "utt2corpus").values()) == {"europarl_st"}
        assert set(table(d / "text.prev").values()) == {"<na>"}
        for utt, line in text.items():
            lang, task = table(d / "utt2lang")[utt], table(d / "utt2task")[utt]
            assert utt.endswith(f"_{lang}_{task}")
            assert line.startswith(f"<{lang}><{task}><notimestamps> ")
            assert utt.startswith(table(d / "utt2spk")[utt] + "_")
        # the line-aligned speakers.lst gives the speaker of every speech
        assert set(table(d / "utt2spk").values()) == {"MEP-DE-0", "MEP-FR-0", "MEP-IT-0"}
        # ST text is the translation, text.ctc the transcript, in segments.lst order
        rows = corpus["segments"][("de", split)]
        speech, start, end, j, _ = rows[1]
        base = f"MEP-DE-0_{speech}_{int(round(start * 1000)):07d}_{int(round(end * 1000)):07d}"
        i = F.SPLITS.index(split)
        assert text[f"{base}_deu_st_eng"] == "<deu><st_eng><notimestamps> " + F.sentence("en", j + 2 * i)
        assert text[f"{base}_deu_asr"] == "<deu><asr><notimestamps> " + F.sentence("de", j + 2 * i)
        assert ctc[f"{base}_deu_st_eng"] == F.sentence("de", j + 2 * i)
        assert segs[f"{base}_deu_asr"] == f"{speech} {start:.3f} {end:.3f}"
        wavs = table(d / "wav.scp")
        assert wavs[speech].endswith(f"de/audios/{speech}.m4a") and Path(wavs[speech]).is_file()
        assert (d / "problems.txt").read_text() == ""


def test_asr_deduplicated_across_target_dirs(corpus, tmp_path):
    # de has de/en and de/es with the same segments: ASR utterances must not double
    prep.prepare(corpus["root"], tmp_path, ["de"], "en", ["train"], asr_pairs="all")
    tasks = list(table(tmp_path / "train" / "utt2task").values())
    assert tasks.count("asr") == 3 and tasks.count("st_eng") == 3


def test_asr_only_and_text_prev(corpus, tmp_path):
    prep.prepare(corpus["root"], tmp_path, ["fr"], "en", ["dev"], tasks=["st"],
                 text_prev="previous")
    text, prev = table(tmp_path / "dev" / "text"), table(tmp_path / "dev" / "text.prev")
    assert all("_st_eng" in u for u in text)
    ordered = sorted(text, key=lambda u: float(table(tmp_path / "dev" / "segments")[u].split()[1]))
    assert prev[ordered[0]] == "<na>"
    for a, b in zip(ordered, ordered[1:]):  # the previous segment's target text
        assert prev[b] == text[a].split("> ", 1)[1]


def test_line_count_mismatch_is_fatal_with_file_and_line(corpus, tmp_path):
    root = copy_tree(corpus, tmp_path)
    f = root / "it" / "en" / "dev" / "segments.en"
    f.write_text("\n".join(f.read_text().splitlines()[:2]) + "\n")
    with pytest.raises(prep.CorpusError) as e:
        prep.prepare(root, tmp_path / "out", ["de", "it"], "en", ["dev"])
    assert f"{f}: 2 lines, but {root / 'it' / 'en' / 'dev' / 'segments.lst'} has 3" in str(e.value)
    assert "line 3 is the first unmatched" in str(e.value)
    out = subprocess.run([sys.executable, str(ROOT / "local" / "europarl_st" / "prepare.py"),
                          "--root", str(root), "--out", str(tmp_path / "o2"), "--src", "it",
                          "--splits", "dev"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.startswith("europarl_st: error: ")


def test_missing_audio_empty_and_malformed_segments_reported(corpus, tmp_path):
    root = copy_tree(corpus, tmp_path)
    speech = corpus["segments"][("fr", "train")][0][0]
    (root / "fr" / "audios" / f"{speech}.m4a").unlink()
    d = root / "de" / "en" / "train"
    src = d.joinpath("segments.de").read_text().splitlines()
    src[1] = "   "
    d.joinpath("segments.de").write_text("\n".join(src) + "\n")
    lst = d.joinpath("segments.lst").read_text().splitlines()
    lst[2] = lst[2].split()[0] + " 3.5"
    d.joinpath("segments.lst").write_text("\n".join(lst) + "\n")
    tgt = (root / "it" / "en" / "train" / "segments.en").read_text().splitlines()
    tgt[0] = ""
    (root / "it" / "en" / "train" / "segments.en").write_text("\n".join(tgt) + "\n")
    prep.prepare(root, tmp_path / "out", ["de", "fr", "it"], "en", ["train"])
    problems = (tmp_path / "out" / "train" / "problems.txt").read_text().splitlines()
    fr_lst = root / "fr" / "en" / "train" / "segments.lst"
    assert problems == [
        f"{d / 'segments.lst'}:3: malformed line (want '<speech_id> <start> <end>'): "
        f"'{lst[2]}'",
        f"{d / 'segments.de'}:2: empty transcript",
        f"{fr_lst}:1: no audio file {root / 'fr' / 'audios' / f'{speech}.m4a'}",
        f"{fr_lst}:2: no audio file {root / 'fr' / 'audios' / f'{speech}.m4a'}",
        f"{fr_lst}:3: no audio file {root / 'fr' / 'audios' / f'{speech}.m4a'}",
        f"{root / 'it' / 'en' / 'train' / 'segments.en'}:1: empty translation",
    ]
    tasks = table(tmp_path / "out" / "train" / "utt2task")
    langs = table(tmp_path / "out" / "train" / "utt2lang")
    got = sorted((langs[u], tasks[u]) for u in tasks)
    # de: segment 1 kept (ASR+ST); fr: none; it: 3 ASR, 2 ST
    assert got == sorted([("deu", "asr"), ("deu", "st_eng")] + [("ita", "asr")] * 3
                         + [("ita", "st_eng")] * 2)


def test_download_and_unpack_from_url(corpus, tmp_path):
    archive = tmp_path / "v1.1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(corpus["root"] / "it", arcname="v1.1/it")
    dl = tmp_path / "downloads"
    root = prep.download(dl, archive.as_uri())
    assert root == dl / "v1.1" and (dl / "v1.1.tar.gz").is_file() and (dl / ".unpacked").is_file()
    prep.prepare(root, tmp_path / "out", ["it"], "en", ["test"])
    assert len(table(tmp_path / "out" / "test" / "text")) == 6
    assert prep.download(dl, "file:///nonexistent/v1.1.tar.gz") == root  # done: not again


def dominant_freq(wav: np.ndarray, fs: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / fs)[np.argmax(spec)])


def test_segment_audio_resamples_and_cuts_the_right_segment(corpus, tmp_path):
    prep.prepare(corpus["root"], tmp_path / "data", ["de", "it"], "en", ["test"])
    out, audio = tmp_path / "seg", tmp_path / "audio"
    stats = seg.segment_data_dir(tmp_path / "data" / "test", out, audio, nj=2)
    assert stats == {"utts": 12, "recordings": 2, "errors": 0}
    wavs, segs = table(out / "wav.scp"), table(tmp_path / "data" / "test" / "segments")
    assert not (out / "segments").exists() and table(out / "text") == table(
        tmp_path / "data" / "test" / "text")
    assert len(set(wavs.values())) == 6  # ASR and ST utterances share their segment's file
    for utt, path in wavs.items():
        rec, start, end = segs[utt].split()
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (16000, 1)
        assert abs(info.frames / 16000 - (float(end) - float(start))) < 0.002
        wav, _ = sf.read(path)
        expected = corpus["freqs"][(rec, round(float(start), 2))]
        assert abs(dominant_freq(wav, 16000) - expected) < 3.0, (utt, expected)
    mtimes = {p: os.path.getmtime(p) for p in set(wavs.values())}
    seg.segment_data_dir(tmp_path / "data" / "test", out, audio, nj=1)  # resumable: untouched
    assert {p: os.path.getmtime(p) for p in mtimes} == mtimes


def test_segment_audio_errors_name_recording_and_file(corpus, tmp_path):
    d = tmp_path / "data"
    prep.prepare(corpus["root"], d, ["de"], "en", ["dev"])
    bad = tmp_path / "broken.m4a"
    bad.write_bytes(b"not audio")
    wav = table(d / "dev" / "wav.scp")
    rec = next(iter(wav))
    (d / "dev" / "wav.scp").write_text(f"{rec} {bad}\n")
    r = seg.main(["--data_dir", str(d / "dev"), "--out", str(tmp_path / "o"),
                  "--audio_dir", str(tmp_path / "a")])
    assert r == 1
    with pytest.raises(RuntimeError, match=f"recording {rec}: {bad}: ffprobe cannot read it"):
        seg.segment_data_dir(d / "dev", tmp_path / "o", tmp_path / "a")
    assert seg.segment_data_dir(d / "dev", tmp_path / "o", tmp_path / "a", skip_bad=True)["utts"] == 0


def test_combine_refuses_duplicates_and_missing_tables(corpus, tmp_path):
    prep.prepare(corpus["root"], tmp_path / "a", ["de"], "en", ["dev"])
    prep.prepare(corpus["root"], tmp_path / "b", ["it"], "en", ["dev"])
    n = combine.combine([tmp_path / "a" / "dev", tmp_path / "b" / "dev"], tmp_path / "c")
    assert n == 12 and len(table(tmp_path / "c" / "segments")) == 12
    with pytest.raises(ValueError, match="ids also in another input"):
        combine.combine([tmp_path / "a" / "dev", tmp_path / "a" / "dev"], tmp_path / "d")
    (tmp_path / "b" / "dev" / "utt2corpus").unlink()
    with pytest.raises(ValueError, match="utt2corpus is in .* but not in"):
        combine.combine([tmp_path / "a" / "dev", tmp_path / "b" / "dev"], tmp_path / "d")


@pytest.fixture(scope="module")
def owsm_dir(tmp_path_factory):
    texts = [f"<{l3}><{t}><notimestamps> " + F.sentence(l2, i) for l2, l3 in
             (("de", "deu"), ("fr", "fra"), ("en", "eng")) for t in ("asr", "st_eng")
             for i in range(8)]
    return F.make_owsm_dir(tmp_path_factory.mktemp("owsm"), texts, vocab_size=80)


def test_owsm_model_dir_is_reused(owsm_dir, tmp_path):
    out = tmp_path / "owsm"
    info = owsm.prepare(str(owsm_dir), out, ROOT / "conf" / "tiny" / "train_s2t_ebf_gated.yaml",
                        ["<deu>", "<fra>", "<asr>", "<st_eng>"])
    import yaml

    conf = yaml.safe_load((owsm_dir / "meta.yaml").read_text())
    model_file = owsm_dir / conf["files"]["s2t_model_file"]
    assert os.path.realpath(out / "model.pth") == str(model_file.resolve())
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (out / "tokens.txt").read_text().split() == cfg["token_list"]
    assert info["num_tokens"] == len(cfg["token_list"]) and info["encoder_blocks"] == 2
    orig = yaml.safe_load(open(owsm_dir / conf["yaml_files"]["s2t_train_config"]))
    assert (out / "bpe.model").read_bytes() == (owsm_dir / orig["bpemodel"]).read_bytes()
    assert cfg["bpemodel"] == str((out / "bpe.model").resolve())
    assert cfg["normalize_conf"]["stats_file"] == str((out / "feats_stats.npz").resolve())
    stats = np.load(out / "feats_stats.npz")
    assert stats["sum"].shape == (40,)
    opts = (out / "train_opts").read_text().split()
    assert opts[opts.index("--normalize") + 1] == "global_mvn"
    assert opts[opts.index("--normalize_conf") + 1] == f"stats_file={out.resolve()}/feats_stats.npz"


def test_owsm_model_checks(owsm_dir, tmp_path):
    with pytest.raises(owsm.ModelError, match="token list lacks <spa_x>"):
        owsm.prepare(str(owsm_dir), tmp_path / "a", None, ["<spa_x>"])
    big = tmp_path / "big.yaml"
    big.write_text((ROOT / "conf" / "tiny" / "train_s2t_ebf_gated.yaml").read_text()
                   .replace("output_size: 32", "output_size: 64"))
    with pytest.raises(owsm.ModelError, match="encoder_conf.output_size: model 32, big.yaml 64"):
        owsm.prepare(str(owsm_dir), tmp_path / "b", big, [])
    with pytest.raises(owsm.ModelError, match="neither a directory nor a hub tag"):
        owsm.prepare(str(tmp_path / "nowhere"), tmp_path / "c")


def test_owsm_hub_download_offline_is_one_line_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "owsm_model.py"),
                          "--model", "espnet/owsm_v3.1_ebf", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert out.stderr.startswith("owsm_model: error: cannot download espnet/owsm_v3.1_ebf "
                                 "from the Hugging Face hub")
    assert len(out.stderr.strip().splitlines()) == 1
