"""Gated Whisper encoder/decoder against openai-whisper on a tiny random Whisper."""

import pytest
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from espnet_ext.gating import GateContext, GateRecord, force_gates, pin_gates
from espnet_ext.nets.whisper_decoder_token_condition import WhisperDecoderTokenCondition
from espnet_ext.nets.whisper_token_condition import WhisperTokenConditionEncoder
from espnet_ext.s2t.lean_search import LeanBeamSearch
from espnet_ext.whisper.layout import split_whisper_state

VOCAB, D, HEADS, LAYERS = 51865, 64, 4, 2
SOT, DE, EN, TRANSCRIBE, TRANSLATE, NO_TS, EOT = 50258, 50261, 50259, 50359, 50358, 50363, 50257


def build(pad_to_30s=False, **gate_kw):
    """openai-whisper with random weights, and our modules holding the same weights."""
    torch.manual_seed(0)
    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=D, n_audio_head=HEADS, n_audio_layer=LAYERS,
        n_vocab=VOCAB, n_text_ctx=448, n_text_state=D, n_text_head=HEADS, n_text_layer=LAYERS,
    )
    ref = Whisper(dims).eval()
    with torch.no_grad():
        for p in ref.parameters():  # openai-whisper leaves most weights uninitialised
            p.normal_(0.0, 0.2)
    enc = WhisperTokenConditionEncoder(
        1, D, HEADS, 4 * D, LAYERS, pad_to_30s=pad_to_30s, context_vocab_size=VOCAB, **gate_kw
    ).eval()
    dec = WhisperDecoderTokenCondition(VOCAB, D, HEADS, 4 * D, LAYERS, **gate_kw).eval()
    for module, state in zip((enc, dec), split_whisper_state(ref.state_dict())):
        missing, unexpected = module.load_state_dict(state, strict=False)
        assert unexpected == []
        assert missing and all(k.startswith("gate_predictor.") for k in missing)
    return ref, enc, dec


def audio(lengths=(48000, 30000, 17000)):
    torch.manual_seed(1)
    x = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        x[i, :n] = 0.1 * torch.randn(n)
    return x, torch.tensor(lengths)


def prompts():
    return torch.tensor([
        [SOT, DE, TRANSCRIBE, NO_TS, 100, 200, 300],
        [SOT, DE, TRANSLATE, NO_TS, 400, 500, 600],
        [SOT, EN, TRANSCRIBE, NO_TS, 700, 800, 900],
    ])


def test_all_open_equals_openai_whisper_on_30s_input():
    ref, enc, dec = build(pad_to_30s=True)
    x, lens = audio()
    ys = prompts()
    with torch.no_grad(), force_gates(enc, 1.0), force_gates(dec, 1.0):
        mel = torch.stack([whisper.log_mel_spectrogram(whisper.pad_or_trim(a[:n])) for a, n in zip(x, lens)])
        ref_out = ref.encoder(mel)
        out, olens, _ = enc(x, lens)
        ref_logits = ref.decoder(ys, ref_out)
        logits, _ = dec(out, olens, ys, torch.full((3,), ys.size(1)))
    assert olens.tolist() == [1500] * 3
    assert (ref_out - out).abs().max() < 1e-5
    assert (ref_logits - logits).abs().max() < 1e-4
    # the same next-token ranking as openai-whisper at every position
    assert torch.equal(ref_logits.argmax(-1), logits.argmax(-1))


def one_by_one(enc, dec, x, lens, ys):
    outs, logits = [], []
    for i, n in enumerate(lens.tolist()):
        o, ol, _ = enc(x[i : i + 1, :n], lens[i : i + 1])
        outs.append(o[0])
        logits.append(dec(o, ol, ys[i : i + 1], torch.tensor([ys.size(1)]))[0][0])
    return outs, logits


def test_padded_batch_equals_one_by_one():
    _, enc, dec = build()
    x, lens = audio()
    ys = prompts()
    with torch.no_grad(), force_gates(enc, 1.0), force_gates(dec, 1.0):
        out, olens, _ = enc(x, lens)
        logits, _ = dec(out, olens, ys, torch.full((3,), ys.size(1)))
        outs, ref_logits = one_by_one(enc, dec, x, lens, ys)
    # 100 frames a second, halved by the stride-2 convolution
    assert olens.tolist() == [150, 94, 53]
    for i, n in enumerate(olens.tolist()):
        assert outs[i].size(0) == n
        assert (out[i, :n] - outs[i]).abs().max() < 1e-5
        assert (logits[i] - ref_logits[i]).abs().max() < 1e-4


