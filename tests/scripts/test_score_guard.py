"""scripts/score.py's input guard and per-utterance data, the paired bootstrap of
espnet_ext.results, and the sections scripts/report.py builds from them, on hand-made
decoding outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from espnet_ext import results

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
ST, ASR = "test_deu_st_eng", "test_eng_asr"
PREFIX = {ST: "<deu><st_eng><notimestamps>", ASR: "<eng><asr><notimestamps>"}
N = 50
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()



def key(i: int) -> str:
    return f"spk{i % 3}_utt{i:03d}"


def ref(i: int) -> str:
    """Distinct references, except that the last two repeat the first two."""
    i = i - 48 if i >= 48 else i
    return " ".join(WORDS[(7 * i + 3 * j) % len(WORDS)] for j in range(6)) + f" item{i}"


def write(path: Path, rows: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items())), encoding="utf-8")


def asr_errors(i: int) -> str:
    """A substitution, a deletion, an insertion or no hypothesis (None) on 4 of 5 utterances."""
    words = ref(i).split()
    return {0: " ".join(["wrong"] + words[1:]), 1: " ".join(words[:-1]),
            2: " ".join(words + ["extra"]), 3: None}.get(i % 5, ref(i))


HYPS = {  # model -> subset -> utterance -> hypothesis (None: not decoded)
    # perfect; cased and punctuated as a decoder might write it (the normalisation removes it)
    "full": {s: {i: f"<na>{ref(i).capitalize()}." for i in range(N)} for s in (ST, ASR)},
    # 40 of 50 perfect, 10 unrelated; ASR: every kind of error
    "gated": {ST: {i: ref(i) if i < 40 else f"nothing of it {i}" for i in range(N)},
              ASR: {i: asr_errors(i) for i in range(N)}},
    # ignores its input
    "const": {s: {i: "thank you very much" for i in range(N)} for s in (ST, ASR)},
    # 10 of 50 repeat themselves (3x the reference's words)
    "loop": {s: {i: " ".join([ref(i)] * 3) if i % 5 == 0 else ref(i) for i in range(N)}
             for s in (ST, ASR)},
    # fluent, distinct, 3x the reference's words, but about something else (not a loop)
    "other": {s: {i: f"the members approve the opinion on research number {i} tomorrow and "
                     f"then vote {i + 1} times again" for i in range(N)} for s in (ST, ASR)},
}


def run(script: str, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """exp/<model>/scores.json for every model of HYPS, and score.py's log per model."""
    tmp = tmp_path_factory.mktemp("guard")
    for s in (ST, ASR):
        write(tmp / "dump" / s / "text", {key(i): f"{PREFIX[s]} {ref(i)}" for i in range(N)})
    logs = {}
    for m, subsets in HYPS.items():
        for s, hyps in subsets.items():
            write(tmp / "exp" / m / f"decode_{s}" / "1best_recog" / "text",
                  {key(i): h for i, h in hyps.items() if h is not None})
        logs[m] = run("score.py", "--exp", tmp / "exp" / m, "--dump", tmp / "dump", ST, ASR).stderr
    return tmp, logs


def scores(tmp: Path, model: str) -> dict:
    return json.loads((tmp / "exp" / model / "scores.json").read_text())["subsets"]


def test_constant_model_is_flagged(scored):
    tmp, logs = scored
    for s, r in scores(tmp, "const").items():
        assert r["distinct_hyp"] == pytest.approx(1 / N), s
        assert r["distinct_ref"] == pytest.approx(48 / N), s
        assert r["looping"] == 0.0
        assert r["warnings"] == ["only 1 distinct hypothesis for 50 utterances (48 distinct "
                                 "references): the model ignores its input; its scores mean "
                                 "nothing"]
        assert f"WARNING: const {s}: only 1 distinct hypothesis" in logs["const"]


def test_looping_model_is_flagged(scored):
    tmp, logs = scored
    for s, r in scores(tmp, "loop").items():
        assert r["looping"] == pytest.approx(10 / N), s
        assert r["distinct_hyp"] == pytest.approx(49 / N)  # utt 0 loops, 48 (same ref) not
        assert r["warnings"] == ["10 of 50 hypotheses repeat themselves beyond 2x the "
                                 "reference's words: the model loops; its scores mean little"]
    assert "WARNING: loop test_eng_asr: 10 of 50 hypotheses" in logs["loop"]


