import pytest
import torch
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder

from espnet_ext.gating import GateContext, GateRecord, force_gates, pin_gates
from espnet_ext.nets.e_branchformer_token_condition import (
    EBranchformerTokenConditionEncoder,
)

VOCAB = 12
CONFS = {
    "abs_pos": dict(attention_layer_type="selfattn", pos_enc_layer_type="abs_pos"),
    "rel_pos": dict(attention_layer_type="rel_selfattn", pos_enc_layer_type="rel_pos"),
    "fast_selfattn": dict(attention_layer_type="fast_selfattn", pos_enc_layer_type="abs_pos"),
}


def conf(pos="abs_pos", macaron=True, **kw):
    c = dict(
        output_size=16,
        attention_heads=2,
        cgmlp_linear_units=32,
        cgmlp_conv_kernel=3,
        linear_units=24,
        num_blocks=3,
        use_ffn=macaron,
        macaron_ffn=macaron,
        merge_conv_kernel=3,
        input_layer="conv2d",
        **CONFS[pos],
    )
    c.update(kw)
    return c


def build(pos="abs_pos", macaron=True, **kw):
    torch.manual_seed(0)
    stock = EBranchformerEncoder(20, **conf(pos, macaron)).eval()
    gated = EBranchformerTokenConditionEncoder(
        20, context_vocab_size=VOCAB, **conf(pos, macaron), **kw
    ).eval()
    missing, unexpected = gated.load_state_dict(stock.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(k.startswith("gate_predictor.") for k in missing)
    return stock, gated


def batch(n=3, t=50):
    torch.manual_seed(1)
    xs = torch.randn(n, t, 20)
    lens = torch.tensor([t, t - 12, t - 23][:n])
    ctx = GateContext(tokens=torch.tensor([[1, 5], [2, 6], [1, 7]][:n]))
    return xs, lens, ctx


def count_calls(modules):
    calls = {"rows": 0, "n": 0}

    def hook(_m, args, _out):
        calls["n"] += 1
        calls["rows"] += args[0].size(0)

    for m in modules:
        m.register_forward_hook(hook)
    return calls


def units(enc):
    mods = []
    for layer in enc.encoders:
        mods += [layer.attn, layer.cgmlp, layer.merge_proj, layer.depthwise_conv_fusion]
        mods += [m for m in (layer.feed_forward, layer.feed_forward_macaron) if m is not None]
    return mods


def test_state_dict_keys_are_stock_plus_gate_predictor():
    stock, gated = build()
    extra = set(gated.state_dict()) - set(stock.state_dict())
    assert set(stock.state_dict()) <= set(gated.state_dict())
    assert extra and all(k.startswith("gate_predictor.") for k in extra)


@pytest.mark.parametrize("pos", list(CONFS))
@pytest.mark.parametrize("macaron", [True, False])
def test_all_open_equals_stock(pos, macaron):
    stock, gated = build(pos, macaron)
    assert gated.unit_names == (("ffn1", "attn", "cgmlp", "ffn2") if macaron else ("attn", "cgmlp"))
    xs, lens, _ = batch()
    with torch.no_grad():
        ref, ref_lens, _ = stock(xs, lens)
        with force_gates(gated, 1.0):
            out, out_lens, _ = gated(xs, lens)
    assert torch.equal(ref_lens, out_lens)
    assert (ref - out).abs().max().item() < 1e-5


def test_interctc_all_open_equals_stock():
    stock, gated = build(interctc_layer_idx=None)
    stock.interctc_layer_idx = gated.interctc_layer_idx = [1, 2]
    xs, lens, _ = batch()
    with torch.no_grad(), force_gates(gated, 1.0):
        (ref, ref_mid), _, _ = stock(xs, lens)
        (out, out_mid), _, _ = gated(xs, lens)
    assert (ref - out).abs().max() < 1e-5
    for (i, a), (j, b) in zip(ref_mid, out_mid):
        assert i == j and (a - b).abs().max() < 1e-5


def test_all_closed_runs_no_gated_module():
    _, gated = build()
    calls = count_calls(units(gated))
    xs, lens, _ = batch()
    with torch.no_grad(), force_gates(gated, 0.0):
        out, _, _ = gated(xs, lens)
    assert calls["n"] == 0
    # only subsampling + per-layer norm_final + after_norm remain
    with torch.no_grad():
        x, m = gated.embed(xs, None)
        for layer in gated.encoders:
            x = layer.norm_final(x)
        assert torch.allclose(out, gated.after_norm(x), atol=1e-6)
    assert gated.fixed_gates is None  # restored


def test_mixed_gates_skip_rows_and_match_one_by_one():
    _, gated = build()
    xs, _, _ = batch()
    lens = torch.full((3,), xs.size(1))  # ESPnet masks depend on the batch max length
    gates = torch.ones(3, 3, 4)
    gates[0, 0, 1] = 0  # row 0: layer 0 attention closed
    gates[1, 1, :] = 0  # row 1: layer 1 entirely closed
    gates[2, 2, 1:3] = 0  # row 2: layer 2 both branches closed -> merge skipped
    attn = count_calls([layer.attn for layer in gated.encoders])
    merge = count_calls([layer.merge_proj for layer in gated.encoders])
    with torch.no_grad(), pin_gates(gated, gates):
        out, out_lens, _ = gated(xs, lens)
    # 9 (layer, row) pairs: attention closed in 3, both branches closed in 2
    assert attn["rows"] == 9 - 3
    assert merge["rows"] == 9 - 2
    for b in range(3):
        with torch.no_grad(), pin_gates(gated, gates[b : b + 1]):
            one, _, _ = gated(xs[b : b + 1, : lens[b]], lens[b : b + 1])
        n = out_lens[b]
        assert (one[0, :n] - out[b, :n]).abs().max() < 1e-5


def test_predicted_gates_depend_on_context_and_train_through_straight_through():
    rec = GateRecord()
    _, gated = build()
    gated.train()
    xs, lens, ctx = batch()
    torch.manual_seed(0)
    out, olens, _ = gated(xs, lens, context=ctx, record=rec)
    assert rec.gates["encoder"].shape == (3, 3, 4)
    assert set(rec.gates["encoder"].unique().tolist()) <= {0.0, 1.0}
    loss = out.pow(2).mean() + rec.gates["encoder"].mean()
    loss.backward()
    grads = {n: p.grad for n, p in gated.gate_predictor.named_parameters()}
    assert grads["net.weight"].abs().sum() > 0
    assert grads["context.proj.lang.0.weight"][1].abs().sum() > 0  # token 1 used
    assert grads["context.proj.lang.0.weight"][3].abs().sum() == 0  # token 3 unused


def test_eval_gates_are_deterministic_and_follow_context():
    rec = GateRecord()
    _, gated = build(gate_pooling="attention")
    torch.nn.init.normal_(gated.gate_predictor.net.weight, std=1.0)
    xs, lens, ctx = batch()
    with torch.no_grad():
        gated(xs, lens, context=ctx, record=rec)
        first = rec.gates["encoder"].clone()
        gated(xs, lens, context=ctx, record=rec)
        assert torch.equal(first, rec.gates["encoder"])
        other = GateContext(tokens=torch.tensor([[3, 9], [4, 10], [3, 11]]))
        gated(xs, lens, context=other, record=rec)
        assert not torch.equal(first, rec.gates["encoder"])


def test_missing_context_is_a_clear_error():
    _, gated = build(gate_context=["lang", "task", "spk"], spk_embed_dim=8)
    xs, lens, ctx = batch()
    with pytest.raises(ValueError, match="spk_embed"):
        gated(xs, lens, context=ctx)
    with pytest.raises(ValueError, match="needs context"):
        gated(xs, lens)
    bad = GateContext(tokens=ctx.tokens, spk_embed=torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"\(#batch, 8\)"):
        gated(xs, lens, context=bad)
    ok = GateContext(tokens=ctx.tokens, spk_embed=torch.zeros(3, 8))
    gated(xs, lens, context=ok)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(gate_pooling="max"), "gate_pooling"),
        (dict(gate_context=["lang", "speaker"]), "gate_context"),
        (dict(gate_context=["event"]), "event_embed_dim"),
        (dict(gate_context=["lang"], context_vocab_size=None), "context_vocab_size"),
    ],
)
def test_invalid_gate_conf(kw, match):
    c = dict(context_vocab_size=VOCAB)
    c.update(kw)
    with pytest.raises(ValueError, match=match):
        EBranchformerTokenConditionEncoder(20, **conf(), **c)


