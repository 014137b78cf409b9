"""The OWSM v3.1 training configs: gated vs full fine-tune, parsed and built by ESPnet."""

from pathlib import Path

import pytest
import torch
import yaml

import espnet_ext
from espnet_ext.s2t import owsm

from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
GATED = ROOT / "conf" / "train_s2t_ebf_gated.yaml"
GATED_PAPER = ROOT / "conf" / "train_s2t_ebf_gated_paper.yaml"
FULL = ROOT / "conf" / "train_s2t_ebf_full.yaml"
TINY_GATED = ROOT / "conf" / "tiny" / "train_s2t_ebf_gated.yaml"
TINY_FULL = ROOT / "conf" / "tiny" / "train_s2t_ebf_full.yaml"

# Keys only the gated configs have.
GATE_CONF_KEYS = {"gate_context", "context_vocab_size", "context_dim", "gate_pooling"}
GATE_MODEL_KEYS = {"prune_scope", "sparsity_weighting"}
SCHEDULE_KEYS = {
    "tau_ini",
    "tau_end",
    "tau_cooldown_steps",
    "tau_schedule",
    "sparsity_init",
    "sparsity_end",
    "sparsity_warmup_steps",
    "sparsity_loss_weight",
    "sparsity_loss_type",
    "sparsity_control",
    "sparsity_lambda_lr",
    "gate_lr",
    "gate_lr_scale",
}
SWAPPED = {
    "encoder": ("e_branchformer_token_condition", "e_branchformer"),
    "decoder": ("transformer_decoder_token_condition", "transformer"),
    "model": ("espnet_gated", "espnet"),
}

# egs2/owsm_v3.1/s2t1/conf/train_s2t_ebf_conv2d_size1024_e18_d18_piecewise_lr2e-4_warmup60k_flashattn.yaml
# (use_flash_attn left out: true there, false-safe here)
OWSM_ENCODER = dict(
    output_size=1024, attention_heads=16, attention_layer_type="selfattn",
    pos_enc_layer_type="abs_pos", rel_pos_type="latest", qk_norm=False,
    cgmlp_linear_units=4096, cgmlp_conv_kernel=31, use_linear_after_conv=False,
    gate_activation="identity", num_blocks=18, dropout_rate=0.1,
    positional_dropout_rate=0.1, attention_dropout_rate=0.1, input_layer="conv2d",
    layer_drop_rate=0.0, linear_units=4096, positionwise_layer_type="linear",
    use_ffn=True, macaron_ffn=True, merge_conv_kernel=31,
)  # fmt: skip
OWSM_DECODER = dict(
    attention_heads=16, linear_units=4096, num_blocks=18, dropout_rate=0.1,
    positional_dropout_rate=0.1, self_attention_dropout_rate=0.1,
    src_attention_dropout_rate=0.1,
)  # fmt: skip
OWSM_MODEL = dict(ctc_weight=0.3, lsm_weight=0.1, length_normalized_loss=False, sym_na="<na>")
OWSM_PREPROCESSOR = dict(
    text_prev_name="text_prev", text_ctc_name="text_ctc", fs=16000, na_symbol="<na>",
    speech_length=30, speech_resolution=0.02, speech_init_silence=30,
    text_prev_apply_prob=0.5, time_apply_prob=0.5, notime_symbol="<notimestamps>",
    first_time_symbol="<0.00>", last_time_symbol="<30.00>",
)  # fmt: skip


def _count_params_module():
    return load_script("count_params")


count_params = _count_params_module()


@pytest.fixture(scope="module")
def tokens():
    return count_params.owsm_token_list(50000)


def strip_gates(conf: dict) -> dict:
    """A parsed/raw gated config with the gate-only keys removed and names swapped."""
    out = {k: v for k, v in conf.items() if k not in SCHEDULE_KEYS}
    for key, (gated, stock) in SWAPPED.items():
        assert out[key] == gated, key
        out[key] = stock
    for key, extra in (
        ("encoder_conf", GATE_CONF_KEYS),
        ("decoder_conf", GATE_CONF_KEYS),
        ("model_conf", GATE_MODEL_KEYS),
    ):
        assert extra & set(out[key]), key
        out[key] = {k: v for k, v in out[key].items() if k not in extra}
    return out


