"""scripts/decode.py --task asr: ASR sets decoded by the S2T decode loop, in S2T's layout."""

import json

import numpy as np
import pytest
import soundfile

from espnet_ext.results import read_decode
from script_loader import load_script
from test_asr_inference import model_dir  # noqa: F401 (the fixture: a tiny gated ASR model)

decode = load_script("decode")

SETS = {"test_clean": 3, "dev": 2}  # names as they are: no <lang>_<task>
# what S2T decoding writes for a model gated in its encoder only (espnet_ext.bin.s2t_inference)
LAYOUT = {".done", "decode_seconds", "gflops", "gates/encoder", "gates/units", "logdir/decoded.jsonl",
          *(f"1best_recog/{f}" for f in ("text", "token", "token_int", "score", "text_nospecial"))}


@pytest.fixture
def dump(tmp_path):
    for name, n in SETS.items():
        d = tmp_path / "dump" / name
        d.mkdir(parents=True)
        lines = []
        for i in range(n):
            wav = d / f"{name}{i}.flac"
            soundfile.write(wav, np.random.default_rng(i).standard_normal(9000 + 900 * i) * 0.1, 16000)
            lines.append(f"{name}{i} {wav}\n")
        (d / "wav.scp").write_text("".join(lines))
    conf = tmp_path / "decode_asr.yaml"
    conf.write_text("beam_size: 2\nctc_weight: 0.0\nlm_weight: 0.0\nmaxlenratio: 0.3\n")
    return tmp_path / "dump", conf


def files(out):
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def texts(out):
    return {p.relative_to(out).as_posix(): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()
            and "logdir" not in p.parts and p.name not in ("decode_seconds", ".done")}


def run(model, dump, conf, capsys, *extra, sets=tuple(SETS)):
    decode.main(["--task", "asr", "--model_dir", str(model), "--model_file", "model.pth", "--dump",
                 str(dump), *extra, *sets, "--", "--config", str(conf), "--ngpu", "0"])
    return capsys.readouterr().out


def test_asr_sets_in_the_s2t_layout_and_resumed(model_dir, dump, capsys, tmp_path):  # noqa: F811
    dump, conf = dump
    model = tmp_path / "gated"
    model.mkdir()
    for f in ("config.yaml", "model.pth"):
        (model / f).symlink_to(model_dir / f)
    out = run(model, dump, conf, capsys)
    assert "python -m espnet_ext.asr.inference --config" in out and "--lang_sym" not in out
    for name, n in SETS.items():
        assert f"decoded gated {name}: {n} utts in " in out
        dec_dir = model / f"decode_{name}"
        assert files(dec_dir) == LAYOUT
        dec = read_decode(dec_dir)
        keys = [f"{name}{i}" for i in range(n)]
        assert list(dec.hyps) == keys and list(dec.gates) == ["encoder"]
        assert list(dec.gates["encoder"]) == keys and dec.units == {"encoder": ["attn", "ffn"]}
        assert all(len(v.split()) == 2 for v in dec.gates["encoder"].values())
        assert list(dec.gflops) == keys and all(v > 0 for v in dec.gflops.values())
        assert list(dec.seconds) == keys
    # a decode killed after its first utterance: the rerun keeps it and decodes the others
    dec_dir = model / "decode_test_clean"
    before = texts(dec_dir)
    log = dec_dir / "logdir" / "decoded.jsonl"
    first = json.loads(log.read_text().splitlines()[0])
    first["nbest"][0]["text"] = "KEPT"  # marks the record the rerun must not decode again
    log.write_text(json.dumps(first) + "\n" + '{"key": "torn')
    for f in files(dec_dir) - {"logdir/decoded.jsonl"}:
        (dec_dir / f).unlink()
    out = run(model, dump, conf, capsys, sets=("test_clean",))
    after = texts(dec_dir)
    assert after.pop("1best_recog/text").splitlines() == \
        ["test_clean0 KEPT"] + before.pop("1best_recog/text").splitlines()[1:]
    assert after == before and files(dec_dir) == LAYOUT
    assert run(model, dump, conf, capsys) == ""  # every set .done: nothing to do


@pytest.mark.slow
def test_asr_two_jobs_equal_one(model_dir, dump, capsys, tmp_path):  # noqa: F811
    dump, conf = dump
    outs = []
    for name, nj in (("one", "1"), ("two", "2")):
        model = tmp_path / name
        model.mkdir()
        for f in ("config.yaml", "model.pth"):
            (model / f).symlink_to(model_dir / f)
        out = run(model, dump, conf, capsys, "--nj", nj, sets=("test_clean",))
        outs.append(texts(model / "decode_test_clean"))
    assert "2 jobs of: python -m espnet_ext.asr.inference" in out
    assert outs[0] == outs[1] and len(outs[0]["1best_recog/text"].splitlines()) == 3


def test_asr_speaker_embeddings_reach_the_gates(dump, capsys, tmp_path):
    """--npy spk_embed: each utterance decoded with its own speaker's gates, as the class does."""
    import torch
    import yaml
    from espnet2.tasks.asr import ASRTask

    from gate_spy import sharpen
    from test_asr_inference import CONF, TOKENS, s2t

    dump, conf = dump
    model = tmp_path / "gated_spk"
    model.mkdir()
    args = ASRTask.get_parser().parse_args([
        "--config", str(CONF / "train_asr_transformer_gated.yaml"), "--token_list", ",".join(TOKENS),
        "--output_dir", str(model)])
    args.token_list, args.token_type = list(TOKENS), "char"
    args.encoder_conf.update(gate_context=["spk"], spk_embed_dim=8)
    torch.manual_seed(0)
    net = ASRTask.build_model(args)
    sharpen(net)  # gates far from 0.5: the speaker decides them
    (model / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(net.state_dict(), model / "model.pth")
    d = dump / "test_clean"
    embeds = {}
    for i, line in enumerate((d / "wav.scp").read_text().splitlines()):
        key = line.split()[0]
        embeds[key] = 3 * np.random.default_rng(10 + i).standard_normal(8).astype("float32")
        np.save(d / f"{key}.npy", embeds[key])
    (d / "spk_embed.scp").write_text("".join(f"{k} {d / k}.npy\n" for k in embeds))
    run(model, dump, conf, capsys, "--npy", "spk_embed", sets=("test_clean",))
    dec = read_decode(model / "decode_test_clean")
    ref = s2t(model, beam_size=2, ctc_weight=0.0, lm_weight=0.0, maxlenratio=0.3)  # the saved weights
    token_int = dict(line.split(maxsplit=1) for line in
                     (model / "decode_test_clean/1best_recog/token_int").read_text().splitlines())
    for i, (key, embed) in enumerate(embeds.items()):
        speech, _ = soundfile.read(d / f"{key}.flac", dtype="float32")
        results = ref(speech, spk_embed=embed)
        assert token_int[key] == " ".join(map(str, results[0][2]))
        assert dec.gates["encoder"][key] == " ".join(
            "".join(str(int(v)) for v in row) for row in ref.gates["encoder"].int().tolist())
    assert len(set(dec.gates["encoder"].values())) >= 2  # the speakers' gates differ
