"""run.sh --wer_norm of the three S2T recipes: stage 8 alone on hand-made decodings, the option
reaching scripts/score.py through pipeline.sh's score_opts, and a change of it rescoring."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETS = ["test_eng_asr", "test_deu_asr", "test_fra_asr", "test_ita_asr",
        "test_deu_st_eng", "test_fra_st_eng", "test_ita_st_eng"]
MODELS = ["full", "gated", "gated_spk", "gated_event"]  # the tiny preset's (mini), a superset elsewhere


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """dump/raw/<set>/text and exp/<model>/decode_<set>/1best_recog/text: per set two utterances,
    the hypotheses cased, punctuated and in American spelling."""
    tmp = tmp_path_factory.mktemp("wer_norm_recipes")
    for s in SETS:
        _, lang, task = s.split("_", 2)
        (tmp / "dump" / "raw" / s).mkdir(parents=True)
        (tmp / "dump" / "raw" / s / "text").write_text(
            "".join(f"{k} <{lang}><{task}><notimestamps> {t}\n"
                    for k, t in (("u1", "hello world"), ("u2", "good bye colour"))))
        for m in MODELS:
            d = tmp / "exp" / m / f"decode_{s}" / "1best_recog"
            d.mkdir(parents=True)
            (d / "text").write_text("u1 Hello, world!\nu2 good bye color\n")
    return tmp


def run(recipe: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["./run.sh", "--stage", "8", "--stop_stage", "8", "--datadir", str(tmp / "data"),
                           "--dumpdir", str(tmp / "dump"), "--expdir", str(tmp / "exp"), *extra],
                          cwd=ROOT / "egs2" / recipe / "s2t1", capture_output=True, text=True, env=env)


def score_lines(tmp: Path) -> list:
    return [line for line in (tmp / "exp" / "commands.sh").read_text().splitlines() if "score.py" in line]


def wers(tmp: Path, model: str = "full") -> dict:
    sc = json.loads((tmp / "exp" / model / "scores.json").read_text())
    return {s: (r["wer_norm"], r["wer"]) for s, r in sc["subsets"].items() if s.endswith("_asr")}


# eng: "Hello, world!" / "good bye color" against "hello world" / "good bye colour"
RAW, BASIC, ENGLISH = ("raw", 60.0), ("whisper_basic", 20.0), ("whisper_english", 0.0)


@pytest.mark.parametrize("recipe, extra, norm, expected", [
    ("mini_europarl", ["--preset", "tiny"], "raw", {s: RAW for s in SETS[:4]}),
    ("europarl_st", [], "whisper_english", {s: BASIC for s in SETS[1:4]}),  # de/fr/it: basic
    ("TEMPLATE", [], "whisper_basic", {s: BASIC for s in SETS[:4]}),
])
def test_run_sh_wer_norm_reaches_score_py(decoded, tmp_path, recipe, extra, norm, expected):
    shutil.copytree(decoded / "dump", tmp_path / "dump")
    shutil.copytree(decoded / "exp", tmp_path / "exp")
    proc = run(recipe, tmp_path, *extra, "--wer_norm", norm)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = score_lines(tmp_path)
    assert len(lines) >= 2 and all(f" --wer_norm {norm} " in line for line in lines)
    assert wers(tmp_path) == expected
    # the same options again: nothing to score; another convention: every model scored again
    assert run(recipe, tmp_path, *extra, "--wer_norm", norm).returncode == 0
    assert score_lines(tmp_path) == lines
    proc = run(recipe, tmp_path, *extra)  # the default
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(score_lines(tmp_path)) == 2 * len(lines)
    assert all(w[0] == "ours" for w in wers(tmp_path, "gated").values())
    assert wers(tmp_path)[SETS[1]] == ("ours", 20.0)  # colour / color; case and commas gone


@pytest.mark.parametrize("recipe", ["mini_europarl", "europarl_st", "TEMPLATE"])
def test_unknown_wer_norm_is_a_one_line_error_before_anything_is_written(tmp_path, recipe):
    proc = run(recipe, tmp_path, "--wer_norm", "whisper")
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("--wer_norm whisper: ours, raw, whisper_basic or whisper_english")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "exp").exists()
