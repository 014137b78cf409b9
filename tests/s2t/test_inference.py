"""Gated decoding: CLI outputs, real skipping, equivalence with stock decoding."""

import subprocess
import sys

import pytest
import soundfile as sf

from tiny_corpus import stock_copy

from espnet_ext.gating import force_gates
from espnet_ext.s2t.inference import Speech2TextGated

pytestmark = pytest.mark.slow


def first_wav(data, lang="eng"):
    for line in (data["valid"] / "wav.scp").read_text().splitlines():
        utt, path = line.split()
        if f"_{lang}_" in utt:
            return utt, sf.read(path, dtype="float32")[0]


def decoder(exp, **kw):
    conf = dict(beam_size=3, maxlenratio=0.0, lang_sym="<eng>", task_sym="<asr>")
    conf.update(kw)
    return Speech2TextGated(exp / "config.yaml", exp / "10epoch.pth", device="cpu", **conf)


def test_cli_writes_recognition_gates_and_gflops(trained, tiny_corpus, tmp_path):
    exp, _ = trained
    scp = tmp_path / "wav.scp"
    lines = [l for l in (tiny_corpus["valid"] / "wav.scp").read_text().splitlines() if "_deu_st_eng" in l]
    scp.write_text("\n".join(lines) + "\n")
    out = tmp_path / "decode"
    cmd = [
        sys.executable, "-m", "espnet_ext.bin.s2t_inference", "--ngpu", "0",
        "--s2t_train_config", str(exp / "config.yaml"), "--s2t_model_file", str(exp / "10epoch.pth"),
        "--data_path_and_name_and_type", f"{scp},speech,sound", "--lang_sym", "deu",
        "--task_sym", "st_eng", "--beam_size", "5", "--batch_size", "2", "--output_dir", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    utts = sorted(l.split()[0] for l in lines)
    for name in ("1best_recog/text", "1best_recog/token", "1best_recog/score", "gates/encoder",
                 "gates/decoder", "gflops", "decode_seconds"):
        rows = dict(l.split(maxsplit=1) for l in (out / name).read_text().splitlines())
        assert sorted(rows) == utts, name
    for line in (out / "1best_recog" / "text").read_text().splitlines():
        assert line.split()[1].startswith("<deu><st_eng><notimestamps>")
    for line in (out / "gates" / "encoder").read_text().splitlines():
        groups = line.split()[1:]
        assert len(groups) == 2 and all(len(g) == 4 and set(g) <= {"0", "1"} for g in groups)
    units = (out / "gates" / "units").read_text()
    assert "encoder ffn1 attn cgmlp ffn2" in units and "decoder self_attn src_attn ffn" in units
    assert all(float(l.split()[1]) > 0 for l in (out / "gflops").read_text().splitlines())
    # the closing log line gives the measured sparsity of what was decoded
    bits = {side: "".join("".join(l.split()[1:]) for l in (out / "gates" / side).read_text().splitlines())
            for side in ("encoder", "decoder")}
    closed = sum(b.count("0") for b in bits.values()) / sum(len(b) for b in bits.values())
    assert f"decoded {len(utts)} utterances: {100 * closed:.1f}% of gated units closed (encoder " \
        in proc.stderr, proc.stderr[-2000:]


def test_stock_espnet_cli_decodes_gated_models_as_ours(trained, tiny_corpus, tmp_path):
    """``python -m espnet2.bin.s2t_inference`` (s2t.sh's decoder) takes --lang_sym/--task_sym
    as the gate context: the same hypotheses as our CLI."""
    exp, _ = trained
    scp = tmp_path / "wav.scp"
    lines = [l for l in (tiny_corpus["valid"] / "wav.scp").read_text().splitlines() if "_deu_st_eng" in l]
    scp.write_text("\n".join(lines) + "\n")
    texts = {}
    for cli in ("espnet2", "espnet_ext"):
        out = tmp_path / cli
        cmd = [
            sys.executable, "-m", f"{cli}.bin.s2t_inference", "--ngpu", "0",
            "--s2t_train_config", str(exp / "config.yaml"), "--s2t_model_file", str(exp / "10epoch.pth"),
            "--data_path_and_name_and_type", f"{scp},speech,sound", "--lang_sym", "<deu>",
            "--task_sym", "<st_eng>", "--beam_size", "3", "--output_dir", str(out),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        texts[cli] = (out / "1best_recog" / "text").read_text()
    assert texts["espnet2"] == texts["espnet_ext"]
    assert len(texts["espnet2"].splitlines()) == len(lines) >= 2


def test_closed_units_are_not_run_and_not_counted(trained, tiny_corpus):
    exp, _ = trained
    s2t = decoder(exp)
    layers = s2t.s2t_model.encoder.encoders
    calls = [0] * len(layers)
    for i, layer in enumerate(layers):
        layer.attn.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    _, wav = first_wav(tiny_corpus)
    s2t(wav)
    gates, gated_gflops = s2t.gates["encoder"], s2t.meter.gflops
    assert gates.shape == (2, 4)
    # the trained model closes units (sparsity ~0.3 in training)
    assert gates.sum() < gates.numel()
    for i in range(len(layers)):
        assert calls[i] == int(gates[i, 1]), (i, gates)
    with force_gates(s2t.s2t_model, 1.0):
        s2t(wav)
    full_gflops = s2t.meter.gflops
    assert gated_gflops["encoder"] < full_gflops["encoder"]
    assert s2t.meter.decoder_steps > 0


def test_all_open_decoding_equals_stock_speech2text(trained, tiny_corpus, tmp_path):
    from espnet2.bin.s2t_inference import Speech2Text

    exp, _ = trained
    stock_dir = stock_copy(exp, tmp_path / "stock")
    stock = Speech2Text(stock_dir / "config.yaml", stock_dir / "model.pth", device="cpu",
                        beam_size=3, lang_sym="<deu>", task_sym="<st_eng>")
    gated = decoder(exp, lang_sym="<deu>", task_sym="<st_eng>")
    _, wav = first_wav(tiny_corpus, "deu")
    ref = stock(wav)
    with force_gates(gated.s2t_model, 1.0):
        out = gated(wav)
    assert [r[2] for r in ref] == [o[2] for o in out]
    assert all(abs(float(r[4].score) - float(o[4].score)) < 1e-4 for r, o in zip(ref, out))


def test_unknown_symbol_is_a_clear_error(trained, tiny_corpus):
    exp, _ = trained
    s2t = decoder(exp)
    _, wav = first_wav(tiny_corpus)
    with pytest.raises(ValueError, match="unknown lang_sym <xyz>"):
        s2t(wav, lang_sym="<xyz>")


def test_dense_macs_count_the_same_decode_with_every_unit_open(trained, tiny_corpus, tmp_path):
    from espnet_ext.pruning.match import matched_gflops

    exp, _ = trained
    s2t = decoder(exp, src_kv_cache=False)
    _, wav = first_wav(tiny_corpus)
    with force_gates(s2t.s2t_model, 1.0):
        s2t(wav)
    open_macs, open_dense = dict(s2t.meter.macs), s2t.meter.dense_macs()
    for part in ("encoder", "decoder"):  # all open: spent == dense
        assert open_dense[part] == pytest.approx(open_macs[part], rel=1e-12), part
    s2t(wav)  # the trained gates close some units
    spent, dense = s2t.meter.macs, s2t.meter.dense_macs()
    assert spent["encoder"] < dense["encoder"]
    # the stock copy (same weights, no gates) costs the same on the same trajectory
    stock = stock_copy(exp, tmp_path / "stock")
    from espnet2.tasks.s2t import S2TTask

    ref, _ = S2TTask.build_model_from_file(stock / "config.yaml", stock / "model.pth", "cpu")
    assert s2t.meter.dense_macs(ref) == pytest.approx(dense, rel=1e-12)

    # match_flops' fraction: gated / stock on the same decodes, length-independent
    res = matched_gflops(exp / "config.yaml", exp / "10epoch.pth", stock / "config.yaml",
                         stock / "model.pth", tiny_corpus["valid"], num_utts=3, beam_size=3)
    assert res["utterances"] == 3
    assert 0.3 < res["fraction"] < 1.0
    assert res["fraction"] == pytest.approx(res["gflops"]["model"] / res["gflops"]["reference"])
    same = matched_gflops(stock / "config.yaml", stock / "model.pth", stock / "config.yaml",
                          stock / "model.pth", tiny_corpus["valid"], num_utts=3, beam_size=3)
    assert same["fraction"] == pytest.approx(1.0, abs=1e-12)
