import pytest
import torch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet.nets.batch_beam_search import BatchBeamSearch

from espnet_ext.gating import GateContext, GateRecord, force_gates, pin_gates
from espnet_ext.nets.transformer_decoder_token_condition import GatedScorer
from espnet_ext.nets.transformer_decoder_token_condition import (
    TransformerDecoderTokenCondition,
)

VOCAB, D = 15, 16
CONF = dict(attention_heads=2, linear_units=24, num_blocks=3)


def build(**kw):
    torch.manual_seed(0)
    stock = TransformerDecoder(VOCAB, D, **CONF).eval()
    gated = TransformerDecoderTokenCondition(VOCAB, D, **CONF, **kw).eval()
    missing, unexpected = gated.load_state_dict(stock.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(k.startswith("gate_predictor.") for k in missing)
    return stock, gated


def data(n=3):
    torch.manual_seed(1)
    memory = torch.randn(n, 9, D)
    hlens = torch.tensor([9, 7, 5][:n])
    ys = torch.randint(0, VOCAB, (n, 6))
    ylens = torch.tensor([6, 4, 5][:n])
    ctx = GateContext(tokens=torch.tensor([[3, 4], [5, 6], [3, 7]][:n]))
    return memory, hlens, ys, ylens, ctx


def count_rows(modules):
    calls = {"rows": 0, "n": 0}

    def hook(_m, args, _out):
        calls["n"] += 1
        calls["rows"] += args[0].size(0)

    for m in modules:
        m.register_forward_hook(hook)
    return calls


def test_keys_and_all_open_forward_equals_stock():
    stock, gated = build()
    extra = set(gated.state_dict()) - set(stock.state_dict())
    assert extra and all(k.startswith("gate_predictor.") for k in extra)
    memory, hlens, ys, ylens, _ = data()
    with torch.no_grad(), force_gates(gated, 1.0):
        ref, ref_lens = stock(memory, hlens, ys, ylens)
        out, out_lens = gated(memory, hlens, ys, ylens)
    assert torch.equal(ref_lens, out_lens)
    assert (ref - out).abs().max() < 1e-5


def test_all_open_batch_score_equals_stock_over_steps():
    stock, gated = build()
    memory, _, _, _, _ = data()
    ys = torch.tensor([[1], [2], [3]])
    s_states, g_states = [None] * 3, [None] * 3
    with torch.no_grad(), force_gates(gated, 1.0):
        for _ in range(4):
            ref, s_states = stock.batch_score(ys, s_states, memory)
            out, g_states = gated.batch_score(ys, g_states, memory)
            assert (ref - out).abs().max() < 1e-5
            for a, b in zip(s_states, g_states):
                assert len(a) == len(b) == 3
                assert max((x - y).abs().max() for x, y in zip(a, b)) < 1e-5
            ys = torch.cat([ys, ref.argmax(-1, keepdim=True)], dim=1)


def test_all_closed_runs_nothing():
    _, gated = build()
    mods = []
    for layer in gated.decoders:
        mods += [layer.self_attn, layer.src_attn, layer.feed_forward]
    calls = count_rows(mods)
    memory, hlens, ys, ylens, _ = data()
    with torch.no_grad(), force_gates(gated, 0.0):
        out, _ = gated(memory, hlens, ys, ylens)
        logp, states = gated.batch_score(ys[:, :2], [None] * 3, memory)
    assert calls["n"] == 0
    with torch.no_grad():
        ref = gated.output_layer(gated.after_norm(gated.embed(ys)))
    assert torch.allclose(out, ref, atol=1e-6)
    # the cache layout stays ESPnet's: one (L, D) entry per layer and hyp
    assert len(states) == 3 and all(len(s) == 3 and s[0].shape == (2, D) for s in states)


def test_mixed_gates_match_one_by_one_and_skip_rows():
    _, gated = build()
    memory, _, ys, _, _ = data()
    hlens, ylens = torch.full((3,), 9), torch.full((3,), 6)
    gates = torch.ones(3, 3, 3)
    gates[0, 0, 0] = 0
    gates[1, 1, :] = 0
    gates[2, 2, 2] = 0
    ffn = count_rows([layer.feed_forward for layer in gated.decoders])
    with torch.no_grad(), pin_gates(gated, gates):
        out, _ = gated(memory, hlens, ys, ylens)
    assert ffn["rows"] == 9 - 2
    for b in range(3):
        with torch.no_grad(), pin_gates(gated, gates[b : b + 1]):
            one, _ = gated(memory[b : b + 1], hlens[b : b + 1], ys[b : b + 1], ylens[b : b + 1])
        assert (one[0] - out[b]).abs().max() < 1e-5


def test_beam_search_with_closed_layer_equals_stock_without_it():
    """A layer whose 3 units are closed must act as if it were removed."""
    stock, gated = build()
    del stock.decoders[1]  # MultiSequential supports deletion
    gates = torch.ones(1, 3, 3)
    gates[0, 1] = 0

    def search(decoder):
        bs = BatchBeamSearch(
            scorers={"decoder": decoder}, weights={"decoder": 1.0}, beam_size=3,
            vocab_size=VOCAB, sos=VOCAB - 1, eos=VOCAB - 1, token_list=None,
        )
        torch.manual_seed(0)
        memory = torch.randn(9, D)
        return bs(memory, maxlenratio=-5.0)

    with torch.no_grad():
        ref = search(stock)
        with pin_gates(gated, gates):
            out = search(gated)
    assert [h.yseq.tolist() for h in ref] == [h.yseq.tolist() for h in out]
    assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(ref, out))


