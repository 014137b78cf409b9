"""Tests for local/mini_europarl, the synthetic Europarl-ST stand-in."""

import hashlib
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from script_loader import load_file

DIR = Path(__file__).resolve().parents[2] / "local" / "mini_europarl"

# the generator's files import each other by name (`import sentences`): loaded in dependency
# order, each is in sys.modules under that name before the next one imports it
sentences = load_file(DIR / "sentences.py")
events = load_file(DIR / "events.py")
voices = load_file(DIR / "voices.py")
make_corpus = load_file(DIR / "make_corpus.py")

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed")

TINY = dict(pretrain=2, train=2, dev=2, test=2)
ISO3_TO_LANG = {v: k for k, v in sentences.ISO3.items()}


def _sample(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(sentences.num_sentences(), size=n, replace=False).tolist())


# ----- sentences -------------------------------------------------------------

def test_num_distinct_sentences():
    assert sentences.num_sentences() >= 2000, sentences.num_sentences()
    indices = _sample()
    for lang in sentences.LANGS:
        texts = sentences.all_sentences(lang, indices)
        assert len(set(texts)) == len(indices), (lang, len(set(texts)), len(indices))


def test_parallel_slots():
    """The four translations of an id are built from the same table rows."""
    for index in _sample(300, seed=1):
        s, v, o, p, t = sentences._slots(index)
        number, subject = sentences.SUBJECTS[s]
        text = {lang: sentences.normalize(x) for lang, x in sentences.sentence(index).items()}
        assert set(text) == set(sentences.LANGS), text
        for lang in sentences.LANGS:
            norm = sentences.normalize
            assert text[lang].startswith(norm(subject[lang]) + " "), (lang, text[lang])
            for phrase in (sentences.OBJECTS[o][lang], sentences.TOPICS[p][lang],
                           sentences.TIMES[t][lang]):
                assert f" {norm(phrase)}" in text[lang], (lang, phrase, text[lang])
            verb = sentences.VERBS[v][lang][0 if number == "sg" else 1]
            head, _, particle = verb.partition(" … ")
            assert f" {norm(head)} " in text[lang], (lang, verb, text[lang])
            if particle:
                assert text[lang].endswith(" " + particle), (lang, text[lang])


def test_agreement_examples():
    def find(**slots):
        sizes = [len(t) for t in sentences._TABLES]
        index = 0
        for k, n in zip("svopt", sizes):
            index = index * n + slots[k]
        return sentences.sentence(index)

    # plural subject, separable German verb, Italian contraction sull'
    x = find(s=8, v=1, o=0, p=2, t=1)
    assert x["en"] == "The members reject the report on energy tomorrow.", x
    assert x["de"] == "Die Abgeordneten lehnen morgen den Bericht über die Energie ab.", x
    assert x["fr"] == "Les députés rejettent le rapport sur l'énergie demain.", x
    assert x["it"] == "I deputati respingono la relazione sull'energia domani.", x
    assert sentences.normalize(x["it"]) == "i deputati respingono la relazione sull energia domani"


def test_normalize():
    assert sentences.normalize("Le Comité, aujourd'hui: l'après-midi!") == \
        "le comité aujourd hui l après midi"


def test_splits_disjoint_and_stable():
    sizes = dict(pretrain=300, train=200, dev=50, test=40)
    splits = sentences.make_splits(sizes, seed=3)
    assert {k: len(v) for k, v in splits.items()} == sizes
    for a, b in combinations(splits, 2):
        common = set(splits[a]) & set(splits[b])
        assert not common, (a, b, sorted(common)[:5])
    assert splits == sentences.make_splits(sizes, seed=3)
    assert splits["train"] != sentences.make_splits(sizes, seed=4)["train"]
    # dev/test do not move when only the train/pretrain sizes change
    other = sentences.make_splits(dict(sizes, pretrain=10, train=500), seed=3)
    assert other["dev"] == splits["dev"] and other["test"] == splits["test"]