def test_perfect_model_is_not_flagged(scored):
    tmp, logs = scored
    for s, r in scores(tmp, "full").items():
        assert r["distinct_hyp"] == r["distinct_ref"] == pytest.approx(48 / N), s
        assert (r["looping"], r["warnings"]) == (0.0, [])
    assert scores(tmp, "full")[ST]["bleu"] == pytest.approx(100.0)
    assert scores(tmp, "full")[ASR]["wer"] == 0.0
    assert "WARNING" not in logs["full"]


def test_unrelated_text_is_a_mismatch_not_a_loop(scored):
    tmp, logs = scored
    r = scores(tmp, "other")
    assert r[ASR]["looping"] == r[ST]["looping"] == 0.0
    assert r[ASR]["distinct_hyp"] == 1.0 and r[ASR]["wer"] >= 100.0
    assert r[ASR]["warnings"] == [f"WER {r[ASR]['wer']:.1f} %: the hypotheses do not match the "
                                  "audio (text unrelated to the references, not a loop); its "
                                  "scores mean nothing"]
    assert r[ST]["bleu"] < 1.0
    assert r[ST]["warnings"] == [f"BLEU {r[ST]['bleu']:.2f}: the hypotheses do not match the audio "
                                 "(text unrelated to the references, not a loop); its scores mean "
                                 "nothing"]
    assert "WARNING: other test_eng_asr: WER" in logs["other"]
    # a constant model is told as such, not as a mismatch too
    assert len(scores(tmp, "const")[ASR]["warnings"]) == 1


def test_per_utt_errors_add_up_to_jiwer_wer(scored):
    tmp, logs = scored
    per_utt = json.loads((tmp / "exp" / "gated" / f"decode_{ASR}" / "per_utt.json").read_text())
    utts = per_utt["utts"]
    assert (per_utt["subset"], per_utt["task"]) == (ASR, "asr")
    assert list(utts) == sorted(key(i) for i in range(N))
    by_kind = {i % 5: utts[key(i)] for i in range(5)}
    assert [by_kind[k]["errors"] for k in range(5)] == [1, 1, 1, 7, 0]  # 3: no hypothesis
    assert by_kind[3]["hyp"] == "" and by_kind[3]["words"] == 7
    errors = sum(u["errors"] for u in utts.values())
    words = sum(u["words"] for u in utts.values())
    assert 100 * errors / words == pytest.approx(scores(tmp, "gated")[ASR]["wer"])
    assert "10 utterances without hypothesis" in logs["gated"]
    st = json.loads((tmp / "exp" / "full" / f"decode_{ST}" / "per_utt.json").read_text())["utts"]
    assert st[key(1)] == {"hyp": ref(1), "ref": ref(1)}  # normalised, as scored


def test_bootstrap_identical_systems():
    rng = np.random.default_rng(1)
    errs, words = rng.integers(0, 4, N), rng.integers(4, 9, N)
    r = results.paired_bootstrap_wer(errs, words, errs)
    assert (r["delta"], r["p_value"], r["n_resamples"]) == (0.0, 1.0, 1000)
    assert r["ci_low"] <= 0.0 <= r["ci_high"]
    hyps, refs = [ref(i) if i % 2 else "a b c" for i in range(N)], [ref(i) for i in range(N)]
    r = results.paired_bootstrap_bleu(hyps, hyps, refs)
    assert (r["delta"], r["p_value"]) == (0.0, 1.0)
    assert r["ci_low"] <= 0.0 <= r["ci_high"]


def test_bootstrap_clearly_better_system():
    import sacrebleu

    refs = [ref(i) for i in range(N)]
    wrong = [f"nothing of it {i}" for i in range(N)]
    good = refs[:40] + wrong[40:]
    r = results.paired_bootstrap_bleu(good, wrong, refs)
    full = sacrebleu.corpus_bleu(good, [refs]).score - sacrebleu.corpus_bleu(wrong, [refs]).score
    assert r["delta"] == pytest.approx(full)
    assert 0 < r["ci_low"] <= r["delta"] <= r["ci_high"] and r["p_value"] < 0.05

    words = np.full(N, 7)
    errs_a, errs_b = np.r_[np.zeros(40, int), np.full(10, 7)], np.full(N, 7)
    r = results.paired_bootstrap_wer(errs_a, words, errs_b)
    assert r["delta"] == pytest.approx(100 * (70 - 350) / 350)  # corpus WER 20% - 100%
    assert r["ci_low"] <= r["delta"] <= r["ci_high"] < 0 and r["p_value"] < 0.05
    swapped = results.paired_bootstrap_wer(errs_b, words, errs_a)
    assert swapped["delta"] == -r["delta"] and swapped["p_value"] == r["p_value"]


