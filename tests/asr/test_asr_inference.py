"""Gated ASR decoding (espnet_ext.asr.inference): gate records and GFLOPs, and its command (the
loop, records and files of S2T decoding, espnet_ext.bin.s2t_inference)."""

import numpy as np
import pytest
import soundfile
import torch
import yaml
from espnet2.tasks.asr import ASRTask

from espnet_ext import flops
from espnet_ext.asr.inference import Speech2TextGated, main
from espnet_ext.gating import force_gates, pin_gates
from espnet_ext.nets.transformer_encoder_token_condition import transformer_unit_costs
from espnet_ext.s2t.meter import Step

from test_asr_model import CONF, TOKENS  # tests/asr/test_asr_model.py


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("asr")
    parser = ASRTask.get_parser()
    args = parser.parse_args(["--config", str(CONF / "train_asr_transformer_gated.yaml"),
                              "--token_list", ",".join(TOKENS), "--output_dir", str(out),
                              "--encoder_conf", "gate_predictor=local"])
    args.token_list = list(TOKENS)
    args.token_type = "char"  # the tokens are letters: text without a BPE model
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    (out / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), out / "model.pth")
    return out


def s2t(model_dir, **kw):
    conf = dict(beam_size=2, ctc_weight=0.3, lm_weight=0.0, maxlenratio=0.3)
    conf.update(kw)
    return Speech2TextGated(asr_train_config=str(model_dir / "config.yaml"),
                            asr_model_file=str(model_dir / "model.pth"), **conf)


