import argparse

import pytest
import torch
from espnet2.tasks.s2t import S2TTask

import espnet_ext
from espnet_ext.pruning.prune import prune_model
from espnet_ext.pruning.structured import EBranchformerL0Encoder, TransformerDecoderL0

espnet_ext.register()


def build(l0_config, tokens, *extra):
    args = S2TTask.get_parser().parse_args(
        ["--config", str(l0_config), "--token_list", str(tokens), "--output_dir", "unused", *extra])
    torch.manual_seed(0)
    return S2TTask.build_model(args), args


def batch():
    g = torch.Generator().manual_seed(1)
    speech = 0.1 * torch.randn(3, 16000, generator=g)
    lens = torch.tensor([16000, 12000, 9000])
    text = torch.tensor([[4, 5, 6, 7, 8], [4, 5, 6, 7, -1], [4, 5, 6, -1, -1]])
    tl = torch.tensor([5, 4, 3])
    prev, pl = torch.full((3, 1), 3), torch.ones(3, dtype=torch.long)
    return speech, lens, text, tl, prev, pl, text.clamp(min=0), tl


def randomise_masks(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("log_alpha"):
                p.copy_(3.0 * torch.randn(p.shape, generator=g))


def test_registered_and_trains(l0_config, tiny_corpus):
    model, args = build(l0_config, tiny_corpus["tokens"])
    assert isinstance(model.encoder, EBranchformerL0Encoder)
    assert isinstance(model.decoder, TransformerDecoderL0)
    model.train()
    loss, stats, _ = model(*batch())
    loss.backward()
    la = model.encoder.l0_masks.masks["cgmlp0"].log_alpha
    assert la.grad is not None
    assert 0.9 < float(stats["flops_expected"]) < 1.0  # init_drop 0.05: almost everything kept
    assert float(stats["flops_target"]) == 1.0 and model.lagrangian.step == 1
    # the optimizer: masks and multipliers in groups of their own, multipliers by ascent
    (opt,) = S2TTask.build_optimizers(args, model)
    extra = opt.param_groups[1:]
    assert [g["maximize"] for g in extra] == [False, True] and [g["lr"] for g in extra] == [0.05, 0.05]


def test_stock_checkpoint_loads_and_all_open_equals_stock(l0_config, tiny_corpus):
    """Same parameter names as the stock modules (only the masks are new); with
    every mask fully open the masked model computes exactly the stock model."""
    model, _ = build(l0_config, tiny_corpus["tokens"])
    stock, _ = build(l0_config.parent / "train_s2t_ebf_full.yaml", tiny_corpus["tokens"])
    missing = set(model.state_dict()) - set(stock.state_dict())
    assert missing and all(".l0_masks." in k or k.startswith("lagrangian.") for k in missing)
    assert not set(stock.state_dict()) - set(model.state_dict())
    stock.load_state_dict({k: v for k, v in model.state_dict().items() if k not in missing})
    model.eval(), stock.eval()
    speech, lens = batch()[:2]
    with torch.no_grad():
        masked = model.encode(speech, lens)[0]
        for n, p in model.named_parameters():
            if n.endswith("log_alpha"):
                p.fill_(30.0)  # eval mask: every unit kept with value sigmoid(36) == 1.0
        opened = model.encode(speech, lens)[0]
        reference = stock.encode(speech, lens)[0]
    assert torch.equal(opened, reference)
    assert not torch.allclose(masked, reference, atol=1e-4)  # the init masks (round(E[L0])) prune some


@pytest.mark.parametrize("seed", [0, 1])
def test_removal_equals_masked_model(l0_config, tiny_corpus, seed):
    model, args = build(l0_config, tiny_corpus["tokens"])
    randomise_masks(model, seed)
    model.eval()
    config = vars(args).copy()
    conf, state, report = prune_model(model, config)
    assert conf["encoder"] == "e_branchformer" and conf["decoder"] == "transformer"
    assert conf["model"] == "espnet" and "target_flops" not in conf["model_conf"]
    assert conf["encoder_conf"]["linear_units"] == report.kept["encoder"]["ffn"] < 64
    assert conf["encoder_conf"]["cgmlp_linear_units"] == 2 * report.kept["encoder"]["cgmlp"] < 64
    assert conf["decoder_conf"]["linear_units"] == report.kept["decoder"]["ffn"] < 64
    stock = S2TTask.build_model(argparse.Namespace(**conf))
    stock.load_state_dict(state, strict=True)
    stock.eval()
    n_masked = sum(p.numel() for n, p in model.named_parameters() if "l0_masks" not in n and "lagrangian" not in n)
    assert sum(p.numel() for p in stock.parameters()) < n_masked
    speech, lens = batch()[:2]
    with torch.no_grad():
        e1, l1 = model.encode(speech, lens)
        e2, l2 = stock.encode(speech, lens)
        assert torch.equal(l1, l2)
        assert (e1 - e2).abs().max() < 1e-5
        ys = torch.tensor([[1, 4, 5, 6, 7]] * 3)
        yl = torch.tensor([5, 4, 3])
        d1 = model.decoder(e1, l1, ys, yl)[0]
        d2 = stock.decoder(e2, l2, ys, yl)[0]
        assert (d1 - d2).abs().max() < 1e-5
        # incremental decoding (beam search path) agrees too
        mask = torch.tril(torch.ones(3, 3, dtype=torch.bool))[None]
        s1 = model.decoder.forward_one_step(ys[:1, :3], mask, e1[:1])[0]
        s2 = stock.decoder.forward_one_step(ys[:1, :3], mask, e2[:1])[0]
        assert (s1 - s2).abs().max() < 1e-5


def test_expected_macs_follow_masks(l0_config, tiny_corpus):
    model, _ = build(l0_config, tiny_corpus["tokens"])
    enc = model.encoder
    e, full = enc.expected_macs(101, 40)
    assert 0.9 * full < float(e) < full
    with torch.no_grad():
        for m in enc.l0_masks.masks.values():
            m.log_alpha.fill_(-20.0)  # everything pruned
    e, _ = enc.expected_macs(101, 40)
    # only the merge, the subsampling's rest and nothing else remain
    assert float(e) < 0.25 * full
    dec = model.decoder
    e, full = dec.expected_macs(10, 24)
    assert 0.9 * full < float(e) < full


def test_invalid_options(l0_config, tiny_corpus):
    with pytest.raises(ValueError, match="unknown encoder l0_prune"):
        build(l0_config, tiny_corpus["tokens"], "--encoder_conf", "l0_prune=[heads,layers]")
    with pytest.raises(ValueError, match="needs encoder: e_branchformer_l0"):
        build(l0_config.parent / "train_s2t_ebf_full.yaml", tiny_corpus["tokens"], "--model", "espnet_l0")


def test_beam_accounting_matches_the_decode_meter(l0_config, tiny_corpus):
    """The decoder's FLOPs under beam accounting == what decoding measures (all units open)."""
    from espnet_ext.s2t.meter import Step, decoder_macs

    model, _ = build(l0_config, tiny_corpus["tokens"])
    dec = model.decoder
    _, full = dec.expected_macs(12, 37, beam=5)
    # as ESPnet's search runs a stock decoder: one query per step, no K/V cached
    steps = [Step(5, 1, t) for t in range(1, 13)]
    measured = decoder_macs(dec, steps, 37, cached_prefix=False, cached_source=False)
    assert full == pytest.approx(measured, rel=1e-9)
    _, teacher = dec.expected_macs(12, 37)
    assert teacher < full / 5  # one pass vs 12 steps x 5 hypotheses


def test_layer_prune_counts_a_decode_like_the_meter(l0_config, tiny_corpus):
    """layer_macs(beam=5): the decoder layers + output layer == DecodeMeter's count of 5 x 12 steps."""
    from espnet_ext import flops
    from espnet_ext.pruning.layers import encoder_frames, layer_macs
    from espnet_ext.s2t.meter import Step, decoder_macs

    model, _ = build(l0_config, tiny_corpus["tokens"])
    feat = model.frontend.output_size()
    n = encoder_frames(model.encoder, 300, feat)
    macs, fixed = layer_macs(model, 300, feat, 12, beam=5)
    dec = sum(macs["decoder"]) + fixed - flops.subsampling(model.encoder, 300, feat)
    steps = [Step(5, 1, t) for t in range(1, 13)]
    espnet = decoder_macs(model.decoder, steps, n, cached_prefix=False, cached_source=False)
    assert dec == pytest.approx(espnet, rel=1e-9)
    teacher, _ = layer_macs(model, 300, feat, 12)
    assert teacher["encoder"] == macs["encoder"]
    assert sum(teacher["decoder"]) < sum(macs["decoder"]) / 5


def test_floor_is_reported(l0_config, tiny_corpus):
    model, _ = build(l0_config, tiny_corpus["tokens"], "--model_conf", "target_flops=0.05",
                     "--encoder_conf", "l0_prune=[ffn]", "--decoder_conf", "l0_prune=[ffn]")
    model.train()
    _, stats, _ = model(*batch())
    assert 0.5 < float(stats["flops_floor"]) < 1.0  # attention, cgMLP, subsampling stay
    assert float(stats["flops_expected"]) > float(stats["flops_floor"])
