"""The gate context reaches the gates through every decoding path, as an argument.

One utterance decoded under two contexts (<eng><asr>, <deu><st_eng>) by the lean search, by
ESPnet's beam search in our ``Speech2TextGated`` and by ESPnet's own ``Speech2Text`` (its
prefix's <lang>/<task>, ``espnet_ext.s2t.stock_inference``): every path runs the gates of that
context, returns the gates its modules ran with, and decodes alike.
"""

import numpy as np
import pytest
import torch
from espnet2.bin.s2t_inference import Speech2Text

from gate_spy import seen_gates, sharpen
from test_batch_decode import decoder, utterances

pytestmark = pytest.mark.slow

CONTEXTS = [("<eng>", "<asr>"), ("<deu>", "<st_eng>")]


def tokens(results):
    return [r[2] for r in results]


def test_each_path_runs_and_returns_the_gates_of_its_context(trained, tiny_corpus):
    exp, _ = trained
    lean, espnet = decoder(exp, search="lean"), decoder(exp, search="espnet")
    stock = Speech2Text(exp / "config.yaml", exp / "10epoch.pth", device="cpu", beam_size=3,
                        maxlenratio=0.0, lang_sym="<eng>", task_sym="<asr>")
    for s2t in (lean, espnet, stock):
        sharpen(s2t.s2t_model)
    wav = utterances(tiny_corpus, 1)[0][1]
    by_context = {}
    for lang, task in CONTEXTS:
        expected = lean.predict_gates(wav, lang, task)
        assert set(expected) == {"encoder", "decoder"}
        with seen_gates() as seen:
            d = lean.decode_one(wav, lang, task)
        assert {k: torch.equal(v, seen[k]) for k, v in d.gates.items()} == {"encoder": True, "decoder": True}
        with seen_gates() as seen:
            results = espnet(wav, lang_sym=lang, task_sym=task)
        assert {k: torch.equal(v, seen[k]) for k, v in espnet.gates.items()} == {"encoder": True, "decoder": True}
        with seen_gates() as seen:
            stock_results = stock(wav, lang_sym=lang, task_sym=task)
        for side in expected:  # the same gates, whichever path
            assert torch.equal(d.gates[side], expected[side])
            assert torch.equal(espnet.gates[side], expected[side])
            assert torch.equal(seen[side], expected[side])
        assert tokens(d.results) == tokens(results) == tokens(stock_results)
        by_context[(lang, task)] = expected
    a, b = by_context.values()
    assert any(not torch.equal(a[side], b[side]) for side in a)  # the contexts differ


def test_no_context_is_a_clear_error_not_a_stale_one(trained, tiny_corpus):
    """After a decode nothing of its context is left: ``encode`` without one fails."""
    exp, _ = trained
    stock = Speech2Text(exp / "config.yaml", exp / "10epoch.pth", device="cpu", beam_size=2,
                        maxlenratio=0.0, lang_sym="<eng>", task_sym="<asr>")
    wav = utterances(tiny_corpus, 1)[0][1]
    stock(wav, lang_sym="<deu>", task_sym="<st_eng>")
    speech = torch.as_tensor(np.asarray(wav))[None]
    with torch.no_grad(), pytest.raises(ValueError, match="needs context .* but got none"):
        stock.s2t_model.encode(speech, torch.tensor([speech.size(1)]))