def test_fixed_gates_remove_modules_and_match_pinned_gates():
    _, gated = build()
    pattern = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 0, 0]])
    static = EBranchformerTokenConditionEncoder(
        20, gate_context=[], fixed_gates=pattern.tolist(), **conf()
    ).eval()
    state = gated.state_dict()
    missing, unexpected = static.load_state_dict(
        {k: v for k, v in state.items() if k in static.state_dict()}, strict=False
    )
    assert missing == [] and static.gate_predictor is None
    assert static.encoders[0].attn is None and static.encoders[1].merge_proj is None
    assert static.encoders[2].feed_forward is None and static.encoders[2].cgmlp is None
    n_static = sum(p.numel() for p in static.parameters())
    n_stock = sum(p.numel() for n, p in gated.named_parameters() if not n.startswith("gate_"))
    assert n_static < n_stock
    xs, lens, _ = batch()
    with torch.no_grad(), pin_gates(gated, pattern.float().unsqueeze(0)):
        ref, _, _ = gated(xs, lens)
    with torch.no_grad():
        out, _, _ = static(xs, lens)
    assert (ref - out).abs().max() < 1e-6
    with pytest.raises(ValueError, match="fixed_gates"):
        EBranchformerTokenConditionEncoder(20, gate_context=[], fixed_gates=[[1, 1]], **conf())


