"""egs2/TEMPLATE/s2t1/run.sh, the "your own corpus" recipe, end to end on a fixture corpus:
Kaldi dirs as a user would bring them (long German recordings at 44.1 kHz stereo with a
segments file, ASR and ST utterances sharing segments; English recordings at 22.05 kHz
mono, one utterance each) and a miniature OWSM-format model (tests/europarl_fixture.py).
Stages 1-9 with conf/tiny: the recipe is options + one call of egs2/TEMPLATE/pipeline.sh."""

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import europarl_fixture as F

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")]

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "TEMPLATE" / "s2t1"


SETS = ("test_deu_asr", "test_deu_st_eng", "test_eng_asr")
MODELS = ("full", "gated")


def write_table(path: Path, rows: dict) -> None:
    path.write_text("".join(f"{k} {rows[k]}\n" for k in sorted(rows)), encoding="utf-8")


def make_corpus(root: Path, n_rec: dict) -> list:
    """Kaldi dirs <root>/{train,dev,test}; returns every text line (for the BPE)."""
    texts, rng = [], np.random.default_rng(0)
    for split, n in n_rec.items():
        d = root / split
        (d / "audio").mkdir(parents=True)
        tab = {f: {} for f in ("wav.scp", "segments", "text", "text.ctc", "text.prev", "utt2spk")}
        for r in range(n):  # German talk: 3 segments, each with an ASR and an ST utterance
            spk, rec = f"de{split}{r}", f"de{split}{r}-talk"
            parts, segs, t = [], [], 0.0
            for s in range(3):
                i = 3 * r + s + (0 if split == "train" else 11 * len(split))
                tone = 0.3 * np.sin(2 * np.pi * (250 + 60 * (i % 9)) * np.arange(int(0.6 * 44100)) / 44100)
                parts += [np.zeros(int(0.2 * 44100)), tone]
                segs.append((t + 0.2, t + 0.8, i))
                t += 0.8
            audio = np.concatenate(parts + [np.zeros(4410)])
            stereo = np.stack([audio, 0.5 * audio + 0.01 * rng.standard_normal(audio.size)], 1)
            sf.write(d / "audio" / f"{rec}.wav", stereo, 44100)
            tab["wav.scp"][rec] = str(d / "audio" / f"{rec}.wav")
            for s, (b, e, i) in enumerate(segs):
                for task, target in (("asr", F.sentence("de", i)), ("st_eng", F.sentence("en", i))):
                    utt = f"{spk}-{s:02d}-{task}"
                    tab["segments"][utt] = f"{rec} {b:.2f} {e:.2f}"
                    tab["text"][utt] = f"<deu><{task}><notimestamps> {target}"
                    tab["text.ctc"][utt] = F.sentence("de", i)
                    tab["text.prev"][utt] = "<na>"
                    tab["utt2spk"][utt] = spk
        for r in range(n):  # English: one utterance per 22.05 kHz mono recording
            spk = f"en{split}{r}"
            utt = f"{spk}-00-asr"
            tone = 0.3 * np.sin(2 * np.pi * (500 + 70 * r) * np.arange(int(0.7 * 22050)) / 22050)
            sf.write(d / "audio" / f"{utt}.wav", np.concatenate([np.zeros(2205), tone, np.zeros(2205)]), 22050)
            tab["wav.scp"][utt] = str(d / "audio" / f"{utt}.wav")
            tab["segments"][utt] = f"{utt} 0.00 -1"
            tab["text"][utt] = f"<eng><asr><notimestamps> {F.sentence('en', r)}"
            tab["text.ctc"][utt] = F.sentence("en", r)
            tab["text.prev"][utt] = "<na>"
            tab["utt2spk"][utt] = spk
        for f, rows in tab.items():
            write_table(d / f, rows)
        texts += list(tab["text"].values()) + list(tab["text.ctc"].values())
    return texts