def test_beam_search_scorer_carries_the_context_and_records_the_gates():
    _, gated = build()
    torch.nn.init.normal_(gated.gate_predictor.net.weight, std=2.0)
    memory = torch.randn(1, 9, D).expand(4, -1, -1)
    ys = torch.full((4, 1), VOCAB - 1)
    records = []
    with torch.no_grad():
        for tokens in ([[3, 4]], [[5, 6]]):
            context, record = GateContext(tokens=torch.tensor(tokens)), GateRecord()
            scorer = GatedScorer(gated, context, record)
            out, _ = scorer.batch_score(ys, [None] * 4, memory)
            # what the scorer recorded is what the decoder computes for that context
            assert torch.equal(record.gates["decoder"], gated.gates(memory[:1], None, context))
            pinned, _ = gated.forward_one_step(
                ys, None, memory, gates=record.gates["decoder"], context=None
            )
            assert (out - pinned).abs().max() < 1e-5
            records.append(record.gates["decoder"])
        with pytest.raises(ValueError, match="needs context"):  # no context, no stale one
            gated.batch_score(ys, [None] * 4, memory)
    assert records[0].shape == (1, 3, 3)
    assert not torch.equal(records[0], records[1])


def test_training_gradient_reaches_predictor():
    _, gated = build(gate_context=["lang", "task", "event"], event_embed_dim=4)
    gated.train()
    memory, hlens, ys, ylens, ctx = data()
    ctx.event_embed = torch.randn(3, 4)
    record = GateRecord()
    out, _ = gated(memory, hlens, ys, ylens, context=ctx, record=record)
    (out.logsumexp(-1).mean() + record.gates["decoder"].sum()).backward()
    g = gated.gate_predictor
    assert g.net.weight.grad.abs().sum() > 0
    assert g.context.proj["event"][0].weight.grad.abs().sum() > 0


def test_unsupported_layer_options():
    with pytest.raises(ValueError, match="normalize_before"):
        TransformerDecoderTokenCondition(VOCAB, D, normalize_before=False)
    with pytest.raises(ValueError, match="concat_after"):
        TransformerDecoderTokenCondition(VOCAB, D, concat_after=True)


def test_fixed_gates_remove_modules_and_match_pinned_gates():
    _, gated = build()
    pattern = torch.tensor([[0, 1, 1], [1, 1, 0], [0, 0, 0]])
    static = TransformerDecoderTokenCondition(
        VOCAB, D, gate_context=[], fixed_gates=pattern.tolist(), **CONF
    ).eval()
    static.load_state_dict({k: v for k, v in gated.state_dict().items() if k in static.state_dict()})
    assert static.decoders[0].self_attn is None and static.decoders[2].feed_forward is None
    memory, hlens, ys, ylens, _ = data()
    with torch.no_grad(), pin_gates(gated, pattern.float().unsqueeze(0)):
        ref, _ = gated(memory, hlens, ys, ylens)
        ref_step, _ = gated.batch_score(ys[:, :3], [None] * 3, memory)
    with torch.no_grad():
        out, _ = static(memory, hlens, ys, ylens)
        out_step, _ = static.batch_score(ys[:, :3], [None] * 3, memory)
    assert (ref - out).abs().max() < 1e-6 and (ref_step - out_step).abs().max() < 1e-6


def test_scorer_caches_the_source_kv_of_the_open_layers_only():
    """The scorer of an utterance projects the memory to source K/V once, for the layers
    its gates open; its steps equal the stock decoder's (all open) and the uncached
    decoder's (source attention closed)."""
    stock, gated = build()
    memory = torch.randn(1, 9, D).expand(2, -1, -1)
    ys = torch.full((2, 1), VOCAB - 1)
    closed_src = torch.ones(1, 3, 3)
    closed_src[0, :, 1] = 0
    context = GateContext(tokens=torch.tensor([[3, 4]]))
    with torch.no_grad():
        with pin_gates(gated, closed_src):
            scorer = GatedScorer(gated, context)
            out, _ = scorer.batch_score(ys, [None] * 2, memory)
            ref, _ = gated.batch_score(ys, [None] * 2, memory)
        assert scorer._src_kv == [None, None, None] and (ref - out).abs().max() < 1e-5
        with force_gates(gated, 1.0):
            scorer = GatedScorer(gated, context)
            out, _ = scorer.batch_score(ys, [None] * 2, memory)
        ref, _ = stock.batch_score(ys, [None] * 2, memory)
    assert all(kv is not None for kv in scorer._src_kv)
    assert (ref - out).abs().max() < 1e-5


def test_unit_costs_are_the_macs_of_each_unit():
    """sparsity_weighting: flops weighs each unit by these (hand-counted MACs, D=16, FFN 24)."""
    _, gated = build()
    L, T = 6, 9  # tokens, encoder frames
    self_attn = 4 * L * D * D + 2 * L * L * D      # q, k, v, out projections + scores, context
    src_attn = 2 * L * D * D + 2 * T * D * D + 2 * L * T * D
    ffn = L * 2 * D * CONF["linear_units"]
    costs = gated.unit_costs(T, L)
    assert costs.shape == (3, 3)
    assert costs.tolist() == [[self_attn, src_attn, ffn]] * 3
    assert (gated.unit_costs(2 * T, L)[:, 1] > costs[:, 1]).all()  # only src_attn sees the frames
    assert torch.equal(gated.unit_costs(2 * T, L)[:, [0, 2]], costs[:, [0, 2]])