def test_gates_pool_over_the_speech_span_only():
    """OWSM pads every utterance to 30 s: the predictor must not average the padding."""
    rec = GateRecord()
    from dataclasses import replace

    _, gated = build()
    xs, _, ctx = batch(n=2, t=50)
    lens = torch.tensor([50, 50])  # padded, as the S2T preprocessor makes them
    span = torch.tensor([[0.0, 0.5], [0.2, 0.6]])
    ctx = replace(ctx, tokens=ctx.tokens[:2], speech_span=span)
    gated(xs, lens, context=ctx, record=rec)
    probs = rec.probs["encoder"].clone()
    noisy = xs.clone()
    noisy[0, 30:] = 5 * torch.randn(20, 20)  # outside the span (after subsampling: frames 6+)
    noisy[1, :6] = 5 * torch.randn(6, 20)
    noisy[1, 36:] = 5 * torch.randn(14, 20)
    gated(noisy, lens, context=ctx, record=rec)
    torch.testing.assert_close(rec.probs["encoder"], probs)
    gated(noisy, lens, context=replace(ctx, speech_span=None), record=rec)  # without: the padding counts
    assert not torch.allclose(rec.probs["encoder"], probs)


def test_span_mask_and_speech_span():
    from espnet_ext.gating.gated import span_mask
    from espnet_ext.s2t.espnet_model import speech_span

    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 8:] = False
    out = span_mask(mask, torch.tensor([[0.25, 0.5], [0.5, 1.0]]))
    assert out[0].nonzero().flatten().tolist() == [2, 3, 4]
    assert out[1].nonzero().flatten().tolist() == [4, 5, 6, 7]
    assert span_mask(mask, torch.tensor([[1.0, 1.0], [0.0, 0.0]])).sum(1).tolist() == [1, 1]
    speech = torch.zeros(3, 100)
    speech[0, :40] = 1.0  # speech, then padding
    speech[1, 10:30] = -1.0  # the training's random initial silence, speech, padding
    torch.testing.assert_close(speech_span(speech, torch.tensor([100, 100, 100])), torch.tensor(
        [[0.0, 0.4], [0.1, 0.3], [0.0, 1.0]]))  # an all-zero row spans everything


def test_unit_costs_are_the_macs_of_each_unit():
    """The FFN units by hand (d=16, 24 units: 2 * d * 24 MACs per frame); every unit grows
    with the frames; a module that cannot count its units says so."""
    from espnet_ext.gating import GatedModule

    _, gated = build()
    costs = gated.unit_costs(10)
    assert costs.shape == (3, 4) and gated.unit_names == ("ffn1", "attn", "cgmlp", "ffn2")
    assert costs[:, 0].tolist() == [10 * 2 * 16 * 24] * 3 and torch.equal(costs[:, 0], costs[:, 3])
    assert (gated.unit_costs(20) > costs).all()
    with pytest.raises(NotImplementedError, match="does not report its unit costs"):
        GatedModule().unit_costs(10)