def test_bad_options():
    with pytest.raises(ValueError, match="valid"):
        sentences.make_splits({"valid": 3}, seed=0)
    with pytest.raises(ValueError, match="asked for"):
        sentences.make_splits({"train": sentences.num_sentences() + 1}, seed=0)
    with pytest.raises(ValueError, match="trian=3"):
        make_corpus.parse_sizes("trian=3")
    with pytest.raises(ValueError, match="20,0"):
        make_corpus.parse_range("20,0")
    with pytest.raises(ValueError, match="99"):
        voices.voices("de", 99)
    with pytest.raises(ValueError, match="xx"):
        voices.voices("xx", 8)
    with pytest.raises(ValueError, match="thunder"):
        events.make_noise("thunder", 100, np.random.default_rng(0))
    with pytest.raises(ValueError, match="thunder"):
        make_corpus.plan(TINY, 0, 8, ["clean", "thunder"], (0, 20), Path("/tmp"))


# ----- events ----------------------------------------------------------------

def test_events():
    assert "clean" in events.EVENTS and len(events.EVENTS) >= 5, events.EVENTS
    n = 16000 * 3
    for kind in events.EVENTS:
        x = events.make_noise(kind, n, np.random.default_rng(0))
        assert x.shape == (n,) and np.isfinite(x).all(), (kind, x.shape)
        rms = np.sqrt(np.mean(x ** 2))
        assert np.isclose(rms, 0.0 if kind == "clean" else 1.0), (kind, rms)
        y = events.make_noise(kind, n, np.random.default_rng(0))
        assert np.array_equal(x, y), kind


@pytest.mark.parametrize("kind", ["babble", "music", "traffic", "rain", "alarm", "white"])
@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
def test_mix_snr(kind, snr):
    rng = np.random.default_rng(1)
    speech = 0.9 * np.sin(np.linspace(0, 2000, 32000)) * rng.uniform(0, 1, 32000)
    speech, noise = events.mix(speech, events.make_noise(kind, 32000, rng), snr)
    assert abs(events.snr_db(speech, noise) - snr) < 1e-6, (kind, snr)
    assert np.abs(speech + noise).max() <= 0.95 + 1e-9


# ----- voices ----------------------------------------------------------------

@needs_espeak
@pytest.mark.parametrize("lang", sentences.LANGS)
def test_distinct_voices(lang):
    spks = voices.voices(lang, 8)
    assert len({v.spk for v in spks}) == 8, spks
    assert len({(v.name, v.pitch, v.speed) for v in spks}) == 8, spks
    text = sentences.sentence(1234)[lang]
    audio = [voices.synthesize(text, v) for v in spks]
    digests = {hashlib.md5(a.tobytes()).hexdigest() for a in audio}
    assert len(digests) == 8, (lang, len(digests))
    for v, a in zip(spks, audio):
        assert a.dtype == np.float32 and len(a) > voices.SAMPLE_RATE, (v, a.shape)
        assert np.sqrt(np.mean(a ** 2)) > 0.01, (v, "silent")
    # fixed per speaker id
    assert np.array_equal(audio[0], voices.synthesize(text, spks[0]))


# ----- whole corpus ----------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    out = tmp_path_factory.mktemp("mini_europarl")
    recs = make_corpus.prepare_mini_europarl(out, TINY, seed=0, nj=2)
    return out, recs


def _tables(data_dir):
    return {name: make_corpus.read_table(data_dir / name)
            for name in make_corpus.DATA_FILES + ("spk2utt",)}


