#!/usr/bin/env python3
"""Stage 4: BPE model and ESPnet token list with the OWSM special tokens (or a plain ASR one).

The special symbols (``<na> <nospeech> <eng> <deu> <fra> <ita> <asr> <st_eng>
<notimestamps> <0.00> <30.00>``, see ``espnet_ext.tokens.special_tokens``) are
sentencepiece user-defined symbols, so each is one token; the pieces are learnt
from the targets (``text``) and source transcripts (``text.ctc``) of the given dirs.

``--asr`` (ESPnet's ASR task, as asr.sh stage 5): the pieces of the dirs' ``text`` only, no
special symbol; ``tokens.txt`` = ``<blank> <unk>`` + the pieces + ``<sos/eos>``.

Usage:
    python scripts/make_token_list.py --vocab_size 300 --out data/token_list/bpe_unigram300 \\
        dump/raw/pretrain dump/raw/train
    python scripts/make_token_list.py --asr --vocab_size 5000 --out data/token_list/bpe_unigram5000 \\
        data/train_clean_100
"""

import argparse
import logging
from pathlib import Path

from espnet_ext.tokens import ASR_TAIL, S2T_TAIL, special_tokens, text_lines, train_bpe

PROG = "make_token_list"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dirs", nargs="+", type=Path, help="Dirs with text, text.ctc (--asr: text).")
    parser.add_argument("--out", required=True, type=Path, help="Output dir.")
    parser.add_argument("--vocab_size", "--vocab-size", required=True, type=int,
                        help="sentencepiece vocabulary (special symbols included).")
    parser.add_argument("--model_type", "--model-type", default="unigram", choices=["unigram", "bpe"],
                        help="sentencepiece model type (OWSM: unigram).")
    parser.add_argument("--asr", action="store_true",
                        help="ESPnet's ASR task: plain transcripts (text), no special tokens, "
                             "<sos/eos> (asr.sh).")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    if args.asr:  # asr.sh: the transcripts alone, no special symbol, <sos/eos>
        nlsyms, names, tail = [], ("text",), ASR_TAIL
    else:
        nlsyms, names, tail = special_tokens(time_tokens=False), ("text", "text.ctc"), S2T_TAIL
    texts = text_lines(d / n for d in args.data_dirs for n in names)
    tokens = train_bpe(texts, args.out, args.vocab_size, nlsyms, args.model_type, tail)
    if nlsyms:
        (args.out / "nlsyms.txt").write_text("\n".join(nlsyms) + "\n")
    n = len(tokens.read_text().split())
    logging.info(f"{tokens}: {n} tokens from {len(texts)} lines"
                 + (f"; specials: {' '.join(nlsyms)}" if nlsyms else ""))


if __name__ == "__main__":
    main()
