"""LeanBeamSearch gives ESPnet's BatchBeamSearch hypotheses, for gated and stock models."""

import pytest
import torch
from espnet2.bin.s2t_inference import Speech2Text
from test_batch_decode import assert_same, decoder, diversify_decoder_gates, utterances
from tiny_corpus import stock_copy

from espnet_ext.s2t.inference import Speech2TextGated
from espnet_ext.s2t.meter import decoder_macs
from espnet_ext.s2t.lean_search import LeanBeamSearch

pytestmark = pytest.mark.slow


def lean_and_espnet(exp, **kw):
    return decoder(exp, search="lean", **kw), decoder(exp, search="espnet", **kw)


def check_same(lean, espnet, utts, wavs=None):
    wavs = wavs or [u[1] for u in utts]
    langs, tasks = [u[2] for u in utts], [u[3] for u in utts]
    assert lean.lean is not None
    batched = lean.decode_batch(wavs, langs, tasks)
    for wav, lang, task, b in zip(wavs, langs, tasks, batched):
        assert_same(espnet(wav, lang_sym=lang, task_sym=task), b.results)
        assert espnet.gates == {} or torch.equal(espnet.gates["decoder"], b.gates["decoder"])
    return batched


@pytest.mark.parametrize("beam", [1, 4])
def test_lean_equals_espnet_with_mixed_gates(trained, tiny_corpus, beam):
    exp, _ = trained
    lean, espnet = lean_and_espnet(exp, beam_size=beam, nbest=min(beam, 2))
    utts = utterances(tiny_corpus)
    wavs = [wav[: len(wav) - 800 * i] for i, (_, wav, _, _) in enumerate(utts)]
    langs, tasks = [u[2] for u in utts], [u[3] for u in utts]
    for s2t in (lean, espnet):  # the same gate shift in both copies
        diversify_decoder_gates(s2t, wavs, langs, tasks)
    batched = check_same(lean, espnet, utts, wavs)
    # rows of one batch ran with different decoder gates
    assert len({str(b.gates["decoder"].tolist()) for b in batched}) >= 3


def test_lean_length_rules(trained, tiny_corpus):
    # a length bonus, a minimum length, a maximum length that cuts hypotheses
    # (<eos> appended at the last step), and length-normalised ranking
    exp, _ = trained
    utts = utterances(tiny_corpus, 4)
    for kw in (dict(penalty=0.7, minlenratio=0.1), dict(maxlenratio=0.1), dict(normalize_length=True)):
        lean, espnet = lean_and_espnet(exp, beam_size=3, nbest=3, **kw)
        assert set(lean.lean.weights) >= ({"length_bonus"} if "penalty" in kw else set())
        check_same(lean, espnet, utts)


def test_lean_on_a_stock_model(trained, tiny_corpus, tmp_path):
    exp, _ = trained
    stock = stock_copy(exp, tmp_path / "stock")
    conf = dict(beam_size=4, maxlenratio=0.0, lang_sym="<eng>", task_sym="<asr>")
    ref = Speech2Text(stock / "config.yaml", stock / "model.pth", device="cpu", **conf)
    lean = Speech2TextGated(stock / "config.yaml", stock / "model.pth", device="cpu", **conf)
    utts = utterances(tiny_corpus, 4)
    batched = lean.decode_batch([u[1] for u in utts], [u[2] for u in utts], [u[3] for u in utts])
    for (_, wav, lang, task), b in zip(utts, batched):
        assert_same(ref(wav, lang_sym=lang, task_sym=task), b.results)
        assert b.gates == {}


def test_ctc_prefix_scoring_keeps_espnet_search(trained):
    exp, _ = trained
    s2t = decoder(exp, search="lean", ctc_weight=0.3)
    assert s2t.lean is None
    assert "CTC" in LeanBeamSearch.unsupported(s2t.beam_search)
    with pytest.raises(ValueError, match="lean beam search does not support partial scorers"):
        LeanBeamSearch.from_espnet(s2t.beam_search)
    with pytest.raises(ValueError, match="search must be one of"):
        decoder(exp, search="fast")


def test_decoder_macs_count_what_the_lean_search_runs(trained, tiny_corpus):
    # every Linear call of the lean decode, counted by hooks, plus the attention
    # products (2 x queries x keys x D per attention call) equals the formula
    exp, _ = trained
    s2t = decoder(exp, search="lean", beam_size=3)
    _, wav, lang, task = utterances(tiny_corpus, 1)[0]
    dec = s2t.s2t_model.decoder
    with torch.no_grad():
        gates = s2t.predict_gates(wav, lang, task)["decoder"]
    linear, frames = [0], []

    def count(m, inp, out):
        linear[0] += inp[0].numel() // m.in_features * m.in_features * m.out_features

    hooks = [m.register_forward_hook(count) for m in dec.modules() if isinstance(m, torch.nn.Linear)
             and not any(m is p for p in dec.gate_predictor.modules())]
    kv = dec.decoders[0].src_attn.linear_k  # sees the encoder output once
    hooks.append(kv.register_forward_hook(lambda m, inp, out: frames.append(inp[0].size(1))))
    try:
        s2t.decode_batch([wav], [lang], [task])
    finally:
        for h in hooks:
            h.remove()
    steps, (n_frames,) = s2t.lean.steps[0], frames
    d = kv.in_features
    products = sum(
        n * 2 * n_new * d * float((prefix * gates[:, 0] + n_frames * gates[:, 1]).sum())
        for n, n_new, prefix in steps
    )
    assert len(steps) > 3 and steps[0] == (1, 4, 4) and steps[1][1:] == (1, 5)
    assert decoder_macs(dec, steps, n_frames, gates) == pytest.approx(linear[0] + products, rel=1e-9)
