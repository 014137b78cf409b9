"""local/voxforge/prepare.py on archives in the official Voxforge layout
(tests/europarl_fixture.py), and its merge with Europarl-ST under a corpus label."""

import shutil
import tarfile
from pathlib import Path

import pytest
import soundfile as sf

import europarl_fixture as F
from script_loader import load_file

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, path: Path):
    return load_file(path, name)


vf = load("voxforge_prepare", ROOT / "local" / "voxforge" / "prepare.py")
combine = load("europarl_st_combine", ROOT / "local" / "europarl_st" / "combine.py")
seg = load("segment_audio", ROOT / "scripts" / "segment_audio.py")


def table(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    return F.make_voxforge(tmp_path_factory.mktemp("voxforge"))


def test_prepare_from_official_archives(archives, tmp_path):
    counts = vf.prepare(archives["root"], tmp_path / "vf", ["de", "fr", "it"], tmp_path / "work",
                        n_test=1, n_dev=1)
    # 4 sessions (= 4 speakers) per language, 2 prompts each: 1 test, 1 dev, 2 train speakers
    assert counts == {"train": 12, "dev": 6, "test": 6}
    speakers = {}
    for split in ("train", "dev", "test"):
        d = tmp_path / "vf" / split
        text, spk = table(d / "text"), table(d / "utt2spk")
        assert set(table(d / "utt2corpus").values()) == {"voxforge"}
        assert set(table(d / "utt2task").values()) == {"asr"}
        assert set(table(d / "segments").values()) == {f"{r} 0.000 -1" for r in table(d / "wav.scp")}
        for utt, line in text.items():
            lang = table(d / "utt2lang")[utt]
            assert line.startswith(f"<{lang}><asr><notimestamps> ")
            assert table(d / "text.ctc")[utt] == line.split("> ", 1)[1]
            speakers[spk[utt]] = split
    # speakers are disjoint across splits; anonymous sessions are speakers of their own
    assert len(speakers) == 12 and sum(s.startswith("anonymous-") for s in speakers) == 3
    # every prompt of the archives, with its text, is somewhere
    all_text = {}
    for split in ("train", "dev", "test"):
        all_text.update(table(tmp_path / "vf" / split / "text.ctc"))
    for session, prompts in archives["sessions"].items():
        for uid, prompt in prompts:
            hits = [u for u in all_text if f"vf-{session}-{uid}_" in u]
            assert len(hits) == 1 and all_text[hits[0]] == prompt


def test_prompts_fallback_and_problems(archives, tmp_path):
    # unpacked sessions (no archive) with PROMPTS instead of prompts-original, a missing wav
    root = tmp_path / "root"
    for arch in sorted((archives["root"] / "it").rglob("*.tgz")):
        with tarfile.open(arch) as tar:
            tar.extractall(root / "it", filter="data")
    s0 = sorted((root / "it").iterdir())[0]
    orig = (s0 / "etc" / "prompts-original").read_text().splitlines()
    (s0 / "etc" / "prompts-original").unlink()
    (s0 / "etc" / "PROMPTS").write_text("".join(
        f"{s0.name}/mfc/{line.split(' ', 1)[0]} {line.split(' ', 1)[1].upper()}\n" for line in orig))
    uid = orig[1].split()[0]
    (s0 / "wav" / f"{uid}.wav").unlink()
    vf.prepare(root, tmp_path / "vf", ["it"], tmp_path / "work", n_test=1, n_dev=1)
    texts = {}
    for split in ("train", "dev", "test"):
        texts.update(table(tmp_path / "vf" / split / "text.ctc"))
    first = [t for u, t in texts.items() if f"vf-{s0.name}-{orig[0].split()[0]}_" in u]
    assert first == [orig[0].split(" ", 1)[1]]  # lower-cased back from PROMPTS
    assert not [u for u in texts if f"-{uid}_" in u]
    problems = (tmp_path / "vf" / "train" / "problems.txt").read_text().splitlines()
    assert problems == [f"{s0 / 'etc' / 'PROMPTS'}:2: no audio for {uid} in {s0}/wav or flac"]


def test_too_few_speakers_is_an_error(archives, tmp_path):
    with pytest.raises(ValueError, match="4 speakers cannot give 2 test \\+ 2 dev"):
        vf.prepare(archives["root"], tmp_path / "vf", ["de"], tmp_path / "work", 2, 2)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_merge_with_europarl_st_and_resample(archives, tmp_path):
    ep = load("europarl_st_prepare", ROOT / "local" / "europarl_st" / "prepare.py")
    corpus = F.make_europarl_st(tmp_path / "ep", srcs=("de",), extra_targets={})
    ep.prepare(corpus["root"], tmp_path / "ep_data", ["de"], "en", ["dev"])
    vf.prepare(archives["root"], tmp_path / "vf", ["de"], tmp_path / "work", 1, 1)
    n = combine.combine([tmp_path / "ep_data" / "dev", tmp_path / "vf" / "dev"], tmp_path / "dev")
    assert n == 6 + 2
    corpus_of = table(tmp_path / "dev" / "utt2corpus")
    assert sorted(corpus_of.values()) == ["europarl_st"] * 6 + ["voxforge"] * 2
    seg.segment_data_dir(tmp_path / "dev", tmp_path / "seg", tmp_path / "audio")
    for utt, path in table(tmp_path / "seg" / "wav.scp").items():
        info = sf.info(path)
        assert info.samplerate == 16000 and info.channels == 1
        if corpus_of[utt] == "voxforge":  # a whole 48 kHz prompt of 0.8 s
            assert abs(info.frames - 0.8 * 16000) <= 2
    assert table(tmp_path / "seg" / "utt2corpus") == corpus_of