@pytest.mark.parametrize("gated, full", [(GATED, FULL), (TINY_GATED, TINY_FULL)])
def test_gated_and_full_configs_differ_only_in_the_gates(gated, full):
    espnet_ext.register()
    from espnet2.tasks.s2t import S2TTask

    raw_gated = yaml.safe_load(gated.read_text())
    raw_full = yaml.safe_load(full.read_text())
    assert strip_gates(raw_gated) == raw_full
    assert not SCHEDULE_KEYS & set(raw_full)

    # the real parser accepts both (unknown keys would fail here) ...
    parser = S2TTask.get_parser()
    args_gated = vars(parser.parse_args(["--config", str(gated)]))
    args_full = vars(parser.parse_args(["--config", str(full)]))
    # ... and apart from the gates they parse to the same options
    stripped = strip_gates(args_gated)
    assert stripped.pop("config") == str(gated)
    assert {k: v for k, v in args_full.items() if k not in SCHEDULE_KEYS | {"config"}} == stripped


def test_owsm_architecture_and_paper_settings():
    espnet_ext.register()
    from espnet2.tasks.s2t import S2TTask

    args = S2TTask.get_parser().parse_args(["--config", str(GATED)])
    enc = {k: v for k, v in args.encoder_conf.items() if k in OWSM_ENCODER}
    assert enc == OWSM_ENCODER
    assert {k: v for k, v in args.decoder_conf.items() if k in OWSM_DECODER} == OWSM_DECODER
    assert {k: v for k, v in args.model_conf.items() if k in OWSM_MODEL} == OWSM_MODEL
    assert args.preprocessor == "s2t" and args.preprocessor_conf == OWSM_PREPROCESSOR
    assert args.frontend_conf == dict(n_fft=512, win_length=400, hop_length=160)
    assert args.specaug == "specaug"
    assert args.encoder_conf["use_flash_attn"] is False
    assert args.decoder_conf["use_flash_attn"] is False
    for side in (args.encoder_conf, args.decoder_conf):
        assert side["gate_context"] == ["lang", "task"]
        assert side["context_dim"] == 64 and side["gate_pooling"] == "mean"
    assert args.encoder_conf["context_vocab_size"] is None
    assert args.model_conf["prune_scope"] == "both"
    assert args.model_conf["sparsity_weighting"] == "count"
    # the paper's fine-tuning settings
    assert args.optim == "adamw"
    assert args.optim_conf == dict(lr=1e-5, betas=[0.9, 0.98], eps=1e-6, weight_decay=1e-6)
    assert args.scheduler == "warmuplr" and args.scheduler_conf == dict(warmup_steps=6000)
    assert (args.tau_ini, args.tau_end, args.tau_cooldown_steps) == (1.0, 0.1, 15000)
    assert (args.sparsity_init, args.sparsity_end, args.sparsity_warmup_steps) == (0.0, 0.3, 15000)
    assert (args.sparsity_loss_weight, args.tau_schedule) == (1.0, "linear")
    # sparsity reached whatever the summed loss's scale; gates at their own learning rate
    assert (args.sparsity_control, args.sparsity_lambda_lr, args.gate_lr) == ("lagrangian", 0.2, 1e-3)


