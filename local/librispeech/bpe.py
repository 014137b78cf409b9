#!/usr/bin/env python3
"""BPE model and ESPnet ASR token list, as asr.sh stage 5 makes them.

sentencepiece (``--model_type unigram``, ``character_coverage 1.0``) on the transcripts of
the given Kaldi ``text`` files; ``tokens.txt`` = ``<blank> <unk>`` + the pieces +
``<sos/eos>`` (what ``espnet2.bin.tokenize_text --add_symbol`` writes for asr.sh).

Usage:
    python local/librispeech/bpe.py --vocab_size 5000 --out data/token_list/bpe_unigram5000 \\
        data/train_clean_100/text
"""

import argparse
import logging
import sys
from pathlib import Path

PROG = "librispeech/bpe"


def main(argv=None) -> int:
    import sentencepiece as spm

    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("texts", nargs="+", type=Path, help="Kaldi text files.")
    parser.add_argument("--out", required=True, type=Path, help="Output dir.")
    parser.add_argument("--vocab_size", "--vocab-size", type=int, default=5000, help="nbpe (ESPnet: 5000).")
    parser.add_argument("--model_type", "--model-type", default="unigram", choices=["unigram", "bpe"])
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    lines = []
    for f in args.texts:
        for line in f.read_text(encoding="utf-8").splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2:
                lines.append(parts[1])
    if not lines:
        logging.error(f"no transcript in {[str(f) for f in args.texts]}")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    train = args.out / "train.txt"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(train),
        vocab_size=args.vocab_size,
        model_type=args.model_type,
        model_prefix=str(args.out / "bpe"),
        character_coverage=1.0,
        input_sentence_size=100_000_000,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(args.out / "bpe.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    tokens = ["<blank>", "<unk>"] + pieces[3:] + ["<sos/eos>"]
    (args.out / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    logging.info(f"{args.out / 'tokens.txt'}: {len(tokens)} tokens from {len(lines)} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
