"""The text conventions WER and CER are computed on (``scripts/score.py --wer_norm``).

Published WERs of the same hypotheses differ by several points with the convention alone, so
every WER this project writes names the one it was computed with:

- ``ours`` (the default): special tokens ``<...>`` removed, lower case, apostrophes and hyphens
  -> space, other punctuation (Unicode categories P*) removed, whitespace collapsed. The mini
  Europarl references are written this way.
- ``raw``: ESPnet's ``s2t.sh`` (stage 13, word level): the text as it is, cased and punctuated,
  split on whitespace; only the special tokens ``<...>`` are removed (``tokenize_text
  --remove_non_linguistic_symbols true``, the default ``--cleaner none``).
- ``whisper_basic``: openai-whisper's ``whisper.normalizers.BasicTextNormalizer()`` (lower
  case, ``[...]``/``(...)`` spans removed, symbols and punctuation -> space, diacritics kept),
  what the Whisper and OWSM papers score non-English sets with.
- ``whisper_english``: ``EnglishTextNormalizer()`` (also spelling, contractions, numbers and
  British -> American spelling, diacritics removed), what they score English sets with. It is
  meant for English only: on a set of another language it falls back to ``whisper_basic``,
  the Whisper paper's convention for such sets, and that set records ``whisper_basic``.

Both Whisper normalisers run after the special tokens are removed; their output is
whitespace-collapsed (``BasicTextNormalizer`` leaves trailing spaces).
"""

import importlib.metadata
import re
import unicodedata
from functools import lru_cache
from typing import Callable

SPECIAL = re.compile(r"<[^<>\s]*>")
NAMES = ("ours", "raw", "whisper_basic", "whisper_english")
DEFAULT = "ours"
# Beside every WER in RESULTS.md: "<name>: <label>".
LABELS = {
    "ours": "lower-case, no punctuation",
    "raw": "ESPnet s2t.sh, text as is",
    "whisper_basic": "Whisper BasicTextNormalizer",
    "whisper_english": "Whisper EnglishTextNormalizer",
}
ENGLISH = {"eng", "en"}  # language codes of the test sets (OWSM's ISO 639-3; Europarl's ISO 639-1)


def strip_special(text: str) -> str:
    """Special tokens ``<...>`` removed, whitespace collapsed (case and punctuation kept)."""
    return " ".join(SPECIAL.sub(" ", text).split())


def lc_nopunct(text: str) -> str:
    """``ours``: lower case, no punctuation (apostrophes and hyphens become spaces)."""
    text = SPECIAL.sub(" ", text).lower()
    text = re.sub(r"['’\-]", " ", text)
    text = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
    return " ".join(text.split())


def whisper_version() -> str:
    try:
        return importlib.metadata.version("openai-whisper")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def description(name: str) -> str:
    """What ``name`` does to the text, for scores.json and RESULTS.md."""
    return {
        "ours": "special tokens <...> removed; lower case; apostrophes and hyphens -> space; "
                "other punctuation (Unicode P*) removed; whitespace collapsed",
        "raw": "as ESPnet's s2t.sh: special tokens <...> removed, text as is (cased, "
               "punctuated), split on whitespace",
        "whisper_basic": f"special tokens <...> removed, then openai-whisper {whisper_version()} "
                         "BasicTextNormalizer() (lower case, symbols and punctuation -> space, "
                         "diacritics kept)",
        "whisper_english": f"special tokens <...> removed, then openai-whisper {whisper_version()} "
                           "EnglishTextNormalizer() (English sets only; other languages: "
                           "whisper_basic)",
    }[check(name)]


def label(name: str) -> str:
    """``ours: lower-case, no punctuation``: the convention as RESULTS.md shows it."""
    return f"{check(name)}: {LABELS[name]}"


def check(name: str) -> str:
    if name not in NAMES:
        raise ValueError(f"--wer_norm {name}: one of {', '.join(NAMES)}")
    return name


def resolve(name: str, lang: str) -> str:
    """The convention a set of language ``lang`` is scored with under ``--wer_norm name``."""
    if check(name) == "whisper_english" and lang.lower() not in ENGLISH:
        return "whisper_basic"
    return name


@lru_cache(maxsize=None)
def _whisper(name: str):
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    return EnglishTextNormalizer() if name == "whisper_english" else BasicTextNormalizer()


def normaliser(name: str) -> Callable[[str], str]:
    """The text -> text function of a convention (after ``resolve``)."""
    if check(name) == "ours":
        return lc_nopunct
    if name == "raw":
        return strip_special
    whisper = _whisper(name)
    return lambda text: " ".join(whisper(SPECIAL.sub(" ", text)).split())