def test_bootstrap_small_difference_is_not_significant():
    words, errs = np.full(N, 7), np.ones(N, int)
    worse = errs.copy()
    worse[3] += 1  # one more error in one utterance
    r = results.paired_bootstrap_wer(worse, words, errs, seed=3)
    assert r["delta"] == pytest.approx(100 / 350)
    assert r["ci_low"] <= 0.0 <= r["ci_high"] and r["p_value"] > 0.5
    with pytest.raises(ValueError, match="same utterances"):
        results.paired_bootstrap_wer(errs[:-1], words[:-1], errs)
    with pytest.raises(ValueError, match="same utterances"):
        results.paired_bootstrap_bleu(["a b"], ["a b", "c"], ["a b", "c"])


def test_report_flags_and_compares(scored):
    tmp, _ = scored
    out = tmp / "RESULTS.md"
    proc = run("report.py", "--exp", tmp / "exp", "--preset", "tiny", "--models",
               *HYPS, "--test_sets", ST, ASR, "--out", out)
    md = out.read_text()
    assert "## Do the models listen?" in md
    assert "| references | 0.96 | 0.96 |" in md
    assert "| const | **0.02 (0.00)** | **0.02 (0.00)** |" in md
    assert "| full | 0.96 (0.00) | 0.96 (0.00) |" in md
    assert (f"**Warning**: const {ST}: only 1 distinct hypothesis for 50 utterances (48 distinct "
            "references): the model ignores its input; its scores mean nothing.") in md
    assert f"**Warning**: loop {ASR}: 10 of 50 hypotheses repeat themselves beyond 2x" in md
    assert f"**Warning**: other {ASR}: WER " in md
    assert "**Warning**: full" not in md and "**Warning**: gated" not in md
    assert "WARNING: const test_deu_st_eng" in proc.stderr

    comparison = json.loads((tmp / "exp" / "compare.json").read_text())
    assert comparison["reference"] == "full"
    assert set(comparison["models"]) == {"gated", "const", "loop", "other"}
    sc = {m: scores(tmp, m) for m in HYPS}
    for m, sets in comparison["models"].items():
        for s, r in sets.items():
            metric = "bleu" if s == ST else "wer"
            assert r["metric"] == metric and r["num_utts"] == N
            assert r["delta"] == pytest.approx(sc[m][s][metric] - sc["full"][s][metric])
    gated = comparison["models"]["gated"][ST]
    assert gated["ci_high"] < 0 and gated["p_value"] < 0.05  # 10 of 50 translations wrong

    assert "## Difference vs full (paired bootstrap, 95% CI, p)" in md
    assert "| model | deu_st_eng BLEU | eng_asr WER (ours) |" in md
    # BLEU keeps sacrebleu's signature, the WER's names its text convention
    import sacrebleu
    sig = f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert json.loads((tmp / "exp" / "full" / "scores.json").read_text())["signatures"]["bleu"] == sig
    assert f"Signatures: bleu: `{sig}`;" in md
    from importlib.metadata import version
    assert f"wer: `jiwer {version('jiwer')} wer: words split on whitespace, percent, text --wer_norm ours`" in md
    row = next(line for line in md.splitlines() if line.startswith("| gated | **"))
    cell = (f"**{gated['delta']:+.2f} [{gated['ci_low']:+.2f}, {gated['ci_high']:+.2f}] "
            f"p={gated['p_value']:.3f}**")
    assert row.split(" | ")[1] == cell


DEU = "test_deu_asr"
NORMS = ("ours", "raw", "whisper_basic", "whisper_english")


@pytest.fixture(scope="module")
def scored_norms(tmp_path_factory):
    """Models full (cased, punctuated, British spelling) and gated scored under every --wer_norm
    (exp_<norm>), plus the eng set of a second full scored with ours (exp_raw/other)."""
    tmp = tmp_path_factory.mktemp("wer_norm")
    refs = {i: f"{ref(i)} color" for i in range(N)}
    write(tmp / "dump" / ASR / "text", {key(i): f"{PREFIX[ASR]} {r}" for i, r in refs.items()})
    write(tmp / "dump" / DEU / "text", {key(i): f"<deu><asr><notimestamps> {r}" for i, r in refs.items()})
    hyps = {"full": {i: f"<na>{r.capitalize()[:-5]}colour." for i, r in refs.items()},
            "gated": {i: refs[i] if i % 2 else "nothing" for i in range(N)}}
    for norm in NORMS:
        for m, h in hyps.items():
            for s in (ASR, DEU):
                write(tmp / f"exp_{norm}" / m / f"decode_{s}" / "1best_recog" / "text",
                      {key(i): t for i, t in h.items()})
            run("score.py", "--wer_norm", norm, "--exp", tmp / f"exp_{norm}" / m, "--dump",
                tmp / "dump", ASR, DEU)
    return tmp


