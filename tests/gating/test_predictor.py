import pytest
import torch

from espnet_ext.gating import GateContext, GateOptions, GatePredictor, sample_gates


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_pooling_ignores_padded_frames(pooling):
    torch.manual_seed(0)
    pred = GatePredictor(8, 6, GateOptions(["lang", "task"], context_vocab_size=10, gate_pooling=pooling)).eval()
    torch.nn.init.normal_(pred.net.weight, std=1.0)
    xs = torch.randn(2, 7, 8)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    ctx = GateContext(tokens=torch.tensor([[1, 2], [3, 4]]))
    ref = pred.logits(xs, mask, ctx)
    xs[1, 4:] = 1e3
    assert torch.allclose(ref, pred.logits(xs, mask, ctx))
    if pooling == "mean":
        pooled = pred.pool(xs, mask)
        assert torch.allclose(pooled[1], xs[1, :4].mean(0))


def test_initial_gates_open_and_logit_shape():
    pred = GatePredictor(8, 5, GateOptions([], gate_init_bias=3.0)).eval()
    logits = pred.logits(torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool), None)
    assert logits.shape == (4, 5, 2)
    gates, probs = pred(torch.randn(4, 3, 8), torch.ones(4, 3, dtype=torch.bool), None)
    assert torch.equal(gates, torch.ones(4, 5))
    assert (probs > 0.9).all()


def test_straight_through_values_and_gradients():
    torch.manual_seed(0)
    logits = torch.zeros(20000, 2)
    logits[:, 1] = 1.0
    logits.requires_grad_(True)
    gates, _ = sample_gates(logits, tau=0.5, training=True)
    # hard forward values
    assert set(gates.unique().tolist()) == {0.0, 1.0}
    # Gumbel-max: P(open) = sigmoid(l1 - l0) whatever tau is
    assert abs(gates.mean().item() - torch.sigmoid(torch.tensor(1.0)).item()) < 0.01
    gates.sum().backward()
    # gradient of the soft sample: d p1 / d l1 = p1 (1 - p1) / tau > 0
    assert (logits.grad[:, 1] >= 0).all() and (logits.grad[:, 0] <= 0).all()
    assert logits.grad[:, 1].mean() > 0.05


def test_eval_is_argmax_without_noise():
    logits = torch.tensor([[0.2, 0.1], [0.1, 0.2]])
    gates, probs = sample_gates(logits, tau=0.1, training=False)
    assert gates.tolist() == [0.0, 1.0]
    assert not gates.requires_grad
    with pytest.raises(ValueError, match="tau"):
        sample_gates(logits, tau=0.0, training=False)


def test_context_batch_checks():
    with pytest.raises(ValueError, match="batch sizes differ"):
        GateContext(tokens=torch.zeros(2, 2, dtype=torch.long), spk_embed=torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\(#batch, 2\)"):
        GateContext(tokens=torch.zeros(2, 3, dtype=torch.long))
    ctx = GateContext(tokens=torch.tensor([[1, 2]]), spk_embed=torch.ones(1, 4))
    assert ctx.expand(5).spk_embed.shape == (5, 4)
    assert ctx.expand(5).select(torch.tensor([0, 2])).tokens.tolist() == [[1, 2], [1, 2]]


def test_restricted_tables_keep_the_context_tokens_only():
    from espnet_ext.gating.predictor import ContextEmbedding

    torch.manual_seed(0)
    full = ContextEmbedding(["lang", "task"], vocab_size=5000, dim=8)
    old_state = {k: v.clone() for k, v in full.state_dict().items()}
    tokens = torch.tensor([[7, 4000], [9, 4001], [7, 4001]])
    before = full(GateContext(tokens=tokens))
    lang, task = torch.tensor([9, 7, 11]), torch.tensor([4000, 4001])
    full.restrict({"lang": lang, "task": task})
    n = sum(p.numel() for p in full.parameters())
    assert n == (4 + 3) * 8 + 2 * 2 * 8  # rows: other + 3 langs, other + 2 tasks; 2 LayerNorms
    torch.testing.assert_close(full(GateContext(tokens=tokens)), before)  # same vectors
    # a model saved with full tables (before restrict existed) loads into the small ones
    fresh = ContextEmbedding(["lang", "task"], vocab_size=5000, dim=8)
    fresh.restrict({"lang": lang, "task": task})
    fresh.load_state_dict(old_state)
    torch.testing.assert_close(fresh(GateContext(tokens=tokens)), before)
    assert fresh.state_dict()["proj.lang.0.weight"].shape == (4, 8)
