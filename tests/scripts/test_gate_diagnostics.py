"""scripts/bench/gate_margins.py and scripts/bench/unit_importance.py: why gates do or do not follow context."""

import json

import pytest
import torch
from script_loader import load_script

from espnet_ext.gating import GateContext, GateOptions, GatePredictor

margins = load_script("gate_margins")


def test_margin_parts_add_up_to_the_predictor_margin():
    torch.manual_seed(0)
    predictor = GatePredictor(8, 5, GateOptions(["lang", "task"], context_vocab_size=10, context_dim=4))
    torch.nn.init.normal_(predictor.net.weight)  # trained-like weights, not the tiny init
    recorded, hooks = margins.record(predictor)
    xs, mask = torch.randn(3, 6, 8), torch.ones(3, 6, dtype=torch.bool)
    context = GateContext(tokens=torch.tensor([[1, 2], [1, 2], [3, 4]]))
    logits = predictor.logits(xs, mask, context)
    bias, ctx, audio = margins.parts(predictor, recorded)
    torch.testing.assert_close(bias + ctx + audio, logits[..., 1] - logits[..., 0])
    assert torch.equal(ctx[0], ctx[1]) and not torch.allclose(ctx[0], ctx[2])  # same context
    assert not torch.allclose(audio[0], audio[1])  # other audio
    for h in hooks:
        h.remove()


def test_context_symbols_come_from_the_text():
    assert margins.context_syms("<deu><st_eng><notimestamps> das ist") == ("<deu>", "<st_eng>")
    with pytest.raises(ValueError, match="<lang><task>"):
        margins.context_syms("das ist")


def run(name, *args):
    """The script's main in this process (no second ESPnet import)."""
    load_script(name).main(list(args))


@pytest.mark.slow
def test_both_reports_on_the_tiny_model(trained, tiny_corpus, tmp_path):
    exp, _ = trained
    dump = tiny_corpus["train"].parent
    common = ["--model_dir", str(exp), "--model_file", "10epoch.pth", "--dump", str(dump),
              "--test_sets", "train", "valid", "--num_utts", "2"]
    run("gate_margins", *common, "--out", str(tmp_path / "m.json"))
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["utterances"] == 4 and set(m["sides"]) == {"encoder", "decoder"}
    for side in m["sides"].values():
        assert side["margin"] > 0 and 0.0 <= side["flippable"] <= 1.0
        assert len(side["per_set_margin"]["valid"]) == len(side["per_gate_margin"])

    run("unit_importance", *common, "--fraction", "0.25", "--out", str(tmp_path / "u.json"))
    u = json.loads((tmp_path / "u.json").read_text())
    n = len(u["units"])
    assert n == 2 * 4 + 2 * 3  # tiny: 2 E-Branchformer layers x 4 units, 2 decoder layers x 3
    assert all(len(v) == n for v in u["costs"].values())
    # closing a unit of the trained model changes its loss; some unit matters
    assert max(max(v) for v in u["costs"].values()) > 0.1
    p = u["patterns"]["0.25"]
    assert p["k"] == round(0.25 * n) and len(p["fixed"]) == p["k"]
    # each set's own cheapest units cost at most what the fixed pattern costs it
    assert p["cost_per_set_patterns"] <= p["cost_fixed_pattern"] + 1e-6
    assert -1.0 <= u["spearman"]["train~valid"] <= 1.0
