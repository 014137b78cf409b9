"""espnet_ext.results: decoding outputs read back, gate statistics, the paired bootstrap, and
RESULTS.md as scripts/report.py writes it, on outputs written by the real writers."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import results_fixture as F
from espnet_ext import results


def records():
    """Two utterances as espnet_ext.bin.s2t_inference records them, and one too short to decode."""
    def hyp(text):
        return {"token": "▁a ▁b", "token_int": "5 6", "score": "-1.5", "text": text, "text_nospecial": text}

    return {
        "u1": {"nbest": [hyp("<eng><asr> hello world")], "gates": {"encoder": "1111 1011", "decoder": "111 110"},
               "gflops": "1.2500", "decode_seconds": "0.2000"},
        "u2": {"nbest": [hyp("<eng><asr> good bye")], "gates": {"encoder": "1111 0000", "decoder": "111 111"},
               "gflops": "0.7500", "decode_seconds": "0.4000"},
        "u3": {"nbest": [], "gates": {}, "gflops": "0.1000", "decode_seconds": "0.0100"},
    }


@pytest.fixture(scope="module")
def s2t_decode(tmp_path_factory):
    """A decoding dir written by espnet_ext.bin.s2t_inference.write_outputs."""
    from espnet_ext.bin.s2t_inference import write_outputs

    out = tmp_path_factory.mktemp("dec") / "decode_test_eng_asr"
    units = {"encoder": "ffn1 attn cgmlp ffn2", "decoder": "self_attn src_attn ffn"}
    write_outputs(out, ["u1", "u2", "u3"], records(), units)
    return out


def test_read_decode_round_trip(s2t_decode):
    d = results.read_decode(s2t_decode)
    assert d.hyps == {"u1": "<eng><asr> hello world", "u2": "<eng><asr> good bye", "u3": ""}
    assert d.gates == {"encoder": {"u1": "1111 1011", "u2": "1111 0000"},
                       "decoder": {"u1": "111 110", "u2": "111 111"}}
    assert d.units == {"encoder": ["ffn1", "attn", "cgmlp", "ffn2"], "decoder": ["self_attn", "src_attn", "ffn"]}
    assert d.gflops == {"u1": 1.25, "u2": 0.75, "u3": 0.1}
    assert d.seconds == {"u1": 0.2, "u2": 0.4, "u3": 0.01}
    assert results.gate_bits(d.gates["encoder"]["u1"]) == [[1, 1, 1, 1], [1, 0, 1, 1]]


def test_decode_stats_agree_with_the_decoders_own_summary(s2t_decode):
    from espnet_ext.bin.s2t_inference import summarize

    stats = results.decode_stats(s2t_decode.parent, ["test_eng_asr"])
    # gates: encoder 1 + 4 closed of 16, decoder 1 of 12
    assert stats["closed"] == pytest.approx(6 / 28)
    assert stats["gflops"] == pytest.approx(2.1 / 3) and stats["seconds"] == pytest.approx(0.61 / 3)
    summary = summarize(records().values())
    assert summary["closed"] == pytest.approx(stats["closed"]) and summary["gflops"] == pytest.approx(stats["gflops"])
    assert (summary["closed_encoder"], summary["closed_decoder"]) == (pytest.approx(5 / 16), pytest.approx(1 / 12))
    empty = results.decode_stats(s2t_decode.parent, ["test_none"])
    assert empty == {"gflops": None, "seconds": None, "closed": None}


def test_gate_patterns_per_corpus(tmp_path):
    exp = tmp_path / "exp" / "gated"
    gates = {  # 2 encoder layers x 2 units, 1 decoder layer x 3 units
        "test_deu_asr": {"e1": ("11 01", "111"), "e2": ("11 11", "101"), "x": ("00 00", "000")},
        "vftest_deu_asr": {"v1": ("01 01", "111"), "v2": ("11 00", "111")},
    }
    for s, utts in gates.items():
        d = exp / f"decode_{s}" / "gates"
        d.mkdir(parents=True)
        (d / "units").write_text("encoder attn cgmlp\ndecoder self_attn src_attn ffn\n")
        (d / "encoder").write_text("".join(f"{u} {e}\n" for u, (e, _) in utts.items()))
        (d / "decoder").write_text("".join(f"{u} {g}\n" for u, (_, g) in utts.items()))
    corpus = {"e1": "europarl_st", "e2": "europarl_st", "v1": "voxforge", "v2": "voxforge"}
    pat = results.gate_patterns(exp, list(gates), corpus)
    ep, vf = pat["groups"]["europarl_st/deu/asr"], pat["groups"]["voxforge/deu/asr"]
    assert ep["num_utts"] == 2 and ep["encoder"]["per_layer"] == [[1.0, 1.0], [0.5, 1.0]]
    assert ep["encoder"]["per_unit"] == {"attn": 0.75, "cgmlp": 1.0}
    assert ep["decoder"]["per_unit"] == {"self_attn": 1.0, "src_attn": 0.5, "ffn": 1.0}
    assert vf["encoder"]["per_layer"] == [[0.5, 1.0], [0.0, 0.5]]
    # an utterance of no known corpus: its own (language, task) group, not "?/deu/asr"
    assert pat["groups"]["deu/asr"]["num_utts"] == 1
    assert pat["groups"]["deu/asr"]["decoder"]["per_unit"] == {"self_attn": 0.0, "src_attn": 0.0, "ffn": 0.0}
    # |diffs|: encoder 0.5 0 0.5 0.5, decoder 0 0.5 0 -> 2.0 / 7
    assert pat["corpus_differences"] == {"deu/asr: europarl_st vs voxforge": pytest.approx(2.0 / 7)}
    assert results.gate_patterns(tmp_path / "exp" / "full", list(gates), corpus) is None


def test_paired_bootstrap_wer_resamples_as_numpy_indexing():
    """Every figure recomputed from the resampled indices themselves (seed 7, 200 resamples)."""
    rng = np.random.default_rng(3)
    words = rng.integers(3, 12, 30)
    errs_a, errs_b = rng.integers(0, 3, 30), rng.integers(0, 5, 30)
    r = results.paired_bootstrap_wer(errs_a, words, errs_b, n=200, seed=7)
    idx = np.random.default_rng(7).choice(30, size=(200, 30), replace=True)
    deltas = 100 * errs_a[idx].sum(1) / words[idx].sum(1) - 100 * errs_b[idx].sum(1) / words[idx].sum(1)
    assert r["score_a"] == pytest.approx(100 * errs_a.sum() / words.sum())
    assert r["delta"] == pytest.approx(100 * (errs_a.sum() - errs_b.sum()) / words.sum())
    assert [r["ci_low"], r["ci_high"]] == pytest.approx(np.percentile(deltas, [2.5, 97.5]).tolist())
    side = min((deltas <= 0).sum(), (deltas >= 0).sum())
    assert r["p_value"] == pytest.approx(min(1.0, 2 * (side + 1) / 201))
    assert r["ci_high"] < 0 and r["p_value"] < 0.05  # A makes about half B's errors
    again = results.paired_bootstrap_wer(errs_a, words, errs_b, n=200, seed=7)
    assert again == r and results.paired_bootstrap_wer(errs_a, words, errs_b, n=200, seed=8) != r


def test_paired_bootstrap_bleu_is_sacrebleus_resampled_scores():
    import sacrebleu

    refs = [F.ref(i) for i in range(F.N)]
    hyps_a = [F.hyp("gated", F.ST, i) for i in range(F.N)]
    r = results.paired_bootstrap_bleu(hyps_a, refs, refs, n=100, seed=1)
    assert r["score_a"] == pytest.approx(sacrebleu.corpus_bleu(hyps_a, [refs]).score)
    assert r["score_b"] == pytest.approx(100.0)
    idx = np.random.default_rng(1).choice(F.N, size=(100, F.N), replace=True)
    deltas = [sacrebleu.corpus_bleu([hyps_a[i] for i in row], [[refs[i] for i in row]]).score - 100.0
              for row in idx]
    assert [r["ci_low"], r["ci_high"]] == pytest.approx(np.percentile(deltas, [2.5, 97.5]).tolist())


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    return F.make_exp(tmp_path_factory.mktemp("results"))


def test_mini_recipe_results(exp, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = exp.parent / "RESULTS.md"
    md = results.write_results(out, exp, F.MODELS, F.SETS, "mini Europarl S2T, preset `tiny`", preset="tiny",
                               base_scores=exp.parent / "base_scores.json", base_name="mini_owsm",
                               stage_names={**results.STAGES, "4": "token list"})
    assert out.read_text() == md
    heads = re.findall(r"^## (.*)$", md, re.M)
    assert heads == ["Models", "Speech translation (BLEU / chrF, sacrebleu)", "ASR (WER / CER %, jiwer)",
                     "Do the models listen?", "Difference vs full (paired bootstrap, 95% CI, p)", "Efficiency",
                     "Static pruning baselines", "Plots", "Wall time per stage", "Commands"]
    assert md.startswith("# RESULTS: mini Europarl S2T, preset `tiny`\n")
    scores = {m: json.loads((exp / m / "scores.json").read_text())["subsets"] for m in F.MODELS}
    lines = md.splitlines()
    assert f"| gated | {scores['gated'][F.ST]['bleu']:.2f} | {scores['gated'][F.ST]['chrf']:.2f} |" in lines
    assert "| base (mini_owsm) | 100.00 | 100.00 |" in lines and "| base | " in md
    assert "| const | **0.05 (0.00)** | **0.05 (0.00)** |" in lines
    assert f"**Warning**: const {F.ASR}: only 1 distinct hypothesis for 20 utterances" in md
    # the bootstrap: in compare.json, and its cells
    comparison = json.loads((exp / "compare.json").read_text())
    gated = comparison["models"]["gated"]
    assert gated[F.ST]["delta"] == pytest.approx(scores["gated"][F.ST]["bleu"] - 100.0)
    assert gated[F.ASR]["delta"] == pytest.approx(scores["gated"][F.ASR]["wer"])  # full: 0 %
    row = next(line for line in lines if line.startswith("| gated | **") or line.startswith("| gated | -"))
    g = gated[F.ASR]
    assert row.endswith(f"{g['delta']:+.2f} [{g['ci_low']:+.2f}, {g['ci_high']:+.2f}] p={g['p_value']:.3f}** |")
    assert "(flagged)" in next(line for line in lines if line.startswith("| const | **-100.00"))
    # stage 7: gates 2 or 3 of 14 closed (odd / even utterances), GFLOPs 1.5 + 0.01 i
    assert "| gated | 17.9 % | 1.595 | 0.761 | 0.150 | 0.750 |" in lines
    assert "| full | - | 2.095 | 1.000 | 0.200 | 1.000 |" in lines
    assert "| gated | 1.500 | 0.750 | 0.167 | 0.150 | 0.136 | 0.750 | 1000 |" in lines  # profile
    assert "- FLOPs budget: the gated model's measured decode GFLOPs / the full model's on 20 " \
           "utterances of `dev`: 1.500 / 2.000 = **0.750**" in lines
    assert "![gates_gated_task](exp/plots/gates_gated_task.png)" in lines
    assert "eta^2 adjusted for the number of groups, 40 utterances, 1/14 gates vary; " \
           "`scripts/plot_gates.py`): speaker 0.900, task n/a" in md
    assert "| 4 | token list | 40 |" in lines and "| 3 | context embeddings | - |" in lines
    assert "| | total (stages recorded) | 420 |" in lines
    cmds = md.split("```")[1]
    assert cmds == "\npython b.py\npython a.py\n"  # the repeated command once, where it last ran
    assert "## Gate patterns" not in md  # no corpus labels asked for


def test_pipeline_recipe_results_gain_the_checks_and_gate_patterns(exp, tmp_path):
    """What egs2/TEMPLATE/pipeline.sh runs: --data, --efficiency, the pre-trained model's card."""
    data = tmp_path / "data"
    (data / F.ST).mkdir(parents=True)
    (data / F.ST / "utt2corpus").write_text("".join(f"{F.key(i)} europarl_st\n" for i in range(F.N)))  # both sets' keys
    (exp / "owsm").mkdir(exist_ok=True)
    (exp / "owsm" / "model.json").write_text(json.dumps(
        {"model": "espnet/owsm_v3.1_ebf", "encoder": "e_branchformer", "encoder_blocks": 9,
         "decoder": "transformer", "decoder_blocks": 9, "output_size": 768, "num_tokens": 50000}))
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, str(F.ROOT / "scripts" / "report.py"), "--exp", str(exp),
                           "--data", str(data), "--models", "full", "gated", "--test_sets", *F.SETS,
                           "--efficiency", str(exp / "efficiency" / f"{F.ST}.json"), "--out", str(out)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(F.ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = out.read_text()
    for part in ("# RESULTS: Europarl-ST v1.1 S2T, context-aware dynamic pruning of OWSM",
                 "- pre-trained model: `espnet/owsm_v3.1_ebf` (e_branchformer 9 + transformer 9 blocks, "
                 "d=768, 50000 tokens)",
                 "## Do the models listen?", "## Difference vs full (paired bootstrap, 95% CI, p)",
                 "## Gate patterns: gated", "| europarl_st/deu/st_eng | 20 | 0.75 | 0.50 | 1.00 | 1.00 | 1.00 | 1.00 | 0.50 |",
                 "| europarl_st/eng/asr | 20 |", "| 2 | audio format | 20 |", "run.sh ran, in order:"):
        assert part in md, part
    pat = json.loads((exp / "gated" / "gate_patterns.json").read_text())
    assert set(pat["groups"]) == {"europarl_st/deu/st_eng", "europarl_st/eng/asr"}
    assert not (exp / "full" / "gate_patterns.json").exists()
    bad = subprocess.run([sys.executable, str(F.ROOT / "scripts" / "report.py"), "--exp", str(exp),
                          "--models", "full", "--test_sets", F.ST, "--out", str(out), "--stage_names", "11=x"],
                         capture_output=True, text=True, env={"PYTHONPATH": str(F.ROOT), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and "--stage_names: '11=x' is not K=WHAT" in bad.stderr


def test_mismatch_only_where_the_score_says_unrelated_text():
    text = ["a b", "c d", ""]
    assert results.mismatch_warnings({"wer": 99.9}, text) == [] and results.mismatch_warnings({"bleu": 1.0}, text) == []
    assert results.mismatch_warnings({"wer": 142.04}, text)[0].startswith("WER 142.0 %: the hypotheses do not match")
    assert results.mismatch_warnings({"bleu": 0.31}, text)[0].startswith("BLEU 0.31: the hypotheses do not match")
    # no text at all is not unrelated text: all deletions, WER 100 %
    assert results.mismatch_warnings({"wer": 100.0}, ["", "", "a"]) == [
        "2 of 3 hypotheses are empty: the model writes (almost) nothing; its scores mean nothing"]
    assert results.loops("a b a b a b a b", "a b c") and not results.loops("one two three four five six seven", "a b c")
    assert not results.loops("a a a a", "a b")  # not longer than 2x the reference


def test_results_name_each_models_config_and_the_official_counts(exp, tmp_path):
    """Issue 33: every set's utterances next to the official count and its long ones (stage 2's
    utt_counts.json), and the training YAML of every model (ESPnet's config.yaml)."""
    dump = tmp_path / "dump"
    (dump / F.ST).mkdir(parents=True)
    (dump / F.ST / "utt_counts.json").write_text(json.dumps(
        {"set": F.ST, "role": "eval", "official": 21, "utts": 20, "long": 2, "dropped_long": 0,
         "dropped_short": 1, "bad": 0, "speech_length": 30, "long_utts": "trimmed"}))
    (exp / "gated" / "config.yaml").write_text("config: conf/train_s2t_ebf_gated_paper.yaml\ntoken_list:\n- a\n")
    md = results.write_results(tmp_path / "RESULTS.md", exp, F.MODELS, F.SETS, "t", dump=dump)
    lines = md.splitlines()
    assert f"Utterances: {F.ST} 20 of 21 official, 2 longer than 30 s (decoded trimmed)" in lines
    assert any(line.startswith("| gated | ") and "| `conf/train_s2t_ebf_gated_paper.yaml` |" in line
               for line in lines)
    assert any(line.startswith("| full | ") and "| - |" in line for line in lines)  # no config.yaml
    # without --dump, as before
    plain = results.write_results(tmp_path / "R2.md", exp, F.MODELS, F.SETS, "t")
    assert f"Utterances: {F.ST} 20" in plain.splitlines()
    (exp / "gated" / "config.yaml").unlink()


def test_efficiency_says_why_the_profile_ran_on_fewer_utterances(exp, tmp_path):
    """A set with fewer utterances than --num_utts: RESULTS.md says so, from the profile's JSON."""
    profile = json.loads((exp / "efficiency" / f"{F.ST}.json").read_text())
    full = results.efficiency_section(exp, ["full", "gated"], F.SETS, "full", exp / "efficiency" / f"{F.ST}.json")
    assert not any(line.startswith("Profiled on") for line in full)
    profile["settings"].update(num_utts=3, num_utts_asked=20,
                               num_utts_note=f"3 utterances, not the 20 asked: {F.ST} has only 3")
    short = tmp_path / f"{F.ST}.json"
    short.write_text(json.dumps(profile))
    md = results.efficiency_section(exp, ["full", "gated"], F.SETS, "full", short)
    assert f"Profiled on 3 utterances, not the 20 asked: {F.ST} has only 3." in md
    settings = next(line for line in md if line.startswith("Settings: "))
    assert "num_utts=3" in settings and "num_utts_asked=20" in settings and "num_utts_note" not in settings


def test_gate_factor_line_explains_the_unlabelled_group(tmp_path):
    plots = tmp_path / "exp" / "plots"
    plots.mkdir(parents=True)
    legend = "no event: utterances without a line in <dump>/<set>/utt2event"
    (plots / "gates_gated_event.png").write_bytes(b"png")
    (plots / "gate_factors_gated.json").write_text(json.dumps(
        {"model": "gated", "utterances": 40, "closed_fraction": 0.1, "varying_gates": 1, "gates": 14,
         "factors": {"event": {"eta2": 0.2, "groups": 3, "unlabelled": legend},
                     "task": {"eta2": 0.9, "groups": 2}}}))
    md = results.baselines_section(tmp_path / "exp", tmp_path / "RESULTS.md")
    line = next(line for line in md if line.startswith("Gate variance explained"))
    assert line.endswith(f"task 0.900, event 0.200; {legend}")


def test_runs_section_lists_each_command_once_without_block_headers(tmp_path):
    (tmp_path / "commands.sh").write_text(
        "# ===== run.sh invocation 1, 2026-12-07T10:00:00: cd /r && ./run.sh\n"
        "python3 a.py --x 1\n"
        "python3 b.py\n"
        "# ===== end of invocation 1: failed (exit status 1)\n"
        "# ===== run.sh invocation 2 (last run), 2026-12-07T11:00:00: cd /r && ./run.sh\n"
        "python3 a.py --x 1\n"
        "python3 c.py\n"
        "# ===== end of invocation 2: finished\n")
    md = results.runs_section(tmp_path, {"1": "data"}, None)
    block = md[md.index("```") + 1:-2]
    assert block == ["python3 b.py", "python3 a.py --x 1", "python3 c.py"]


def test_a_retrained_variant_is_named_after_the_model_it_varies():
    assert results.describe("gated") == "gated fine-tune, context lang+task"
    assert results.describe("gated_spk_seed1").startswith("variant of gated_spk (")
    assert results.describe("full_ft").startswith("variant of full (")
    assert results.describe("mystery") == ""