def test_kaldi_dirs(corpus):
    out, recs = corpus
    ids = {}
    for split in sentences.SPLITS:
        data_dir = out / split
        t = _tables(data_dir)  # also checks C sort order and unique keys
        utts = list(t["wav.scp"])
        # 2 sentences x (en: asr; de/fr/it: asr + st)
        assert len(utts) == TINY[split] * 7, (split, len(utts))
        for name in make_corpus.DATA_FILES:
            assert list(t[name]) == utts, (split, name)
        assert sorted(u for us in t["spk2utt"].values() for u in us.split()) == sorted(utts)
        for utt in utts:
            spk, lang3, task = t["utt2spk"][utt], t["utt2lang"][utt], t["utt2task"][utt]
            assert utt.startswith(spk + "-") and spk.startswith(lang3 + "_"), (utt, spk)
            lang = ISO3_TO_LANG[lang3]
            index = int(utt.split("-")[1][1:])
            ids.setdefault(split, set()).add(index)
            text = sentences.sentence(index)
            prefix, _, target = t["text"][utt].partition(" ")
            assert prefix == f"<{lang3}><{task}><notimestamps>", (utt, prefix)
            assert t["text.ctc"][utt] == sentences.normalize(text[lang]), utt
            assert t["text.prev"][utt] == "<na>"
            if task == "st_eng":
                assert lang != "en", utt
                assert target == sentences.normalize(text["en"]), (utt, target)
            else:
                assert task == "asr" and target == t["text.ctc"][utt], (utt, target)
            assert t["utt2event"][utt] in events.EVENTS, utt
            snr = float(t["utt2snr"][utt])
            assert (snr == float("inf")) == (t["utt2event"][utt] == "clean"), (utt, snr)
            assert np.isinf(snr) or 0 <= snr <= 20, (utt, snr)
            info = sf.info(t["wav.scp"][utt])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), info
            assert info.frames > 16000, (utt, info.frames)
        make_corpus.validate_data_dir(data_dir)
    # the same sentences in every language, and no sentence in two splits
    for a, b in combinations(ids, 2):
        assert not ids[a] & ids[b], (a, b, ids[a] & ids[b])
    for split in sentences.SPLITS:
        by_lang = {}
        for r in recs[split]:
            by_lang.setdefault(r.lang, set()).add(r.index)
        assert all(v == by_lang["en"] for v in by_lang.values()), (split, by_lang)


def test_measured_snr(corpus):
    out, recs = corpus
    noisy = [r for split in recs for r in recs[split] if r.event != "clean"][:3]
    assert noisy, "no noisy recording in the tiny corpus"
    for rec in noisy:
        speech, noise = make_corpus.render(rec)
        assert abs(events.snr_db(speech, noise) - rec.snr) < 0.5, (rec.rec, rec.snr)
        written, rate = sf.read(rec.path, dtype="int16")
        assert rate == 16000
        assert np.array_equal(written, make_corpus.to_pcm16(speech + noise)), rec.rec
        measured = events.snr_db(speech, written / 32767 - speech)
        assert abs(measured - rec.snr) < 0.5, (rec.rec, rec.snr, measured)


def test_determinism_and_resume(corpus, tmp_path):
    out, recs = corpus
    again = make_corpus.prepare_mini_europarl(tmp_path / "again", TINY, seed=0, nj=1)
    for split in sentences.SPLITS:
        for name in make_corpus.DATA_FILES + ("spk2utt",):
            a = (out / split / name).read_text()
            b = (tmp_path / "again" / split / name).read_text()
            if name == "wav.scp":
                a, b = a.replace(str(out), ""), b.replace(str(tmp_path / "again"), "")
            assert a == b, (split, name)
    for r1, r2 in list(zip(recs["train"], again["train"]))[:3]:
        assert r1.rec == r2.rec
        assert Path(r1.path).read_bytes() == Path(r2.path).read_bytes(), r1.rec
    # a rerun skips what exists; another seed in the same dir is refused
    mtimes = {r.path: Path(r.path).stat().st_mtime_ns for r in recs["dev"]}
    make_corpus.prepare_mini_europarl(out, TINY, seed=0, nj=2)
    assert mtimes == {p: Path(p).stat().st_mtime_ns for p in mtimes}
    with pytest.raises(ValueError, match="seed"):
        make_corpus.prepare_mini_europarl(out, TINY, seed=1, nj=1)


def test_events_and_speakers_spread():
    recs = make_corpus.plan(dict(train=70), 0, 8, events.EVENTS, (0, 20), Path("/tmp/x"))
    for lang in sentences.LANGS:
        mine = [r for r in recs["train"] if r.lang == lang]
        counts = np.unique([r.event for r in mine], return_counts=True)[1]
        assert len(counts) == len(events.EVENTS) and counts.max() - counts.min() <= 1, counts
        counts = np.unique([r.voice.spk for r in mine], return_counts=True)[1]
        assert len(counts) == 8 and counts.max() - counts.min() <= 1, counts
