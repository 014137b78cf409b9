"""README.md's "Your own corpus" commands, exactly as the README has them, on a corpus of the
test's own: 15 espeak-ng recordings (English, French, Italian ASR; sentences the mini corpus
does not have; 22.05 kHz, one utterance each), Kaldi dirs as a user brings them, and the
mini OWSM the repository ships. The commands run from the root of a scratch tree that links
the repository's egs2/TEMPLATE, egs2/mini_europarl, scripts and conf (the copy to
egs2/mycorpus lands there, not in the repository). Only ``/data/mycorpus`` is replaced (by the
corpus, as a path relative to that root) and ``--stop_stage 5`` added; the slow test runs the
same commands again to stage 9. Also: every wrong option stops before stage 1 with one line
that names the fix (issue 35)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from script_loader import load_script

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("espeak-ng") is None,
                                reason="ffmpeg or espeak-ng not installed")

ROOT = Path(__file__).resolve().parents[2]
LINKED = ("egs2/TEMPLATE", "egs2/mini_europarl", "egs2/europarl_st", "scripts", "conf")
SENTENCES = {
    ("eng", "en"): ["the river runs past the old mill", "we bought fresh bread this morning",
                    "her garden is full of roses", "the train leaves at seven",
                    "please close the kitchen window"],
    ("fra", "fr"): ["le chat dort sur la chaise", "nous allons au marché demain",
                    "la lune brille ce soir", "il pleut depuis ce matin", "ouvre la porte du jardin"],
    ("ita", "it"): ["il cane corre nel parco", "domani andiamo al mare", "la cena è pronta adesso",
                    "il libro è sul tavolo", "chiudi la finestra per favore"],
}
SPLITS = {"train": (0, 1, 2), "dev": (3,), "test": (4,)}
RECIPE = "egs2/mycorpus/s2t1"


def make_corpus(root: Path, lang_token=None) -> None:
    """Kaldi dirs <root>/{train,dev,test}; lang_token: {"eng": "<en>"} writes a wrong tag."""
    for split, idx in SPLITS.items():
        d = root / split
        (d / "audio").mkdir(parents=True)
        tab = {f: {} for f in ("wav.scp", "text", "text.ctc", "text.prev", "utt2spk")}
        for (lang, voice), sents in SENTENCES.items():
            for i in idx:
                utt = f"{lang}{i}-{split}"
                wav = d / "audio" / f"{utt}.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "-w", str(wav), sents[i]], check=True)
                tag = (lang_token or {}).get(lang, f"<{lang}>")
                tab["wav.scp"][utt] = str(wav)
                tab["text"][utt] = f"{tag}<asr><notimestamps> {sents[i]}"
                tab["text.ctc"][utt] = sents[i]
                tab["text.prev"][utt] = "<na>"
                tab["utt2spk"][utt] = f"{lang}{i}"
        for f, rows in tab.items():
            (d / f).write_text("".join(f"{k} {rows[k]}\n" for k in sorted(rows)), encoding="utf-8")


def readme_commands() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own corpus"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def sh(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True,
                          text=True, env=env())


def readme_run(tree: Path, *extra: str) -> subprocess.CompletedProcess:
    script = readme_commands().replace("/data/mycorpus", "../corpus")
    if extra:
        script = re.sub(r"^(egs2/mycorpus/s2t1/run\.sh .*)$", lambda m: f"{m.group(1)} {' '.join(extra)}",
                        script, flags=re.M)
        script = "\n".join(ln for ln in script.splitlines() if not ln.startswith("cat "))
    proc = sh(script, tree)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("own_corpus")
    make_corpus(tmp / "corpus")
    tree = tmp / "tree"
    for rel in LINKED:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).symlink_to(ROOT / rel)
    proc = readme_run(tree, "--stop_stage", "5")
    return tmp, tree, proc.stdout + proc.stderr


def test_readme_commands_prepare_the_data_and_the_mini_base(own):
    tmp, tree, log = own
    recipe = tree / RECIPE
    assert "Training configs: conf/mini_owsm/train_*.yaml, fitting mini_owsm (e_branchformer d 96" in log
    for k in range(1, 6):
        assert f"Stage {k}: " in log, k
    raw = recipe / "dump" / "raw"
    assert sorted(p.name for p in raw.glob("test_*_*")) == ["test_eng_asr", "test_fra_asr", "test_ita_asr"]
    assert len((raw / "train" / "text").read_text().splitlines()) == 9
    # the relative paths are the caller's (the tree's root), not the recipe dir's
    assert (recipe / "exp" / "owsm" / "model.pth").resolve() == (
        ROOT / "egs2/mini_europarl/s2t1/pretrained/mini_owsm/exp/s2t_train_mini_owsm/valid.acc.ave.pth").resolve()
    assert (recipe / "data" / "train" / "wav.scp").read_text() == (tmp / "corpus" / "train" / "wav.scp").read_text()
    assert (recipe / "exp" / "s2t_stats" / "train" / ".done").is_file()
    lines = (recipe / "exp" / "commands.sh").read_text().splitlines()
    assert lines[0].startswith("# ===== run.sh invocation 1 (last run), ")
    assert lines[0].endswith(f"cd {tree} && egs2/mycorpus/s2t1/run.sh --data_root ../corpus --owsm_model "
                             "egs2/mini_europarl/s2t1/pretrained/mini_owsm --stop_stage 5")
    assert lines[-1] == "# ===== end of invocation 1: finished"
    assert sum("scripts/owsm_model.py" in ln for ln in lines) == 1


def one_line_error(tree: Path, args: str) -> str:
    proc = sh(f"{RECIPE}/run.sh {args}", tree)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Stage 1" not in proc.stdout and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr.strip()


def test_wrong_options_stop_before_stage_1_with_one_line_naming_the_fix(own):
    tmp, tree, _ = own
    mini = "--owsm_model egs2/mini_europarl/s2t1/pretrained/mini_owsm"
    import torch

    n = torch.cuda.device_count()
    err = one_line_error(tree, f"--data_root ../corpus {mini} --ngpu {n + 1}")
    assert f"--ngpu {n + 1} but " in err and f"use --ngpu {n}" in err
    make_corpus(tmp / "bad", lang_token={"eng": "<en>"})
    err = one_line_error(tree, f"--data_root {tmp / 'bad'} {mini}")
    assert err.endswith("<en> is not a language token of mini_owsm: use one of <deu> <eng> <fra> <ita>")
    err = one_line_error(tree, f"--data_root ../corpus {mini} --conf_dir egs2/TEMPLATE/s2t1/conf/tiny")
    assert "does not fit mini_owsm (encoder_conf.output_size: model 96, train_s2t_ebf_gated.yaml 32" in err
    assert err.endswith("use --conf_dir auto")
    # a model is known by its YAML in the conf set (a variant: and its model's)
    err = one_line_error(tree, f"--data_root ../corpus {mini} --models 'full gated_nope'")
    assert err.endswith("conf/mini_owsm/train_gated_nope.yaml: no such file (the config of gated_nope)")
    err = one_line_error(tree, f"--data_root ../corpus {mini} --conf_dir egs2/mini_europarl/s2t1/conf/whisper")
    assert "encoder e_branchformer vs train_gated.yaml whisper_token_condition" in err
    for model in ("./pretrained/mini_owsm", "s2t1/pretrained/mini_owsm"):  # not the caller's paths
        err = one_line_error(tree, f"--data_root ../corpus --owsm_model {model}")
        assert "mini_owsm: no such directory (a relative path is taken from where you ran run.sh)" in err
    # the mini recipe's demo configs fit under their own names (train_{full,gated}.yaml)
    proc = sh(f"{RECIPE}/run.sh --data_root ../corpus {mini} --conf_dir egs2/mini_europarl/s2t1/conf/demo "
              f"--expdir {tmp / 'exp_demo'} --stop_stage 1", tree)
    assert proc.returncode == 0, proc.stderr
    assert f"Training configs: {tree}/egs2/mini_europarl/s2t1/conf/demo/train_*.yaml" in proc.stdout


def test_whisper_base_gets_its_configs(own):
    pytest.importorskip("whisper")
    _, tree, _ = own
    proc = sh(f"{RECIPE}/run.sh --data_root ../corpus --owsm_model whisper:base --expdir exp_whisper "
              "--stop_stage 1", tree)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Training configs: conf/whisper_base/train_*.yaml, fitting whisper:base (whisper d 512" in proc.stdout
    assert (tree / "exp_whisper" / "commands.sh").is_file()  # --expdir: the caller's path


@pytest.mark.slow
def test_readme_commands_to_results(own):
    tmp, tree, _ = own
    proc = readme_run(tree)
    recipe = tree / RECIPE
    for k in (1, 2, 4, 5):
        assert f"Stage {k}: nothing to do (finished before)" in proc.stdout, k
    # no model uses speaker or event context: stage 3 says so once, whether run before or not
    assert "Stage 3: no model in --models uses speaker or event context: skipped" in proc.stdout
    assert "Stage 3: nothing to do" not in proc.stdout
    md = proc.stdout  # the README's last command prints RESULTS.md
    assert "# RESULTS: mycorpus S2T, context-aware dynamic pruning of mini_owsm" in md
    for part in ("eng_asr wer", "fra_asr wer", "ita_asr wer", "## Efficiency"):
        assert part in md, part
    lines = (recipe / "exp" / "commands.sh").read_text().splitlines()
    headers = [ln for ln in lines if ln.startswith("# ===== run.sh invocation ")]
    assert len(headers) == 2 and "(last run)" not in headers[0] and "(last run)" in headers[1]
    assert lines[-1] == "# ===== end of invocation 2: finished"
    retrain = load_script("retrain")
    found = retrain.find_commands(lines, recipe / "exp", "gated")
    assert shlex.join(found["train"]).count("--output_dir") == 1
