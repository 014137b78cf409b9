import pytest
import torch
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

from espnet_ext import flops
from espnet_ext.gating import GateContext, GateRecord, force_gates, pin_gates
from espnet_ext.nets.transformer_encoder_token_condition import (
    TransformerTokenConditionEncoder,
)

VARIANTS = {
    "pre_ln": dict(),
    "post_ln": dict(normalize_before=False),
    "concat_after": dict(concat_after=True),
    "post_ln_concat_after": dict(normalize_before=False, concat_after=True),
    "conv1d_ffn": dict(positionwise_layer_type="conv1d", positionwise_conv_kernel_size=3),
    "linear_input": dict(input_layer="linear"),
    "conv2d6": dict(input_layer="conv2d6"),
}
PREDICTORS = ("global", "local")


def conf(**kw):
    c = dict(output_size=16, attention_heads=2, linear_units=24, num_blocks=3, input_layer="conv2d")
    c.update(kw)
    return c


def build(variant="pre_ln", **kw):
    torch.manual_seed(0)
    stock = TransformerEncoder(20, **conf(**VARIANTS[variant])).eval()
    gated = TransformerTokenConditionEncoder(20, **conf(**VARIANTS[variant]), **kw).eval()
    missing, unexpected = gated.load_state_dict(stock.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(k.startswith("gate_predictor.") for k in missing)
    return stock, gated


def batch(n=3, t=50):
    torch.manual_seed(1)
    xs = torch.randn(n, t, 20)
    lens = torch.tensor([t, t - 12, t - 23][:n])
    return xs, lens


def count_calls(modules):
    calls = {"rows": 0, "n": 0}

    def hook(_m, args, _out):
        calls["n"] += 1
        calls["rows"] += args[0].size(0)

    for m in modules:
        m.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize("predictor", PREDICTORS)
def test_state_dict_keys_are_stock_plus_gate_predictor(predictor):
    stock, gated = build(gate_predictor=predictor)
    extra = set(gated.state_dict()) - set(stock.state_dict())
    assert set(stock.state_dict()) <= set(gated.state_dict())
    assert extra and all(k.startswith("gate_predictor.") for k in extra)
    if predictor == "local":
        assert {k.split(".")[2] for k in extra} == {"0", "1", "2"}  # gate_predictor.layers.<l>


@pytest.mark.parametrize("predictor", PREDICTORS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_all_open_equals_stock(variant, predictor):
    rec = GateRecord()
    stock, gated = build(variant, gate_predictor=predictor)
    xs, lens = batch()
    with torch.no_grad():
        ref, ref_lens, _ = stock(xs, lens)
        with force_gates(gated, 1.0):
            out, out_lens, _ = gated(xs, lens, record=rec)
    assert torch.equal(ref_lens, out_lens)
    assert (ref - out).abs().max().item() < 1e-5
    assert rec.gates["encoder"].shape == (3, 3, 2) and bool((rec.gates["encoder"] == 1).all())


@pytest.mark.parametrize("normalize_before", [True, False])
def test_interctc_all_open_equals_stock(normalize_before):
    stock, gated = build("pre_ln" if normalize_before else "post_ln")
    stock.interctc_layer_idx = gated.interctc_layer_idx = [1, 2]
    xs, lens = batch()
    with torch.no_grad(), force_gates(gated, 1.0):
        (ref, ref_mid), _, _ = stock(xs, lens)
        (out, out_mid), _, _ = gated(xs, lens)
    assert (ref - out).abs().max() < 1e-5
    assert [i for i, _ in out_mid] == [1, 2]
    for (i, a), (j, b) in zip(ref_mid, out_mid):
        assert i == j and (a - b).abs().max() < 1e-5


@pytest.mark.parametrize("predictor", PREDICTORS)
@pytest.mark.parametrize("variant", ["pre_ln", "post_ln"])
def test_all_closed_runs_no_gated_module(variant, predictor):
    _, gated = build(variant, gate_predictor=predictor)
    mods = [m for layer in gated.encoders for m in (layer.self_attn, layer.feed_forward)]
    mods += [m for layer in gated.encoders for m in (layer.norm1, layer.norm2)]
    calls = count_calls(mods)
    predictor_calls = count_calls([gated.gate_predictor])
    xs, lens = batch()
    with torch.no_grad(), force_gates(gated, 0.0):
        out, _, _ = gated(xs, lens)
    assert calls["n"] == 0 and predictor_calls["n"] == 0
    with torch.no_grad():  # only the input layer and after_norm remain
        x, _ = gated.embed(xs, None)
        ref = gated.after_norm(x) if gated.normalize_before else x
    assert (out - ref).abs().max() < 1e-6
    assert gated.fixed_gates is None  # restored


@pytest.mark.parametrize("predictor", PREDICTORS)
@pytest.mark.parametrize("variant", ["pre_ln", "post_ln_concat_after"])
def test_mixed_gates_skip_rows_and_match_one_by_one(variant, predictor):
    rec = GateRecord()
    _, gated = build(variant, gate_predictor=predictor)
    xs, _ = batch()
    lens = torch.full((3,), xs.size(1))  # ESPnet masks depend on the batch max length
    gates = torch.ones(3, 3, 2)
    gates[0, 0, 0] = 0  # row 0: layer 0 attention closed
    gates[1, 1, :] = 0  # row 1: layer 1 entirely closed
    gates[2, :, 1] = 0  # row 2: every FFN closed
    attn = count_calls([layer.self_attn for layer in gated.encoders])
    ffn = count_calls([layer.feed_forward for layer in gated.encoders])
    with torch.no_grad(), pin_gates(gated, gates):
        out, out_lens, _ = gated(xs, lens, record=rec)
    # 9 (layer, row) pairs: attention closed in 2, FFN closed in 1 + 3
    assert attn["rows"] == 9 - 2
    assert ffn["rows"] == 9 - 4
    assert torch.equal(rec.gates["encoder"], gates)
    for b in range(3):
        with torch.no_grad(), pin_gates(gated, gates[b : b + 1]):
            one, _, _ = gated(xs[b : b + 1], lens[b : b + 1], record=rec)
        assert (one[0] - out[b]).abs().max() < 1e-5


@pytest.mark.parametrize("predictor", PREDICTORS)
def test_eval_computes_only_open_rows_of_predicted_gates(predictor):
    rec = GateRecord()
    _, gated = build(gate_predictor=predictor)
    # large logits of either sign: some rows close some units
    torch.manual_seed(3)
    for p in gated.gate_predictor.modules():
        if isinstance(p, torch.nn.Linear):
            torch.nn.init.normal_(p.weight, std=3.0)
            torch.nn.init.zeros_(p.bias)
    attn = count_calls([layer.self_attn for layer in gated.encoders])
    ffn = count_calls([layer.feed_forward for layer in gated.encoders])
    xs, lens = batch()
    with torch.no_grad():
        gated(xs, lens, record=rec)
    g = rec.gates["encoder"]
    assert set(g.unique().tolist()) == {0.0, 1.0}
    assert attn["rows"] == int(g[..., 0].sum()) and ffn["rows"] == int(g[..., 1].sum())
    with torch.no_grad():
        first = g.clone()
        gated(xs, lens, record=rec)
    assert torch.equal(first, rec.gates["encoder"])  # eval gates are deterministic


def test_local_predictor_reads_each_layers_input():
    """Layer l's local predictor pools the output of layer l-1 (I3D), so its
    decision follows what the earlier gates did for the utterance."""
    rec = GateRecord()
    _, gated = build(gate_predictor="local")
    torch.manual_seed(5)
    for p in gated.gate_predictor.modules():
        if isinstance(p, torch.nn.Linear):
            torch.nn.init.normal_(p.weight, std=3.0)
    seen = {}
    hooks = [
        pred.register_forward_hook(lambda m, args, out, l=l: seen.__setitem__(l, args[0]))
        for l, pred in enumerate(gated.gate_predictor.layers)
    ]
    xs, _ = batch()
    lens = torch.full((3,), xs.size(1))
    with torch.no_grad():
        gated(xs, lens, record=rec)
        gates = rec.gates["encoder"]
        x, m = gated.embed(xs, ~torch.zeros(3, 1, 50, dtype=torch.bool))
        assert torch.equal(seen[0], x)
        for l in range(2):
            x = gated.layer_forward(gated.encoders[l], x, m, gates[:, l])
            assert (seen[l + 1] - x).abs().max() < 1e-6
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("predictor", PREDICTORS)
def test_training_gradient_reaches_the_predictor(predictor):
    rec = GateRecord()
    _, gated = build(gate_predictor=predictor, gate_context=["spk"], spk_embed_dim=8)
    gated.train()
    xs, lens = batch()
    ctx = GateContext(spk_embed=torch.randn(3, 8))
    torch.manual_seed(0)
    out, _, _ = gated(xs, lens, context=ctx, record=rec)
    assert rec.gates["encoder"].shape == (3, 3, 2) and rec.gates["encoder"].requires_grad
    assert set(rec.gates["encoder"].unique().tolist()) <= {0.0, 1.0}
    loss = out.pow(2).mean() + rec.gates["encoder"].mean()
    loss.backward()
    grads = [p.grad for n, p in gated.gate_predictor.named_parameters() if "net" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    spk = [p.grad for n, p in gated.gate_predictor.named_parameters() if "proj.spk.0.weight" in n]
    assert spk and all(g.abs().sum() > 0 for g in spk)


def test_default_needs_no_context_and_spk_context_is_checked():
    _, gated = build()
    xs, lens = batch()
    with torch.no_grad():
        gated(xs, lens)  # ASR default: the input alone decides
    _, gated = build(gate_context=["spk"], spk_embed_dim=8)
    with pytest.raises(ValueError, match="needs context"):
        gated(xs, lens)
    with pytest.raises(ValueError, match=r"\(#batch, 8\)"):
        gated(xs, lens, context=GateContext(spk_embed=torch.zeros(3, 5)))


def test_unit_costs_match_traced_macs():
    _, gated = build("concat_after")
    n = 11
    x = torch.randn(1, n, 16)
    costs = gated.unit_costs(n)
    assert costs.shape == (3, 2)
    layer = gated.encoders[0]
    mask = torch.ones(1, 1, n, dtype=torch.bool)
    traced_ffn = flops.traced(layer.feed_forward, x)
    assert costs[0, 1] == traced_ffn
    # attention: the projections (traced) + scores and weighted sum (2 n^2 d)
    traced_attn = flops.traced(layer.self_attn, x, x, x, mask)
    traced_attn += flops.traced(layer.concat_linear, torch.cat([x, x], -1))
    assert costs[0, 0] == traced_attn + 2 * n * n * 16


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(gate_predictor="layer"), "gate_predictor"),
        (dict(gate_pooling="max"), "gate_pooling"),
        (dict(gate_context=["speaker"]), "gate_context"),
        (dict(gate_context=["spk"]), "spk_embed_dim"),
        (dict(gate_context=["lang"]), "context_vocab_size"),
    ],
)
def test_invalid_gate_conf(kw, match):
    with pytest.raises(ValueError, match=match):
        TransformerTokenConditionEncoder(20, **conf(), **kw)