def test_paper_and_tuned_gated_configs():
    """conf/train_s2t_ebf_gated_paper.yaml: the papers' settings exactly; the tuned default
    differs from it in the sparsity controller, the gates' lr, the batch and flash attention,
    and each header says so."""
    espnet_ext.register()
    from espnet2.tasks.s2t import S2TTask

    parser = S2TTask.get_parser()
    paper = vars(parser.parse_args(["--config", str(GATED_PAPER)]))
    tuned = vars(parser.parse_args(["--config", str(GATED)]))
    # the papers' keys (design.md §3): penalty alpha (|g - s*| + (g - s*)^2), alpha 1
    assert (paper["sparsity_control"], paper["sparsity_loss_type"], paper["sparsity_loss_weight"]) \
        == ("penalty", "abs_squared", 1.0)
    assert paper["gate_lr"] is None and paper["gate_lr_scale"] == 1.0  # gates at the model's lr
    assert paper["optim"] == "adamw" and paper["optim_conf"]["lr"] == 1e-5
    assert paper["optim_conf"]["weight_decay"] == 1e-6
    assert paper["scheduler"] == "warmuplr" and paper["scheduler_conf"] == dict(warmup_steps=6000)
    assert (paper["tau_ini"], paper["tau_end"], paper["tau_cooldown_steps"]) == (1.0, 0.1, 15000)
    assert (paper["sparsity_init"], paper["sparsity_end"], paper["sparsity_warmup_steps"]) \
        == (0.0, 0.3, 15000)
    assert (paper["batch_size"], paper["accum_grad"]) == (256, 1)  # OWSM v3.1's batch
    assert paper["encoder_conf"]["use_flash_attn"] and paper["decoder_conf"]["use_flash_attn"]
    # everything else is the tuned file's (gate_init_bias: the code's default, written out)
    for side in ("encoder_conf", "decoder_conf"):
        assert paper[side].pop("gate_init_bias") == 3.0
        for conf in (paper, tuned):
            conf[side].pop("use_flash_attn")
    differs = {k for k in set(paper) | set(tuned) if paper.get(k) != tuned.get(k)}
    assert differs == {"config", "sparsity_control", "gate_lr", "batch_size"}, differs
    assert (tuned["sparsity_control"], tuned["gate_lr"], tuned["batch_size"]) == ("lagrangian", 1e-3, 32)
    # each header says what it is and names the other
    head = {c: "".join(ln for ln in c.read_text().splitlines(True) if ln.startswith("#")) for c in (GATED, GATED_PAPER)}
    assert "tuned setting" in head[GATED] and GATED_PAPER.name in head[GATED]
    assert "papers' settings, exactly" in head[GATED_PAPER] and GATED.name in head[GATED_PAPER]
    for word in ("penalty", "gate_lr", "batch_size", "flash"):
        assert word in head[GATED] and word in head[GATED_PAPER], word
    # the recipe reads it from its conf/
    assert (ROOT / "egs2" / "europarl_st" / "s2t1" / "conf" / GATED_PAPER.name).resolve() == GATED_PAPER


def test_paper_config_builds_with_the_penalty_and_no_flash_attn_installed(tokens):
    """1+1 OWSM-size layers from the paper config on a CPU without flash-attn: ESPnet falls
    back to its attention; the penalty has no multipliers to train."""
    torch.manual_seed(0)
    model = count_params.build(count_params.parse_config(GATED_PAPER, tokens, num_blocks=1))
    assert model.gate_schedule.sparsity_control == "penalty"
    assert not [n for n, _ in model.named_parameters() if n.startswith("gate_schedule.")]
    assert model.encoder.encoders[0].attn.use_flash_attn is False
    assert model.decoder.decoders[0].self_attn.use_flash_attn is False


def test_decode_config():
    from espnet2.bin.s2t_inference import get_parser

    args = get_parser().parse_args(
        ["--config", str(ROOT / "conf" / "decode_s2t.yaml"), "--output_dir", "x",
         "--data_path_and_name_and_type", "wav.scp,speech,sound"]
    )  # fmt: skip
    assert (args.beam_size, args.ctc_weight, args.penalty, args.batch_size) == (5, 0.0, 0.0, 1)
    assert (args.maxlenratio, args.minlenratio) == (0.0, 0.0)
    assert (args.lang_sym, args.task_sym) == ("<eng>", "<asr>")


@pytest.fixture(scope="module")
def one_block_models(tokens):
    """Stock and gated OWSM-size models with 1+1 layers (random weights)."""
    torch.manual_seed(0)
    stock = count_params.build(count_params.parse_config(FULL, tokens, num_blocks=1))
    gated = count_params.build(count_params.parse_config(GATED, tokens, num_blocks=1))
    return stock.eval(), gated.eval()


def test_gated_params_are_stock_plus_gate_predictors(one_block_models):
    stock, gated = one_block_models
    assert type(gated.encoder).__name__ == "EBranchformerTokenConditionEncoder"
    assert type(gated.decoder).__name__ == "TransformerDecoderTokenCondition"
    n_stock = count_params.count(stock)
    n_gated = count_params.count(gated)
    predictors = sum(
        p.numel() for n, p in gated.named_parameters() if ".gate_predictor." in f".{n}"
    )
    assert predictors == n_gated["gates"] > 0
    multipliers = sum(p.numel() for n, p in gated.named_parameters() if n.startswith("gate_schedule."))
    assert multipliers == 2  # sparsity_control: lagrangian's lambda1, lambda2
    assert n_gated["total"] == n_stock["total"] + predictors + multipliers
    for key in ("encoder", "decoder", "ctc"):
        assert n_gated[key] == n_stock[key], key
    # lang/task embedding tables over the <lang>/<task> tokens only (+ 1 row for any other)
    n_lang, n_task = len(gated.lang_ids), len(gated.task_ids)
    assert (n_lang, n_task) == (len(owsm.LANGS), len(owsm.TASKS))
    for side in (gated.encoder, gated.decoder):
        assert side.gate_predictor.context.proj["lang"][0].num_embeddings == n_lang + 1
        assert side.gate_predictor.context.proj["task"][0].num_embeddings == n_task + 1