def test_gflops_count_the_open_units_only(model_dir):
    dec = s2t(model_dir)
    enc = dec.asr_model.encoder
    speech = np.random.default_rng(0).standard_normal(12000).astype("float32")
    sub = flops.subsampling(enc, 12000 // 160 + 1, 20)
    seen = {}
    for value in (1.0, 0.0):
        with force_gates(dec.asr_model, value):
            dec(speech)
        seen[value] = dec.encoder_gflops
        assert torch.equal(dec.gates["encoder"], torch.full((2, 2), value))
    n_frames = int(enc.embed(torch.zeros(1, 12000 // 160 + 1, 20), None)[0].size(1))
    units = transformer_unit_costs(enc, n_frames)
    assert seen[0.0] == pytest.approx(sub / 1e9)  # fvcore: 1 multiply-add = 1 flop
    assert seen[1.0] == pytest.approx((sub + float(units.sum())) / 1e9)
    pattern = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    with pin_gates(enc, pattern):
        dec(speech)
    expected = sub + float(units[0, 0] + units[1, 1])
    assert dec.encoder_gflops == pytest.approx(expected / 1e9)


def test_cli_writes_the_s2t_layout(model_dir, tmp_path):
    d = tmp_path / "test_clean"
    d.mkdir()
    lines = []
    for i in range(3):
        wav = d / f"u{i}.flac"
        soundfile.write(wav, np.random.default_rng(i).standard_normal(9000 + 800 * i) * 0.1, 16000)
        lines.append(f"c{i} {wav}")
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    conf = tmp_path / "decode.yaml"
    conf.write_text("beam_size: 2\nctc_weight: 0.3\nlm_weight: 0.0\nmaxlenratio: 0.3\n")
    out = tmp_path / "dec"
    argv = ["--asr_train_config", str(model_dir / "config.yaml"), "--asr_model_file",
            str(model_dir / "model.pth"), "--config", str(conf), "--ngpu", "0",
            "--data_path_and_name_and_type", f"{d / 'wav.scp'},speech,sound", "--output_dir", str(out)]
    from espnet_ext.bin.s2t_inference import get_parser

    args = get_parser("asr").parse_args(argv + ["--beam_size", "1"])  # options override the YAML
    assert (args.beam_size, args.ctc_weight, args.maxlenratio) == (1, 0.3, 0.3)
    summary = main(argv + ["--beam_size", "1"])
    assert summary["utts"] == 3
    keys = ["c0", "c1", "c2"]
    for name in ("text", "token", "token_int", "score", "text_nospecial"):
        assert [line.split()[0] for line in (out / "1best_recog" / name).read_text().splitlines()] == keys
    assert (out / "gates/units").read_text() == "encoder attn ffn\n"
    gates = dict(line.split(maxsplit=1) for line in (out / "gates/encoder").read_text().splitlines())
    assert list(gates) == keys and all(len(b.split()) == 2 for b in gates.values())
    dec = s2t(model_dir, beam_size=1)
    for i, key in enumerate(keys):  # the records are the class's decode of each utterance
        speech, _ = soundfile.read(d / f"u{i}.flac", dtype="float32")
        text = dec(speech)[0][0]
        assert (out / "1best_recog/text").read_text().splitlines()[i] == f"{key} {text}".rstrip()
        assert float((out / "gflops").read_text().splitlines()[i].split()[1]) == pytest.approx(
            dec.meter.gflops["total"], abs=5e-5)
    bad = tmp_path / "bad.yaml"
    bad.write_text("beam: 2\n")
    with pytest.raises(SystemExit):
        main(argv[:4] + ["--config", str(bad)] + argv[6:])


def test_lean_search_gives_espnets_hypotheses(model_dir):
    conf = dict(beam_size=3, nbest=2, ctc_weight=0.0, penalty=0.1)
    lean, espnet = s2t(model_dir, **conf), s2t(model_dir, search="espnet", **conf)
    assert lean.lean is not None and espnet.lean is None
    assert s2t(model_dir).lean is None  # CTC prefix scoring: ESPnet's search
    rng = np.random.default_rng(1)
    for maxlenratio in (0.3, 0.0):  # length cut; end detection
        lean.maxlenratio = espnet.maxlenratio = maxlenratio
        for n in (9000, 12000):
            speech = rng.standard_normal(n).astype("float32")
            a, b = lean(speech), espnet(speech)
            assert len(a) == 2 and [r[2] for r in a] == [r[2] for r in b]
            assert [r[1] for r in a] == [r[1] for r in b] and [r[3] for r in a] == [r[0] for r in a]
            assert all(abs(float(x[4].score) - float(y[4].score)) < 1e-4 for x, y in zip(a, b))
            assert torch.equal(lean.gates["encoder"], espnet.gates["encoder"])
            assert lean.encoder_gflops == pytest.approx(espnet.encoder_gflops, rel=1e-12)
            # the lean search caches keys/values; ESPnet's decoder recomputes the prefix's
            assert 0 < lean.meter.gflops["decoder"] < espnet.meter.gflops["decoder"]


def test_espnet_search_is_counted_by_hooks_as_it_runs(model_dir):
    """ESPnet's search, untouched (no patched method), recorded step by step; its decoder
    MACs equal every Linear call plus the attention products (primer [sos]: one query a step)."""
    dec = s2t(model_dir)  # ctc_weight 0.3: ESPnet's search
    decoder = dec.asr_model.decoder
    linear, rows = [0], []

    def count(m, inp, out):
        linear[0] += inp[0].numel() // m.in_features * m.in_features * m.out_features

    hooks = [m.register_forward_hook(count) for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    hooks.append(decoder.output_layer.register_forward_hook(lambda m, inp, out: rows.append(len(inp[0]))))
    speech = np.random.default_rng(2).standard_normal(12000).astype("float32")
    try:
        dec(speech)
    finally:
        for h in hooks:
            h.remove()
    assert "forward_one_step" not in vars(decoder)
    steps, n_frames = dec.meter.steps, dec.meter.frames[2]
    assert len(steps) > 3 and [s.n_hyps for s in steps] == rows
    assert steps == [Step(n, 1, t) for t, n in enumerate(rows, 1)]
    d = decoder.decoders[0].self_attn.linear_k.in_features
    products = sum(n * 2 * d * (prefix + n_frames) * len(decoder.decoders) for n, _, prefix in steps)
    assert dec.meter.macs["decoder"] == pytest.approx(linear[0] + products, rel=1e-9)


def test_speaker_context_reaches_the_gates_in_both_searches(model_dir, tmp_path):
    """The same utterance with different speakers: both searches run (and return) the gates of
    the speaker given, and the speakers' gates differ."""
    from gate_spy import seen_gates, sharpen

    args = ASRTask.get_parser().parse_args([
        "--config", str(CONF / "train_asr_transformer_gated.yaml"), "--token_list", ",".join(TOKENS),
        "--output_dir", str(tmp_path)])
    args.token_list = list(TOKENS)
    args.encoder_conf.update(gate_context=["spk"], spk_embed_dim=8)
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    conf = dict(beam_size=2, ctc_weight=0.0, maxlenratio=0.3)
    lean, espnet = s2t(tmp_path, **conf), s2t(tmp_path, search="espnet", **conf)
    assert lean.lean is not None and espnet.lean is None
    for dec in (lean, espnet):
        sharpen(dec.asr_model)
    speech = np.random.default_rng(2).standard_normal(12000).astype("float32")
    rng = np.random.default_rng(3)
    gates = []
    for spk in 3 * rng.standard_normal((6, 8)):
        out = []
        for dec in (lean, espnet):
            with seen_gates() as seen:
                results = dec(speech, spk_embed=spk)
            assert torch.equal(dec.gates["encoder"], seen["encoder"].float())
            out.append((dec.gates["encoder"], [r[2] for r in results]))
        assert torch.equal(out[0][0], out[1][0]) and out[0][1] == out[1][1]
        gates.append(out[0][0])
    assert len({str(g.tolist()) for g in gates}) >= 2
    with pytest.raises(ValueError, match="spk_embed"):  # no speaker: a clear error
        lean(speech)
