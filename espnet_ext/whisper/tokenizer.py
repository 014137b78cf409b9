"""Whisper's tokens in ESPnet's S2T format.

ESPnet's S2T model and preprocessor find their special tokens by OWSM's names
(``<sos>``, ``<eos>``, ``<sop>``, ``<na>``, ``<notimestamps>``, ``<0.00>``, the
``<deu>``/``<asr>`` prefix of every ``text`` line). ``token_list`` is Whisper's
multilingual vocabulary, id for id, with its special tokens under those names
(``<|de|>`` -> ``<deu>``, ``<|transcribe|>`` -> ``<asr>``, ``<|translate|>`` ->
``<st_eng>``, ...), so the data's ``<deu><st_eng><notimestamps>`` prefix is
Whisper's own ``<|de|><|translate|><|notimestamps|>`` prompt and ESPnet's
model, decoding and our gate context work unchanged. Text tokens are
Whisper's byte-level BPE pieces, written as GPT-2 writes bytes (``Ġ`` = space).
"""

import re
from functools import lru_cache
from typing import Dict, Iterable, List

from espnet2.text.abs_tokenizer import AbsTokenizer

# ISO 639-1 (Whisper) -> ISO 639-3 (OWSM) of the languages our recipes use; others keep
# Whisper's name (<|xx|>), so a recipe asking for them gets a one-line "not in the token list".
LANGS = {
    "en": "eng", "de": "deu", "fr": "fra", "it": "ita", "es": "spa", "pt": "por", "nl": "nld",
    "pl": "pol", "ro": "ron", "ru": "rus", "zh": "zho", "ja": "jpn", "ko": "kor", "ar": "ara",
    "cs": "ces", "sv": "swe", "fi": "fin", "da": "dan", "el": "ell", "hu": "hun", "tr": "tur",
}
RENAMED = {
    "<|endoftext|>": "<eos>",
    "<|startoftranscript|>": "<sos>",
    "<|startofprev|>": "<sop>",
    "<|notimestamps|>": "<notimestamps>",
    "<|transcribe|>": "<asr>",
    "<|translate|>": "<st_eng>",  # Whisper translates into English only
    # ESPnet needs these two names; Whisper's tokenizer never produces the tokens behind them
    "<|nospeech|>": "<na>",
    "<|startoflm|>": "<unk>",
    **{f"<|{k}|>": f"<{v}>" for k, v in LANGS.items()},
}
_SPECIAL = re.compile(r"(<[^<>\s]+>)")


def _bytes_to_unicode() -> Dict[int, str]:
    # GPT-2's printable stand-ins for bytes: printable Latin-1 bytes stand for themselves,
    # the others for the code points 256, 257, ... in order
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


BYTE_CHARS = _bytes_to_unicode()
CHAR_BYTES = {c: b for b, c in BYTE_CHARS.items()}


@lru_cache(maxsize=2)
def encoding(num_languages: int = 99):
    """openai-whisper's multilingual tiktoken encoding (its files ship in the package)."""
    from whisper.tokenizer import get_encoding

    return get_encoding("multilingual", num_languages)


def token_list(num_languages: int = 99) -> List[str]:
    """Whisper's vocabulary (51,865 for 99 languages), specials under OWSM's names."""
    enc = encoding(num_languages)
    tokens = [None] * enc.n_vocab
    for i in range(enc.n_vocab):
        if i not in enc._special_tokens.values():
            tokens[i] = "".join(BYTE_CHARS[b] for b in enc.decode_single_token_bytes(i))
    for name, i in enc._special_tokens.items():
        if name.startswith("<|") and re.fullmatch(r"<\|\d+\.\d\d\|>", name):
            name = f"<{name[2:-2]}>"  # timestamps: <|0.02|> -> <0.02>
        tokens[i] = RENAMED.get(name, name)
    missing = [i for i, t in enumerate(tokens) if t is None]
    if missing or len(set(tokens)) != len(tokens):
        raise RuntimeError(f"Whisper vocabulary: ids without a unique name: {missing[:5]}")
    return tokens


class WhisperTokenizer(AbsTokenizer):
    """Text <-> Whisper tokens; ``<...>`` tags of the token list are single tokens.

    Args:
        tokens (Iterable[str]): The model's token list (``token_list()``).
    """

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        self.specials = {t for t in tokens if _SPECIAL.fullmatch(t)}
        self.enc = encoding()
        if len(tokens) != self.enc.n_vocab:
            raise ValueError(f"token list of {len(tokens)} entries is not Whisper's ({self.enc.n_vocab})")

    def text2tokens(self, line: str) -> List[str]:
        out = []
        for part in _SPECIAL.split(line):
            if part in self.specials:
                out.append(part)
            elif part:
                out += ["".join(BYTE_CHARS[b] for b in self.enc.decode_single_token_bytes(i))
                        for i in self.enc.encode_ordinary(part)]
        return out

    def tokens2text(self, tokens: Iterable[str]) -> str:
        data, text = bytearray(), []
        for t in tokens:
            if t in self.specials:
                text.append(data.decode("utf-8", errors="replace") + t)
                data = bytearray()
            else:
                data += bytes(CHAR_BYTES[c] for c in t)
        # as sentencepiece: no leading space (Whisper texts start with a space token)
        return ("".join(text) + data.decode("utf-8", errors="replace")).lstrip()
