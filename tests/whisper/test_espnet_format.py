"""Whisper in ESPnet's S2T format: token list, tokenizer, preprocessor, model dir, stage 4."""

import json

import numpy as np
import pytest
import torch
import whisper
import yaml

from espnet_ext.whisper.export import export
from espnet_ext.whisper.preprocessor import S2TWhisperPreprocessor
from espnet_ext.whisper.tokenizer import WhisperTokenizer, encoding, token_list
from nets.test_whisper_token_condition import DE, NO_TS, SOT, TRANSLATE, audio, build
from script_loader import load_script


@pytest.fixture(scope="module")
def tokens():
    return token_list()


def test_token_list_is_whispers_ids_with_owsm_names(tokens):
    enc = encoding()
    assert len(tokens) == enc.n_vocab == 51865
    names = {"<sos>": SOT, "<deu>": DE, "<st_eng>": TRANSLATE, "<notimestamps>": NO_TS,
             "<eos>": 50257, "<asr>": 50359, "<eng>": 50259, "<sop>": 50361, "<0.00>": 50364,
             "<30.00>": 51864}
    assert {n: tokens.index(n) for n in names} == names
    assert "<na>" in tokens and "<unk>" in tokens and len(set(tokens)) == len(tokens)
    # text pieces are the byte-level BPE strings: "Ġ" is a space
    assert tokens[enc.encode_ordinary(" Hallo")[0]] == "ĠHallo"


def test_tokenizer_matches_whisper_ids_and_round_trips(tokens):
    tok = WhisperTokenizer(tokens)
    text = " Guten Morgen, größer als 30 €!"
    pieces = tok.text2tokens("<deu><st_eng><notimestamps>" + text)
    ids = [tokens.index(p) for p in pieces]
    assert ids == [DE, TRANSLATE, NO_TS] + encoding().encode_ordinary(text)
    assert tok.tokens2text(pieces) == "<deu><st_eng><notimestamps>" + text
    assert tok.tokens2text(pieces[3:]) == text.strip()
    with pytest.raises(ValueError, match="not Whisper's"):
        WhisperTokenizer(tokens[:100])


def test_preprocessor_gives_whispers_prompt(tokens):
    pre = S2TWhisperPreprocessor(
        train=False, token_type="word", token_list=tokens, speech_length=2, time_apply_prob=1.0,
    )
    data = pre("utt1", {
        "speech": np.zeros(8000, dtype=np.float32),
        "text": "<deu><st_eng><notimestamps> Good morning.",
        "text_prev": "<na>",
        "text_ctc": "Guten Morgen.",
    })
    # the decoder's target after <sos>: Whisper's own prompt and tokens
    assert data["text"].tolist() == [DE, TRANSLATE, NO_TS] + encoding().encode_ordinary(" Good morning.")
    assert data["text_prev"].tolist() == [tokens.index("<na>")]
    assert data["speech"].shape == (32000, 1)  # padded to speech_length, as S2TPreprocessor does


def test_exported_dir_builds_whisper_in_espnet(tmp_path):
    ref, _, _ = build()
    export(ref, tmp_path / "m")
    meta = yaml.safe_load((tmp_path / "m/meta.yaml").read_text())
    from espnet2.tasks.s2t import S2TTask

    model, args = S2TTask.build_model_from_file(
        tmp_path / "m" / meta["yaml_files"]["s2t_train_config"],
        tmp_path / "m" / meta["files"]["s2t_model_file"], "cpu",
    )
    assert args.preprocessor == "s2t_whisper" and model.ctc is None
    x, lens = audio()
    ys = torch.tensor([[SOT, DE, TRANSLATE, NO_TS, 400, 500]])
    with torch.no_grad():
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(x[0, : lens[0]]))[None]
        ref_logits = ref.decoder(ys, ref.encoder(mel))
        # (#batch, samples, 1): what ESPnet's collate makes of S2TPreprocessor's output
        enc, enc_lens = model.encode(x[:1, : lens[0], None], lens[:1])
        logits, _ = model.decoder(enc, enc_lens, ys, torch.tensor([6]))
    assert (ref_logits - logits).abs().max() < 1e-4


def test_stage4_takes_whisper_without_bpe(tmp_path, monkeypatch):
    ref, _, _ = build()
    monkeypatch.setenv("ESPNET_EXT_CACHE", str(tmp_path / "cache"))
    owsm_model = load_script("owsm_model")
    # a .pt checkpoint as a user would have it on disk
    torch.save({"dims": ref.dims.__dict__, "model_state_dict": ref.state_dict()}, tmp_path / "tiny.pt")
    info = owsm_model.prepare(f"whisper:{tmp_path / 'tiny.pt'}", tmp_path / "base",
                              specials=["<deu>", "<ita>", "<asr>", "<st_eng>"])
    assert info["encoder"] == "whisper_token_condition" and info["num_tokens"] == 51865
    opts = (tmp_path / "base/train_opts").read_text().split()
    assert opts[opts.index("--token_type") + 1] == "word"
    assert opts[opts.index("--preprocessor") + 1] == "s2t_whisper"
    assert not (tmp_path / "base/bpe.model").exists()
    assert (tmp_path / "base/model.pth").resolve().is_file()
    # a token the model lacks is a one-line error before anything is trained
    with pytest.raises(owsm_model.ModelError, match="lacks <xyz>"):
        owsm_model.prepare(f"whisper:{tmp_path / 'tiny.pt'}", tmp_path / "b2", specials=["<xyz>"])
    assert json.loads((tmp_path / "base/model.json").read_text())["decoder_blocks"] == 2


@pytest.mark.slow
def test_real_base_in_espnet_decodes_as_openai_whisper(tmp_path):
    """Whisper base from the PyPI wheels, through stage 4's model dir and our S2T decoding
    (lean beam search, beam 1): the token ids of openai-whisper's greedy decoding."""
    import subprocess

    import soundfile as sf

    from espnet_ext.s2t.inference import Speech2TextGated
    from espnet_ext.whisper.load import load_whisper

    owsm_model = load_script("owsm_model")
    owsm_model.prepare("whisper:base", tmp_path / "base", specials=["<deu>", "<eng>", "<asr>", "<st_eng>"])
    ref = load_whisper("base")
    clips = [("de", "<deu>", "Guten Morgen, wie geht es dir heute?"), ("en", "<eng>", "The weather is nice today.")]
    for lang, lang_sym, sentence in clips:
        wav = tmp_path / f"{lang}.wav"
        subprocess.run(["espeak-ng", "-v", lang, "-w", str(tmp_path / "raw.wav"), sentence], check=True)
        subprocess.run(["sox", str(tmp_path / "raw.wav"), "-r", "16000", "-c", "1", str(wav)], check=True)
        x, _ = sf.read(wav, dtype="float32")
        for task, task_sym in (("transcribe", "<asr>"), ("translate", "<st_eng>")):
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.tensor(x)))
            want = whisper.decode(ref, mel, whisper.DecodingOptions(
                language=lang, task=task, without_timestamps=True, fp16=False, beam_size=None))
            s2t = Speech2TextGated(tmp_path / "base/config.yaml", tmp_path / "base/model.pth",
                                   beam_size=1, lang_sym=lang_sym, task_sym=task_sym, maxlenratio=0.0)
            got = s2t.decode_one(x)
            text, _, ids, text_nospecial, _ = got.results[0]
            assert ids[:3] == [s2t.converter.token2id[t] for t in (lang_sym, task_sym, "<notimestamps>")]
            assert ids[3:] == list(want.tokens), (lang, task, text, want.text)
            assert text_nospecial == want.text.strip()