def test_score_records_the_wer_convention(scored_norms):
    tmp = scored_norms
    wer = {}
    for norm in NORMS:
        for m in ("full", "gated"):
            sc = json.loads((tmp / f"exp_{norm}" / m / "scores.json").read_text())
            assert sc["wer_norm"] == norm
            # whisper_english scores the German set with the basic normaliser, and says so
            applied = {ASR: norm, DEU: "whisper_basic" if norm == "whisper_english" else norm}
            assert {s: sc["subsets"][s]["wer_norm"] for s in (ASR, DEU)} == applied
            assert set(sc["wer_norms"]) == set(applied.values())
            assert f"--wer_norm {norm}" in sc["signatures"]["wer"]
            for s in (ASR, DEU):
                per_utt = json.loads((tmp / f"exp_{norm}" / m / f"decode_{s}" / "per_utt.json").read_text())
                assert per_utt["wer_norm"] == applied[s]
                wer[norm, m, s] = sc["subsets"][s]["wer"]
    # the cased, punctuated hypothesis with British spelling: 1 error of 8 words (colour) where
    # only case and punctuation go, 3 when they stay (first word, last word); none under the
    # English normaliser, which spells colour as color
    assert wer["ours", "full", ASR] == wer["whisper_basic", "full", ASR] == pytest.approx(100 / 8)
    assert wer["raw", "full", ASR] == pytest.approx(200 / 8)
    assert wer["whisper_english", "full", ASR] == 0.0
    assert wer["whisper_english", "full", DEU] == pytest.approx(100 / 8)  # basic: colour stays
    assert all(wer[n, "gated", ASR] == pytest.approx(50.0) for n in NORMS)


def test_results_md_names_the_wer_convention(scored_norms):
    tmp = scored_norms
    exp = tmp / "exp_raw"
    (exp / "other").mkdir()
    run("report.py", "--exp", exp, "--preset", "tiny", "--models", "full", "gated",
        "--test_sets", ASR, DEU, "--out", tmp / "RESULTS_raw.md")
    md = (tmp / "RESULTS_raw.md").read_text()
    assert "| model | eng_asr wer (raw) | eng_asr cer (raw) | deu_asr wer (raw) | deu_asr cer (raw) |" in md
    assert "| model | eng_asr WER (raw) | deu_asr WER (raw) |" in md  # the bootstrap's table
    assert md.count("WER / CER text (`scripts/score.py --wer_norm`): raw: ESPnet s2t.sh, text as is "
                    "(as ESPnet's s2t.sh: special tokens <...> removed, text as is") == 2
    assert "| full | 25.00 |" in md
    assert json.loads((exp / "compare.json").read_text())["models"]["gated"][ASR]["wer_norm"] == "raw"

    # whisper_english: the German columns name the normaliser they were scored with
    run("report.py", "--exp", tmp / "exp_whisper_english", "--preset", "tiny", "--models", "full",
        "gated", "--test_sets", ASR, DEU, "--out", tmp / "RESULTS_en.md")
    md = (tmp / "RESULTS_en.md").read_text()
    assert "| eng_asr wer (whisper_english) | eng_asr cer (whisper_english) | deu_asr wer (whisper_basic) |" in md
    assert "whisper_basic: Whisper BasicTextNormalizer (" in md
    assert "whisper_english: Whisper EnglishTextNormalizer (" in md

    # a model scored with another convention than the first: its cells say which
    for s in (ASR, DEU):
        src = tmp / "exp_ours" / "full" / f"decode_{s}"
        write(exp / "other" / f"decode_{s}" / "1best_recog" / "text",
              dict(line.split(" ", 1) for line in (src / "1best_recog" / "text").read_text().splitlines()))
    run("score.py", "--exp", exp / "other", "--dump", tmp / "dump", ASR, DEU)  # ours, the default
    out = tmp / "RESULTS_mixed.md"
    md = results.write_results(out, exp, ["full", "other"], [ASR, DEU], "mixed", reference="gated")
    assert "| other | 12.50 (ours) |" in md
    assert "ours: lower-case, no punctuation (" in md and "raw: ESPnet s2t.sh, text as is (" in md
    # the paired bootstrap of WERs computed on different text is refused
    with pytest.raises(ValueError, match="--wer_norm ours text, full's on raw"):
        results.compare(exp, ["full", "other"], "full", [ASR])
