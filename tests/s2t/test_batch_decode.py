"""Batched gated decoding (the lean search) equals one-by-one decoding; a search the lean
one does not support decodes one by one with ESPnet's; decoding resumes after a kill.

The lean search against ESPnet's, rule by rule, is tested in test_lean_search.py.
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_ext.gating import force_gates
from espnet_ext.gating.gated import span_mask
from espnet_ext.s2t.inference import Speech2TextGated, fixed_length

pytestmark = pytest.mark.slow


def utterances(data, n=6):
    """(utt, wav, lang, task) of the first n valid utterances, mixed languages/tasks."""
    out = []
    for line in (data["valid"] / "wav.scp").read_text().splitlines()[:n]:
        utt, path = line.split()
        _, _, lang, task = utt.split("_", 3)
        out.append((utt, sf.read(path, dtype="float32")[0], f"<{lang}>", f"<{task}>"))
    return out


def decoder(exp, **kw):
    conf = dict(beam_size=3, maxlenratio=0.0, lang_sym="<eng>", task_sym="<asr>", search="lean")
    conf.update(kw)
    return Speech2TextGated(exp / "config.yaml", exp / "10epoch.pth", device="cpu", **conf)


def diversify_decoder_gates(s2t, wavs, langs, tasks):
    """Shifts the decoder gate biases so that the rows of one batch run with different
    decoder gates (the tiny model keeps its decoder open). Gate j is cut between the
    utterances of rank k_j and k_j + 1 of its logit margins, k_j = 1 + j mod (B - 1): with
    every rank a cut of some gate, B utterances get B distinct patterns even where all
    gates rank the utterances alike. Each cut lies halfway between two margins, so no
    decision is a near-tie."""
    model = s2t.s2t_model
    context = s2t._batch_context(langs, tasks, None, None)
    wave = torch.stack([fixed_length(s2t, w) for w in wavs])
    lengths = torch.full((len(wavs),), wave.size(1))
    # as decode_batch: the decoder's gates pool over the speech span of the context
    ctx = model.speech_context(context, wave, lengths)
    with torch.no_grad():
        enc, lens = model.encode(wave, lengths, context=ctx)
        valid = torch.arange(enc.size(1))[None] < lens[:, None]
        if ctx.speech_span is not None:
            valid = span_mask(valid, ctx.speech_span)
        logits = model.decoder.gate_predictor.logits(enc, valid, ctx)
        margin, _ = (logits[..., 1] - logits[..., 0]).sort(0)  # (B, gates)
        k = 1 + torch.arange(margin.size(1)) % (len(wavs) - 1)
        lo, hi = margin.gather(0, (k - 1)[None])[0], margin.gather(0, k[None])[0]
        assert (hi - lo).min() > 1e-4
        out = [m for m in model.decoder.gate_predictor.modules() if isinstance(m, torch.nn.Linear)][-1]
        out.bias.view(-1, 2)[:, 1] -= (lo + hi) / 2


def assert_same(one, batched):
    assert [r[2] for r in one] == [r[2] for r in batched]  # token ids of every n-best
    for a, b in zip(one, batched):
        assert abs(float(a[4].score) - float(b[4].score)) < 1e-4


@pytest.mark.parametrize("cache_src_kv", [True, False])
def test_batched_equals_one_by_one_with_mixed_contexts(trained, tiny_corpus, cache_src_kv):
    # batched: the lean search; one by one: the lean search alone and ESPnet's (__call__,
    # its gated decoder with and without the source K/V cache)
    exp, _ = trained
    s2t = decoder(exp, nbest=2)
    assert s2t.search == "lean"
    s2t.s2t_model.decoder.cache_src_kv = cache_src_kv
    utts = utterances(tiny_corpus)
    assert len({(lang, task) for _, _, lang, task in utts}) > 1  # mixed contexts
    # different raw lengths: trimmed or padded to the fixed length in both paths
    wavs = [wav[: len(wav) - 800 * i] for i, (_, wav, _, _) in enumerate(utts)]
    assert len({len(w) for w in wavs}) == len(wavs)
    langs, tasks = [u[2] for u in utts], [u[3] for u in utts]
    diversify_decoder_gates(s2t, wavs, langs, tasks)
    batched = s2t.decode_batch(wavs, langs, tasks)
    patterns = set()
    for wav, lang, task, b in zip(wavs, langs, tasks, batched):
        alone = s2t.decode_one(wav, lang, task)
        assert [r[2] for r in alone.results] == [r[2] for r in b.results]
        assert b.gflops == pytest.approx(alone.gflops, rel=1e-9)
        one = s2t(wav, lang_sym=lang, task_sym=task)  # ESPnet's search
        assert_same(one, b.results)
        for side in ("encoder", "decoder"):
            assert torch.equal(s2t.gates[side], b.gates[side])
        for part in ("subsampling", "encoder"):
            assert b.gflops[part] == pytest.approx(s2t.meter.gflops[part], rel=1e-9)
        patterns.add(str(b.gates["decoder"].tolist()))
    # the rows of the batch really ran with different decoder gates
    assert len(patterns) >= 3, patterns


def test_src_kv_cache_changes_nothing(trained, tiny_corpus):
    exp, _ = trained
    s2t = decoder(exp)
    _, wav, lang, task = utterances(tiny_corpus, 1)[0]
    cached = s2t(wav, lang_sym=lang, task_sym=task)
    s2t.s2t_model.decoder.cache_src_kv = False
    plain = s2t(wav, lang_sym=lang, task_sym=task)
    assert_same(plain, cached)


def test_batched_all_open_and_odd_batch(trained, tiny_corpus):
    exp, _ = trained
    s2t = decoder(exp, beam_size=2)
    utts = utterances(tiny_corpus, 3)
    with force_gates(s2t.s2t_model, 1.0):
        batched = s2t.decode_batch([u[1] for u in utts], [u[2] for u in utts], [u[3] for u in utts])
        for (_, wav, lang, task), b in zip(utts, batched):
            assert_same(s2t(wav, lang_sym=lang, task_sym=task), b.results)
            assert b.gates["decoder"].min() == 1.0


def test_ctc_prefix_scorer_decodes_one_by_one_with_espnets_search(trained, tiny_corpus):
    # the CTC prefix scorer keeps per-utterance state: each utterance is decoded alone, counted
    # by the meter's hooks (its decoder steps; the encoder as the lean path counts it)
    exp, _ = trained
    s2t = decoder(exp, ctc_weight=0.3)
    assert s2t.search == "espnet" and "ctc" in s2t.beam_search.part_scorers
    lean = decoder(exp)
    utts = utterances(tiny_corpus, 4)
    args = [u[1] for u in utts], [u[2] for u in utts], [u[3] for u in utts]
    batched = s2t.decode_batch(*args)
    plain = lean.decode_batch(*args)
    for (_, wav, lang, task), b, p in list(zip(utts, batched, plain))[::-1]:  # alone, in reverse
        assert_same(s2t(wav, lang_sym=lang, task_sym=task), b.results)
        assert b.gflops == s2t.meter.gflops and s2t.meter.decoder_steps > 3
        for side in ("encoder", "decoder"):
            assert torch.equal(p.gates[side], b.gates[side])
        for part in ("subsampling", "encoder"):
            assert b.gflops[part] == pytest.approx(p.gflops[part], rel=1e-9)
    # CTC changes the search: not the hypotheses of the attention decoder alone for every utterance
    assert [b.results[0][2] for b in batched] != [p.results[0][2] for p in plain]


def test_batch_argument_errors(trained, tiny_corpus):
    exp, _ = trained
    s2t = decoder(exp)
    wav = utterances(tiny_corpus, 1)[0][1]
    with pytest.raises(ValueError, match="lang_sym has 1 entries for 2 utterances"):
        s2t.decode_batch([wav, wav], ["<eng>"], ["<asr>", "<asr>"])
    with pytest.raises(ValueError, match="unknown lang_sym <xyz>"):
        s2t.decode_batch([wav], ["<xyz>"], ["<asr>"])


def _cli(exp, scp, out, *extra):
    return [
        sys.executable, "-m", "espnet_ext.bin.s2t_inference", "--ngpu", "0",
        "--s2t_train_config", str(exp / "config.yaml"), "--s2t_model_file", str(exp / "10epoch.pth"),
        "--data_path_and_name_and_type", f"{scp},speech,sound", "--lang_sym", "deu",
        "--task_sym", "st_eng", "--beam_size", "3", "--output_dir", str(out), *extra,
    ]


def _outputs(out):
    files = ["1best_recog/text", "1best_recog/token_int", "1best_recog/score", "gates/encoder",
             "gates/decoder", "gflops"]
    return {f: (out / f).read_text() for f in files}


def test_cli_batched_equals_one_by_one_and_resumes(trained, tiny_corpus, tmp_path, caplog):
    from espnet_ext.bin import s2t_inference

    exp, _ = trained
    scp = tmp_path / "wav.scp"
    lines = (tiny_corpus["valid"] / "wav.scp").read_text().splitlines()[:8]
    scp.write_text("\n".join(lines) + "\n")
    one = tmp_path / "one"
    s2t_inference.main(_cli(exp, scp, one)[3:])
    batched = tmp_path / "batched"
    s2t_inference.main(_cli(exp, scp, batched, "--batch_size", "3")[3:])
    ref = _outputs(one)
    assert len(ref["1best_recog/text"].splitlines()) == len(lines)
    assert _outputs(batched)["1best_recog/token_int"] == ref["1best_recog/token_int"]
    assert _outputs(batched)["gates/decoder"] == ref["gates/decoder"]
    scores = [np.array([float(l.split()[1]) for l in o["1best_recog/score"].splitlines()])
              for o in (ref, _outputs(batched))]
    assert np.allclose(*scores, atol=1e-4)

    # killed (SIGKILL) mid-way: no final file yet; a rerun skips the finished
    # utterances and ends with the uninterrupted run's outputs
    resumed = tmp_path / "resumed"
    progress = resumed / "logdir" / "decoded.jsonl"
    proc = subprocess.Popen(_cli(exp, scp, resumed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if progress.exists() and progress.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (resumed / "1best_recog" / "text").exists()
    n_done = progress.read_text().count("\n")
    assert 0 < n_done < len(lines)
    with caplog.at_level("WARNING"):
        s2t_inference.main(_cli(exp, scp, resumed)[3:])
    assert f"resuming: {n_done} utterances already decoded" in caplog.text
    assert progress.read_text().count("\n") == len(lines)
    assert _outputs(resumed) == ref
