"""scripts/score.py --task asr and scripts/report.py on an ASR-task experiment (LibriSpeech's
layout): set names without <lang>_<task>, reference model base, decoding outputs as
scripts/decode.py --task asr writes them (S2T's layout)."""

import json

import pytest

from espnet_ext import results
from script_loader import load_script

score, report = load_script("score"), load_script("report")

SETS = ("test_clean", "test_other")
MODELS = ("base", "gated", "gated_local")
N = 20
WORDS = "THE CAT SAT ON A MAT AND DOG RAN TO HOUSE".split()


def ref(i):
    return " ".join(WORDS[(3 * i + j) % len(WORDS)] for j in range(5)) + f" N{i}"


def hyp(model, i):
    words = ref(i).split()
    if model == "base" or i % 4:
        return " ".join(words)
    if model == "gated":  # a substitution on every 4th utterance
        return " ".join(["WRONG"] + words[1:])
    return " ".join(words[:-2]).lower()  # two deletions; lower case: raw counts the case too


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in rows.items()))


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asr_exp")
    keys = [f"1089-{i:04d}" for i in range(N)]
    for s in SETS:
        write(tmp / "dump" / s / "text", {k: ref(i) for i, k in enumerate(keys)})
        (tmp / "dump" / s / "utt_counts.json").write_text(json.dumps(
            {"set": s, "role": "eval", "official": N + 1, "utts": N, "long": 1, "speech_length": 20.0,
             "long_utts": "whole"}))
    for m in MODELS:
        for s in SETS:
            d = tmp / "exp" / m / f"decode_{s}"
            write(d / "1best_recog" / "text", {k: hyp(m, i) for i, k in enumerate(keys)})
            write(d / "gflops", {k: f"{1.0 if m == 'base' else 0.5 + 0.25 * (i % 2):.4f}" for i, k in enumerate(keys)})
            write(d / "decode_seconds", {k: "0.1000" for k in keys})
            if m != "base":  # a stock model writes no gates
                write(d / "gates" / "units", {"encoder": "attn ffn"})
                write(d / "gates" / "encoder", {k: "10 11" if i % 2 else "11 11" for i, k in enumerate(keys)})
        score.main(["--task", "asr", "--wer_norm", "raw", "--exp", str(tmp / "exp" / m),
                    "--dump", str(tmp / "dump"), *SETS])
    return tmp


def test_every_set_is_scored_as_asr(exp):
    sc = json.loads((exp / "exp" / "gated" / "scores.json").read_text())
    assert sc["task"] == "asr" and sc["wer_norm"] == "raw"
    words = 6 * N
    for s in SETS:
        r = sc["subsets"][s]
        assert (r["lang"], r["task"], r["num_utts"], r["wer_norm"]) == ("eng", "asr", N, "raw")
        assert r["wer"] == pytest.approx(100 * 5 / words)  # 5 substitutions
        per_utt = json.loads((exp / "exp" / "gated" / f"decode_{s}" / "per_utt.json").read_text())
        assert per_utt["task"] == "asr" and sum(u["errors"] for u in per_utt["utts"].values()) == 5
    local = json.loads((exp / "exp" / "gated_local" / "scores.json").read_text())["subsets"]
    # raw: the lower-cased utterances are all wrong (6 words each), as LibriSpeech's upper-cased
    # references score a lower-cased hypothesis
    assert local["test_clean"]["wer"] == pytest.approx(100 * 5 * 6 / words)


def test_report_of_an_asr_experiment(exp):
    out = exp / "RESULTS.md"
    report.main(["--exp", str(exp / "exp"), "--dump", str(exp / "dump"), "--models", *MODELS,
                 "--test_sets", *SETS, "--reference", "base", "--title", "LibriSpeech 100 h", "--out", str(out)])
    md = out.read_text()
    assert md.startswith("# RESULTS: LibriSpeech 100 h\n\nDynamic pruning (gated encoder) vs `base`")
    assert "| base | ESPnet ASR model trained from scratch (stock modules) | - | - |" in md
    assert md.count("| base |") == 4  # models, WER, listen and efficiency tables: once each
    assert "| model | test_clean wer (raw) | test_clean cer (raw) | test_other wer (raw) |" in md
    assert "| gated | 4.17 |" in md and "| gated_local | 25.00 |" in md
    assert "Utterances: test_clean 20 of 21 official, 1 longer than 20.0 s (decoded whole)" in md
    comparison = json.loads((exp / "exp" / "compare.json").read_text())
    assert comparison["reference"] == "base" and set(comparison["models"]) == {"gated", "gated_local"}
    for s in SETS:
        r = comparison["models"]["gated"][s]
        assert (r["metric"], r["wer_norm"], r["num_utts"]) == ("wer", "raw", N)
        assert r["delta"] == pytest.approx(100 * 5 / (6 * N))
    assert "| model | test_clean WER (raw) | test_other WER (raw) |" in md
    # mean GFLOPs and closed units of the decoding outputs; the base has no gates
    assert "| base | - | 1.000 | 1.000 | 0.100 | 1.000 |" in md
    assert "| gated | 12.5 % | 0.625 | 0.625 |" in md
    assert results.decode_stats(exp / "exp" / "gated", SETS)["closed"] == pytest.approx(0.125)
    assert "stage 9's profile did not run" not in md and "## Commands" in md
    assert "Speech translation" not in md  # no ST table
