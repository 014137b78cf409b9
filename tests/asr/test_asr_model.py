"""The gated ASR model (model: espnet_gated in ESPnet's ASR task)."""

from pathlib import Path

import pytest
import torch
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.tasks.asr import ASRTask

import espnet_ext
from espnet_ext.asr.espnet_model import ESPnetASRGatedModel
from espnet_ext.gating import force_gates, pin_gates

espnet_ext.register()

CONF = Path(__file__).resolve().parents[2] / "egs2/librispeech_100/asr1/conf/tiny"
TOKENS = ["<blank>", "<unk>"] + [chr(ord("A") + i) for i in range(10)] + ["<sos/eos>"]


def build(config="train_asr_transformer_gated.yaml", *extra):
    parser = ASRTask.get_parser()
    args = parser.parse_args(
        ["--config", str(CONF / config), "--token_list", ",".join(TOKENS), "--output_dir", "x",
         *extra]
    )
    args.token_list = list(TOKENS)
    torch.manual_seed(0)
    return args, ASRTask.build_model(args)


def batch(n=3):
    torch.manual_seed(1)
    speech = torch.randn(n, 8000)
    speech_lengths = torch.tensor([8000, 6400, 5000][:n])
    text = torch.randint(2, 12, (n, 5))
    text_lengths = torch.tensor([5, 4, 3][:n])
    text[1, 4:] = -1
    text[2, 3:] = -1
    return speech, speech_lengths, text, text_lengths


def test_yaml_builds_the_gated_model_with_its_schedule():
    args, model = build()
    assert isinstance(model, ESPnetASRGatedModel)
    assert type(model.encoder).__name__ == "TransformerTokenConditionEncoder"
    assert list(model.sides) == ["enc"] and model.context_kinds == []
    s = model.gate_schedule
    assert (s.tau_cooldown_steps, s.sparsity_end, s.tau_end) == (8, 0.3, 0.1)
    args, model = build("train_asr_transformer_gated.yaml", "--tau_ini", "2",
                        "--encoder_conf", "gate_predictor=local")
    assert model.gate_schedule.tau_ini == 2.0
    assert type(model.encoder.gate_predictor).__name__ == "LocalGatePredictor"


def test_gate_lr_scale_applies_to_the_asr_task():
    args, model = build()
    (optim,) = ASRTask.build_optimizers(args, model)
    lrs = sorted(g["lr"] for g in optim.param_groups)
    assert lrs == pytest.approx([0.005, 0.05])  # tiny conf: lr 0.005, gate_lr_scale 10
    fast = max(optim.param_groups, key=lambda g: g["lr"])
    gate = {id(p) for n, p in model.named_parameters() if "gate_predictor." in n}
    assert {id(p) for p in fast["params"]} == gate


def test_all_open_equals_the_stock_asr_model():
    _, stock = build("train_asr_transformer.yaml")
    _, gated = build()
    assert type(stock) is ESPnetASRModel
    missing, unexpected = gated.load_state_dict(stock.state_dict(), strict=False)
    assert unexpected == []
    assert all(k.startswith(("encoder.gate_predictor.", "gate_schedule.")) for k in missing)
    stock.eval(), gated.eval()
    with torch.no_grad():
        ref_loss, ref, _ = stock(*batch())
        with force_gates(gated, 1.0):
            loss, stats, _ = gated(*batch())
    for key in ("loss_ctc", "loss_att", "acc"):
        assert stats[key] == pytest.approx(float(ref[key]), abs=1e-5), key
    # all open: g = 0, target s*(0) = 0 -> no sparsity loss
    assert float(stats["sparsity"]) == 0.0 and float(stats["loss_sparsity"]) == 0.0
    assert float(loss) == pytest.approx(float(ref_loss), abs=1e-5)


def test_loss_is_the_stock_loss_plus_the_sparsity_loss():
    _, gated = build()
    gated.eval()
    gated.gate_schedule.forwards.fill_(4)  # half-way: s* = 0.15, tau = 0.55
    closed = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # 2 of 4 units closed
    with torch.no_grad(), pin_gates(gated.encoder, closed):
        ref_loss, _, _ = ESPnetASRModel.forward(gated, *batch())
        loss, stats, _ = gated(*batch())
    assert float(stats["sparsity"]) == pytest.approx(0.5)
    assert float(stats["sparsity_enc"]) == pytest.approx(0.5)
    assert float(stats["sparsity_target"]) == pytest.approx(0.15)
    assert float(stats["tau"]) == pytest.approx(0.55)
    expected = abs(0.5 - 0.15) + (0.5 - 0.15) ** 2
    assert float(stats["loss_sparsity"]) == pytest.approx(expected, rel=1e-5)
    assert float(loss) == pytest.approx(float(ref_loss) + expected, rel=1e-5)
    assert int(gated.gate_schedule.forwards) == 4  # eval forwards do not count


def test_training_step_reaches_the_predictor_and_counts():
    _, gated = build()
    gated.train()
    torch.manual_seed(0)
    loss, stats, _ = gated(*batch())
    loss.backward()
    grads = [p.grad for n, p in gated.named_parameters() if "gate_predictor." in n]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    assert int(gated.gate_schedule.forwards) == 1
    assert 0.0 <= float(stats["sparsity_enc"]) <= 1.0  # from the forward's recorded gates


def test_flops_weighting_uses_the_units_costs():
    _, gated = build("train_asr_transformer_gated.yaml", "--model_conf",
                     "sparsity_weighting=flops")
    gated.eval()
    closed = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # every FFN closed
    with torch.no_grad(), pin_gates(gated.encoder, closed):
        _, stats, _ = gated(*batch())
    costs = gated.encoder.unit_costs(round(gated._enc_frames))
    ffn_share = float(costs[:, 1].sum() / costs.sum())
    assert float(stats["sparsity"]) == pytest.approx(ffn_share, rel=1e-3)
    assert 0.0 < ffn_share < 1.0 and ffn_share != pytest.approx(0.5)


def test_context_options():
    with pytest.raises(ValueError, match="<lang>/<task>"):
        build("train_asr_transformer_gated.yaml", "--encoder_conf", "gate_context=[lang]",
              "--encoder_conf", "context_vocab_size=13")
    _, gated = build("train_asr_transformer_gated.yaml", "--encoder_conf", "gate_context=[spk]",
                     "--encoder_conf", "spk_embed_dim=6")
    assert gated.context_kinds == ["spk"]
    with pytest.raises(ValueError, match="spk_embed"):
        gated(*batch())
    loss, stats, _ = gated(*batch(), spk_embed=torch.randn(3, 6))
    assert torch.isfinite(loss)