def run_recipe(tmp: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["./run.sh", "--data_root", str(tmp / "corpus"), "--owsm_model", str(tmp / "owsm"),
           "--conf_dir", "conf/tiny", "--datadir", str(tmp / "data"), "--dumpdir", str(tmp / "dump"),
           "--expdir", str(tmp / "exp"), "--results", str(tmp / "RESULTS.md"), "--nj", "2",
           "--train_nj", "2", "--profile_num_utts", "2", "--profile_repeats", "1",
           "--profile_opts", "--no_memory", *extra]
    proc = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("template_recipe")
    texts = make_corpus(tmp / "corpus", {"train": 3, "dev": 1, "test": 1})
    F.make_owsm_dir(tmp / "owsm", texts, vocab_size=80)
    proc = run_recipe(tmp)
    return tmp, proc.stdout + proc.stderr


def table(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


def test_audio_resampled_segmented_and_split_by_language_and_task(recipe):
    tmp, _ = recipe
    raw = tmp / "dump" / "raw"
    assert sorted(p.name for p in raw.glob("test_*_*")) == list(SETS)
    assert len(table(raw / "test_deu_st_eng" / "text")) == 3 and len(table(raw / "test_eng_asr" / "text")) == 1
    for utt, path in table(raw / "train" / "wav.scp").items():
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (16000, 1), utt
        # a German segment is 0.6 s of tone; an English recording 0.9 s in all
        assert abs(info.duration - (0.6 if utt.startswith("de") else 0.9)) < 0.02, (utt, info.duration)
    wav = table(raw / "train" / "wav.scp")  # ASR and ST utterances of a segment share a file
    assert wav["detrain0-01-asr"] == wav["detrain0-01-st_eng"]


def test_models_trained_from_the_pretrained_model_decoded_and_scored(recipe):
    tmp, log = recipe
    exp, raw = tmp / "exp", tmp / "dump" / "raw"
    import yaml

    for m in MODELS:
        cfg = yaml.safe_load((exp / m / "config.yaml").read_text())
        assert cfg["init_param"] == [str(exp / "owsm" / "model.pth")]
        scores = json.loads((exp / m / "scores.json").read_text())
        assert set(scores["subsets"]) == set(SETS)
        for s in SETS:
            hyps = table(exp / m / f"decode_{s}" / "1best_recog" / "text")
            assert set(hyps) == set(table(raw / s / "text"))
            metric = "bleu" if "_st_" in s else "wer"
            assert math.isfinite(scores["subsets"][s][metric])
    assert yaml.safe_load((exp / "gated" / "config.yaml").read_text())["encoder_conf"]["gate_context"] == ["lang", "task"]
    enc = table(exp / "gated" / "decode_test_deu_st_eng" / "gates" / "encoder")
    assert len(enc) == 3 and all(set(v) <= set("01 ") for v in enc.values())
    for k in range(1, 10):
        assert f"Stage {k}: " in log
    assert "(pipeline.sh:" in log  # the shared stages log where they run


def test_results_and_gate_patterns(recipe):
    tmp, _ = recipe
    eff = json.loads((tmp / "exp" / "efficiency" / "test_deu_st_eng.json").read_text())
    assert set(eff["models"]) == {*MODELS, "full@espnet"}
    assert (tmp / "exp" / "plots" / "gate_factors_gated.json").is_file()
    md = (tmp / "RESULTS.md").read_text()
    for part in ("# RESULTS: TEMPLATE S2T, context-aware dynamic pruning of owsm",
                 "deu_st_eng bleu", "eng_asr wer", "## Do the models listen?",
                 "## Difference vs full (paired bootstrap, 95% CI, p)", "## Efficiency", "## Commands"):
        assert part in md, part
    # the listening table and the bootstrap rest on stage 8's checks and per-utterance data
    compare = json.loads((tmp / "exp" / "compare.json").read_text())
    assert set(compare["models"]) == set(MODELS) - {"full"}
    for m in MODELS:
        for s, r in json.loads((tmp / "exp" / m / "scores.json").read_text())["subsets"].items():
            assert all(f"**Warning**: {m} {s}: {w}." in md for w in r["warnings"]), (m, s)


def test_rerun_skips_finished_work_and_bad_input_is_one_line(recipe, tmp_path):
    tmp, _ = recipe
    log = run_recipe(tmp).stdout
    for k in (1, 2, 4, 5, 6, 7, 8, 9):
        assert f"Stage {k}: nothing to do (finished before)" in log, k
    proc = run_recipe(tmp, "--data_root", str(tmp_path / "none"), "--datadir", str(tmp_path / "d"),
                      "--expdir", str(tmp_path / "e"), "--stop_stage", "1", check=False)
    assert proc.returncode != 0
    assert f"{tmp_path / 'none'}/train: no such Kaldi dir" in proc.stderr
