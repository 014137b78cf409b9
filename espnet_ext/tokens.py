"""OWSM-style special tokens and BPE token lists (``s2t.sh`` / ``asr.sh`` stage 5).

Token list layout (as ESPnet writes it): ``<blank>``, ``<unk>``, the
sentencepiece pieces (special symbols first, as user-defined symbols, so
each is a single token), then ``<sos>``, ``<eos>``, ``<sop>`` (S2T) or
``<sos/eos>`` (ASR: ``ASR_TAIL``).
"""

from pathlib import Path
from typing import Iterable, List, Sequence

OWSM_LANGS = ("eng", "deu", "fra", "ita")
S2T_TAIL = ("<sos>", "<eos>", "<sop>")  # s2t.sh: tokenize_text --add_symbol for each
ASR_TAIL = ("<sos/eos>",)  # asr.sh


def special_tokens(
    langs: Sequence[str] = OWSM_LANGS,
    st_targets: Sequence[str] = ("eng",),
    time_tokens: bool = True,
    resolution: float = 0.02,
    max_seconds: float = 30.0,
) -> List[str]:
    """OWSM v3.1 special symbols: ``<na> <nospeech> <lang>... <asr> <st_x>...
    <notimestamps> <0.00> ... <30.00>`` (ISO 639-3 language codes).

    Without ``time_tokens`` only ``<0.00>`` and ``<30.00>`` are kept (the
    inference code looks both up; nothing between them is predicted when
    every text has ``<notimestamps>``).
    """
    tokens = ["<na>", "<nospeech>"] + [f"<{l}>" for l in langs]
    tokens += ["<asr>"] + [f"<st_{t}>" for t in st_targets] + ["<notimestamps>"]
    if time_tokens:
        steps = int(round(max_seconds / resolution))
        tokens += [f"<{i * resolution:.2f}>" for i in range(steps + 1)]
    else:
        tokens += ["<0.00>", f"<{max_seconds:.2f}>"]
    return tokens


def text_lines(files: Iterable[Path]) -> List[str]:
    """Kaldi ``text`` files -> their transcripts (utterance ids removed)."""
    lines = []
    for f in files:
        for line in Path(f).read_text(encoding="utf-8").splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2:
                lines.append(parts[1])
    return lines


def train_bpe(
    texts: Sequence[str],
    out_dir: Path,
    vocab_size: int,
    nlsyms: Sequence[str],
    model_type: str = "unigram",
    tail: Sequence[str] = S2T_TAIL,
) -> Path:
    """Trains sentencepiece and writes ``bpe.model`` and ``tokens.txt``.

    Args:
        texts: Training sentences (may contain the special symbols).
        out_dir: Output directory.
        vocab_size: sentencepiece vocabulary size (special symbols included).
        nlsyms: Special symbols, each kept as one token.
        model_type: "unigram" (as OWSM) or "bpe".
        tail: Symbols after the pieces (``S2T_TAIL``, or ``ASR_TAIL`` for ESPnet's ASR task).

    Returns:
        Path to ``tokens.txt``.
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not texts:
        raise ValueError("no text to train the BPE model on")
    train = out_dir / "train.txt"
    train.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(train),
        vocab_size=vocab_size,
        model_type=model_type,
        model_prefix=str(out_dir / "bpe"),
        character_coverage=1.0,
        input_sentence_size=100_000_000,
        **({"user_defined_symbols": ",".join(nlsyms)} if nlsyms else {}),
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(out_dir / "bpe.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    tokens = ["<blank>", "<unk>"] + pieces[3:] + list(tail)
    path = out_dir / "tokens.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path
