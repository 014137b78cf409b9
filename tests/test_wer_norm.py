"""espnet_ext.wer_norm: the text conventions of ``scripts/score.py --wer_norm`` on real strings."""

import pytest

from espnet_ext import wer_norm as wn

SPEECH = "<eng><asr><notimestamps> Mr. Smith doesn't pay $20 — it's the colour, isn't it?"
GERMAN = "<deu><asr><notimestamps> Grüß Gott, Herr Müller! Das kostet 3,50 €."


def norm(name: str, text: str, lang: str = "eng") -> str:
    return wn.normaliser(wn.resolve(name, lang))(text)


def test_hello_world_under_each_convention():
    assert norm("ours", "Hello, World!") == "hello world"
    assert norm("raw", "Hello, World!") == "Hello, World!"
    assert norm("whisper_basic", "Hello, World!") == "hello world"  # no trailing space left
    assert norm("whisper_english", "Hello, World!") == "hello world"


def test_conventions_differ_on_a_sentence():
    assert norm("ours", SPEECH) == "mr smith doesn t pay $20 it s the colour isn t it"  # $: Sc, kept
    assert norm("raw", SPEECH) == "Mr. Smith doesn't pay $20 — it's the colour, isn't it?"
    assert norm("whisper_basic", SPEECH) == "mr smith doesn t pay 20 it s the colour isn t it"
    # spelling, contractions, currency and British -> American spelling
    assert norm("whisper_english", SPEECH) == "mister smith does not pay $20 it is the color is not it"


def test_whisper_english_falls_back_to_basic_on_other_languages():
    assert wn.resolve("whisper_english", "eng") == "whisper_english"
    assert wn.resolve("whisper_english", "en") == "whisper_english"
    assert wn.resolve("whisper_english", "deu") == "whisper_basic"
    assert wn.resolve("raw", "deu") == "raw" and wn.resolve("ours", "fra") == "ours"
    assert norm("whisper_english", GERMAN, "deu") == "grüß gott herr müller das kostet 3 50"
    # what the English normaliser would have made of it: diacritics gone, "3,50" a number
    assert wn.normaliser("whisper_english")(GERMAN) == "gruss gott herr muller das kostet 350 €"
    assert norm("ours", GERMAN, "deu") == "grüß gott herr müller das kostet 350 €"


def test_special_tokens_go_under_every_convention():
    for name in wn.NAMES:
        assert "<" not in norm(name, SPEECH) and "notimestamps" not in norm(name, SPEECH), name
    assert norm("raw", "<na>  two   spaces ") == "two spaces"


def test_labels_and_unknown_names():
    assert wn.label("ours") == "ours: lower-case, no punctuation"
    assert wn.label("raw") == "raw: ESPnet s2t.sh, text as is"
    assert "BasicTextNormalizer" in wn.description("whisper_basic")
    assert wn.whisper_version() in wn.description("whisper_english")
    with pytest.raises(ValueError, match="--wer_norm whisper: one of ours, raw"):
        wn.normaliser("whisper")
    with pytest.raises(ValueError, match="--wer_norm none"):
        wn.resolve("none", "eng")