def test_stock_state_dict_loads_into_the_gated_model(one_block_models):
    from espnet_ext.gating import force_gates

    stock, gated = one_block_models
    missing, unexpected = gated.load_state_dict(stock.state_dict(), strict=False)
    assert unexpected == []
    assert missing
    assert all(k.startswith(("encoder.gate_predictor.", "decoder.gate_predictor.", "gate_schedule."))
               for k in missing), missing  # fmt: skip
    assert any(k.startswith("gate_schedule.") for k in missing)
    assert any(k.startswith("decoder.gate_predictor.") for k in missing)
    # loaded: with every gate open the gated encoder is the stock one
    torch.manual_seed(1)
    feats, lens = torch.randn(2, 120, 80), torch.tensor([120, 90])
    with torch.no_grad(), force_gates(gated, 1.0):
        out_gated, olens_gated, _ = gated.encoder(feats, lens)
        out_stock, olens_stock, _ = stock.encoder(feats, lens)
    assert torch.equal(olens_gated, olens_stock)
    torch.testing.assert_close(out_gated, out_stock, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_owsm_size_gated_model(tokens):
    """The full 18+18-layer gated model: its stock part is OWSM v3.1 medium (1,016.9 M)."""
    model = count_params.build(count_params.parse_config(GATED, tokens))
    n = count_params.count(model)
    del model
    assert len(tokens) == 50000
    assert n["stock_part"] / 1e6 == pytest.approx(1016.9, abs=0.05)
    assert n["encoder"] / 1e6 == pytest.approx(560.84, abs=0.01)
    assert n["decoder"] / 1e6 == pytest.approx(404.79, abs=0.01)
    assert n["ctc"] / 1e6 == pytest.approx(51.25, abs=0.01)
    assert 0 < n["gates"] < 0.005 * n["total"]  # lang+task context: < 0.5 % of OWSM


L0 = ROOT / "conf" / "train_s2t_ebf_l0.yaml"
LAYERPRUNE = ROOT / "conf" / "train_s2t_ebf_layerprune.yaml"


def test_baseline_configs_are_the_full_fine_tune_plus_their_method():
    espnet_ext.register()
    from espnet2.tasks.s2t import S2TTask

    parser = S2TTask.get_parser()
    full, l0, layerprune = (vars(parser.parse_args(["--config", str(c)])) for c in (FULL, L0, LAYERPRUNE))
    # layer pruning removes layers with espnet_ext.bin.layer_prune, then fine-tunes as the full model
    assert {k: v for k, v in layerprune.items() if k != "config"} == {
        k: v for k, v in full.items() if k != "config"}
    # L0: the same run with HardConcrete masks and the FLOPs Lagrangian
    assert (l0["encoder"], l0["decoder"], l0["model"]) == ("e_branchformer_l0", "transformer_decoder_l0", "espnet_l0")
    assert l0["encoder_conf"].pop("l0_prune") == ["ffn", "cgmlp"]
    assert l0["decoder_conf"].pop("l0_prune") == ["ffn"]
    for side in ("encoder_conf", "decoder_conf"):
        assert l0[side].pop("l0_init_drop") == 0.01
    assert {k: l0["model_conf"].pop(k) for k in ("target_flops", "target_warmup_steps", "l0_lr", "l0_lambda_lr")} == {
        "target_flops": 0.7, "target_warmup_steps": 15000, "l0_lr": 0.02, "l0_lambda_lr": 0.02}
    for key in ("encoder", "decoder", "model", "config"):
        l0.pop(key), full.pop(key)
    assert l0 == full


def test_l0_model_loads_the_stock_weights():
    torch.manual_seed(0)
    tokens = count_params.owsm_token_list(1600)  # the vocabulary's size does not matter here
    stock = count_params.build(count_params.parse_config(FULL, tokens, num_blocks=1, width=64))
    l0 = count_params.build(count_params.parse_config(L0, tokens, num_blocks=1, width=64))
    missing, unexpected = l0.load_state_dict(stock.state_dict(), strict=False)
    assert unexpected == [] and missing
    assert all(".l0_masks." in k or k.startswith("lagrangian.") for k in missing), missing