def test_gates_read_the_context_and_closed_units_do_not_run():
    rec = GateRecord()
    _, enc, dec = build()
    x, lens = audio()
    ys = prompts()
    ctx = GateContext(tokens=ys[:, 1:3])
    calls = {"attn": 0, "ffn": 0}
    for layer in enc.encoders:
        layer.self_attn.register_forward_hook(lambda *a: calls.__setitem__("attn", calls["attn"] + 1))
        layer.feed_forward.register_forward_hook(lambda *a: calls.__setitem__("ffn", calls["ffn"] + 1))
    with torch.no_grad():
        # one utterance, told it is German ASR, then German-to-English ST
        same = x[:1].repeat(2, 1)
        told = GateContext(tokens=torch.tensor([[DE, TRANSCRIBE], [DE, TRANSLATE]]))
        enc(same, lens[:1].repeat(2), context=told, record=rec)
        assert (rec.probs["encoder"][0] - rec.probs["encoder"][1]).abs().max() > 1e-4
        enc(x, lens, context=ctx, record=rec)
        assert rec.gates["encoder"].shape == (3, LAYERS, 2)
        assert dec.unit_names == ("self_attn", "src_attn", "ffn")
        assert calls == {"attn": 2 * LAYERS, "ffn": 2 * LAYERS}  # open at init (gate_init_bias)
        closed = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        with pin_gates(enc, closed):
            enc(x, lens, context=ctx, record=rec)
    assert calls == {"attn": 2 * LAYERS + 1, "ffn": 2 * LAYERS + 1}


def test_lean_search_batched_equals_one_by_one_with_mixed_gates():
    _, enc, dec = build()
    x, lens = audio()
    primers = prompts()[:, :4].tolist()
    gates = torch.ones(3, LAYERS, 3)
    gates[0, 1, 0] = 0.0  # utterance 0: no self-attention in block 1
    gates[2, 0, 2] = 0.0  # utterance 2: no MLP in block 0
    search = LeanBeamSearch(dec, beam_size=3, eos=EOT, weights={"decoder": 1.0})
    with torch.no_grad(), force_gates(enc, 1.0):
        memory, olens, _ = enc(x, lens)
    batched = search(memory, olens, primers, gates, maxlenratio=-6)
    for u in range(3):
        n = int(olens[u])
        alone = search(memory[u : u + 1, :n], olens[u : u + 1], primers[u : u + 1], gates[u : u + 1], maxlenratio=-6)
        assert [h.yseq.tolist() for h in alone[0]] == [h.yseq.tolist() for h in batched[u]]
        assert abs(float(alone[0][0].score) - float(batched[u][0].score)) < 1e-3
    # ... and the best hypothesis scores what teacher forcing gives it
    best = batched[1][0].yseq
    with torch.no_grad(), pin_gates(dec, gates[1:2]):
        n = int(olens[1])
        logits, _ = dec(memory[1:2, :n], olens[1:2], best[None, :-1], torch.tensor([best.numel() - 1]))
    logp = torch.log_softmax(logits[0], -1)
    # stopped by maxlen: 6 tokens scored, then <eos> appended unscored (as ESPnet)
    assert best.numel() == 4 + 6 + 1 and int(best[-1]) == EOT
    forced = sum(float(logp[t - 1, best[t]]) for t in range(4, best.numel() - 1))
    assert abs(forced - float(batched[1][0].score)) < 1e-3


def test_training_gradient_reaches_both_predictors():
    rec = GateRecord()
    _, enc, dec = build()
    enc.train(), dec.train()
    x, lens = audio()
    ys = prompts()
    ctx = GateContext(tokens=ys[:, 1:3])
    out, olens, _ = enc(x, lens, context=ctx, record=rec)
    logits, _ = dec(out, olens, ys, torch.full((3,), ys.size(1)), context=ctx, record=rec)
    (logits.logsumexp(-1).mean() + rec.probs["encoder"].sum() + rec.probs["decoder"].sum()).backward()
    for m in (enc, dec):
        assert m.gate_predictor.net.weight.grad.abs().sum() > 0
        assert m.embed is not None


def test_unit_costs_and_output_layer_tied():
    _, enc, dec = build()
    costs = enc.unit_costs(150)
    # attention: 4 projections of D x D per frame + 2 x T x D for scores and mixing
    assert costs[0, 0].item() == 150 * 4 * D * D + 2 * 150 * 150 * D
    assert costs[0, 1].item() == 150 * 2 * D * 4 * D
    assert dec.unit_costs(150, n_tokens=5).shape == (LAYERS, 3)
    assert dec.output_layer.weight is dec.embed.token_embedding.weight
    assert dec.output_layer.bias is None


def test_input_errors():
    _, enc, dec = build()
    with pytest.raises(ValueError, match="raw audio"):
        enc(torch.zeros(1, 100, 80), torch.tensor([100]))
    with pytest.raises(ValueError, match="longer than Whisper's 1500"):
        enc(torch.zeros(1, 31 * 16000), torch.tensor([31 * 16000]))
    with pytest.raises(ValueError, match="longer than Whisper's 448"):
        dec.embed(torch.zeros(1, 449, dtype=torch.long))


def test_registered_in_espnet():
    from espnet2.tasks.s2t import decoder_choices, encoder_choices

    assert encoder_choices.classes["whisper_token_condition"] is WhisperTokenConditionEncoder
    assert decoder_choices.classes["whisper_decoder_token_condition"] is WhisperDecoderTokenCondition
