#!/usr/bin/env python3
"""Stage 8: scores the decoded test subsets of one model.

ST subsets (``test_<src>_st_<tgt>``): corpus BLEU and chrF with sacrebleu (their
signatures are printed and saved). ASR subsets (``test_<lang>_asr``): WER and CER
(percent) with jiwer. Hypotheses are ``<exp>/decode_<subset>/1best_recog/text``,
references the subset's ``text``; both have every special token (``<...>``)
removed, then the same normalisation: lower case, punctuation removed (Unicode
categories P*; apostrophes and hyphens become spaces, as in the corpus), spaces
collapsed. The mini Europarl references are already normalised this way, so it
only affects the hypotheses. An utterance without a hypothesis counts as empty.

``--wer_norm`` picks the text WER and CER are computed on (``espnet_ext.wer_norm``): ``ours``
(the default, above), ``raw`` (ESPnet's s2t.sh: the text as is, cased and punctuated, split on
whitespace; special tokens removed), ``whisper_basic`` / ``whisper_english`` (openai-whisper's
``BasicTextNormalizer`` / ``EnglishTextNormalizer``, as the Whisper and OWSM papers score;
``whisper_english`` scores the sets of other languages than English with ``whisper_basic``).
Each ASR set records the convention it was scored with (``wer_norm``), and RESULTS.md prints
it beside every WER. BLEU/chrF do not depend on it (``--st_normalise``).

``--task asr`` (ESPnet's ASR task, e.g. LibriSpeech): every set is scored as ASR whatever its
name (``test_clean``), its language ``--lang``; ``scores.json`` then also records ``"task": "asr"``.

A model that ignores its input (the same text for every utterance), loops, or writes text
unrelated to the audio can still get a BLEU or WER, which then means nothing. So each subset
also gets, on the normalised text (``espnet_ext.results.listen_check``): ``distinct_hyp`` /
``distinct_ref``, the fractions of distinct hypotheses and references among its utterances,
and ``looping``, the fraction of hypotheses with more than LOOP_RATIO (2) x the reference's
words that repeat themselves (at most half their words distinct). A WARNING (also saved in
``warnings``) flags distinct_hyp < MIN_DISTINCT (0.5) x distinct_ref, looping > MAX_LOOPING
(0.1), or else more than half the hypotheses empty, or WER >= 100 % or BLEU < 1: hypotheses
that do not match the audio.

Writes ``<exp>/scores.json``:
``{"subsets": {subset: {"lang", "task", "num_utts", "bleu", "chrf" | "wer", "cer", "wer_norm",
"distinct_hyp", "distinct_ref", "looping", "warnings"}}, "signatures": {...},
"normalisation": "...", "wer_norm": <--wer_norm>, "wer_norms": {name: description}}``, and, for
the paired bootstrap of stage 9 (``espnet_ext.results``), ``<exp>/decode_<subset>/per_utt.json``:
``{"subset", "task"[, "wer_norm"], "utts": {key: {"hyp", "ref"[, "errors", "words"]}}}`` with
the text as scored, and for ASR each utterance's word errors (jiwer) and reference words.
The listening checks always run on the ``ours`` text, whatever ``--wer_norm``.

Usage:
    python scripts/score.py --exp exp/gated --dump dump/raw test_deu_st_eng test_eng_asr
    python scripts/score.py --wer_norm whisper_english --exp exp/gated --dump dump/raw test_eng_asr
    python scripts/score.py --task asr --wer_norm raw --exp exp/gated --dump dump/raw test_clean test_other
"""

import argparse
import importlib.metadata
import json
import logging
import math
from pathlib import Path
from typing import List, Optional, Tuple

from espnet_ext import wer_norm as wn
from espnet_ext.kaldi import read_table
from espnet_ext.results import listen_check, mismatch_warnings
from espnet_ext.wer_norm import SPECIAL, lc_nopunct as normalise, strip_special  # noqa: F401

PROG = "score"
NORMALISATION = wn.description("ours")
# --st_normalise none: BLEU/chrF on cased, punctuated text (sacrebleu's own 13a tokenisation),
# as usually reported for Europarl-ST; ASR follows --wer_norm (default ours: NORMALISATION).
ST_NONE = "ST: special tokens <...> removed, whitespace collapsed (cased, punctuated); ASR: "


def word_errors(words) -> List[int]:
    """Per utterance: substitutions + deletions + insertions of a ``jiwer.process_words`` result."""
    span = {"substitute": lambda c: c.ref_end_idx - c.ref_start_idx,
            "delete": lambda c: c.ref_end_idx - c.ref_start_idx,
            "insert": lambda c: c.hyp_end_idx - c.hyp_start_idx,
            "equal": lambda c: 0}
    return [sum(span[c.type](c) for c in chunks) for chunks in words.alignments]


def score_subset(exp: Path, dump: Path, subset: str, st_normalise: str = "lc_nopunct",
                 wer_norm: str = wn.DEFAULT, asr_lang: Optional[str] = None) -> Tuple[dict, dict, dict]:
    """Scores of one subset, the metrics' signatures, and the per-utterance data.

    ``asr_lang``: score ``subset`` (any name) as ASR in this language (``--task asr``); None:
    its task and language from its name, ``test_<lang>_<task>``.
    """
    import jiwer
    import sacrebleu

    lang, task = (asr_lang, "asr") if asr_lang else subset.split("_", 2)[1:]
    refs = read_table(dump / subset / "text", allow_empty=True)
    hyp_file = exp / f"decode_{subset}" / "1best_recog" / "text"
    hyps = read_table(hyp_file, allow_empty=True, missing_ok=True)
    missing = sorted(set(refs) - set(hyps))
    if missing:
        logging.warning(f"{subset}: {len(missing)} utterances without hypothesis, "
                        f"scored as empty, e.g. {missing[:3]}")
    keys = sorted(refs)
    if not keys:
        raise ValueError(f"{subset}: no references in {dump / subset / 'text'}")
    ref = [normalise(refs[k]) for k in keys]
    hyp = [normalise(hyps.get(k, "")) for k in keys]
    out = {"lang": lang, "task": task, "num_utts": len(keys)}
    listen, warnings = listen_check(hyp, ref)  # on normalised text, whatever st_normalise
    signatures = {}
    if task.startswith("st_") and st_normalise == "none":
        ref = [strip_special(refs[k]) for k in keys]
        hyp = [strip_special(hyps.get(k, "")) for k in keys]
    if task.startswith("st_"):
        bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
        out["bleu"] = bleu.corpus_score(hyp, [ref]).score
        out["chrf"] = chrf.corpus_score(hyp, [ref]).score
        signatures = {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}
    elif task == "asr":
        out["wer_norm"] = norm = wn.resolve(wer_norm, lang)
        if norm != wer_norm:
            logging.info(f"{subset}: --wer_norm {wer_norm} is for English; {lang} scored with {norm}")
        if norm != "ours":
            ref = [wn.normaliser(norm)(refs[k]) for k in keys]
            hyp = [wn.normaliser(norm)(hyps.get(k, "")) for k in keys]
        words = jiwer.process_words(ref, hyp)  # one alignment: WER and per-utterance errors
        out["wer"] = 100 * words.wer  # an empty hypothesis: all deletions
        out["cer"] = 100 * jiwer.cer(ref, hyp)
        version = importlib.metadata.version("jiwer")
        signatures = {"wer": f"jiwer {version} wer: words split on whitespace, percent, "
                             f"text --wer_norm {wer_norm}",
                      "cer": f"jiwer {version} cer: characters incl. spaces, percent, "
                             f"text --wer_norm {wer_norm}"}
    else:
        raise ValueError(f"{subset}: unknown task {task}")
    for k, v in out.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{subset}: {k} is {v}")
    utts = {k: {"hyp": h, "ref": r} for k, h, r in zip(keys, hyp, ref)}
    if task == "asr":
        for k, r, e in zip(keys, ref, word_errors(words)):
            utts[k].update(errors=e, words=len(r.split()))
    out.update(listen, warnings=warnings or mismatch_warnings(out, hyp))
    return out, signatures, utts


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp", required=True, type=Path, help="Model dir (exp/<model>).")
    parser.add_argument("--dump", required=True, type=Path, help="dump/raw (references).")
    parser.add_argument("subsets", nargs="+", help="test_<lang>_<task> subset names (--task asr: any).")
    parser.add_argument("--task", choices=["s2t", "asr"], default="s2t",
                        help="s2t: each subset's task from its name; asr: every set scored as ASR.")
    parser.add_argument("--lang", default="eng",
                        help="--task asr: the sets' language (ISO 639-3; --wer_norm whisper_english "
                             "applies to eng only).")
    parser.add_argument("--st_normalise", "--st-normalise",
                        default="lc_nopunct", choices=["lc_nopunct", "none"],
                        help="ST text normalisation before BLEU/chrF: lower case, no punctuation "
                             "(lc_nopunct), or none (cased and punctuated; special tokens removed).")
    parser.add_argument("--wer_norm", "--wer-norm", default=wn.DEFAULT, choices=wn.NAMES,
                        help="ASR text before WER/CER: ours (lower case, no punctuation), raw "
                             "(ESPnet's s2t.sh: text as is, whitespace-split), whisper_basic or "
                             "whisper_english (openai-whisper's BasicTextNormalizer / "
                             "EnglishTextNormalizer; whisper_english scores non-English sets "
                             "with whisper_basic). Recorded with every WER.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    asr = wn.description(args.wer_norm)
    if args.task == "asr":  # no ST set
        norm = asr
    elif args.st_normalise == "lc_nopunct":
        norm = NORMALISATION if args.wer_norm == "ours" else f"ST: {NORMALISATION}; ASR: {asr}"
    else:
        norm = ST_NONE + asr
    result = {"subsets": {}, "signatures": {}, "normalisation": norm, "wer_norm": args.wer_norm,
              "wer_norms": {}}
    if args.task == "asr":  # report.py: set names carry no task
        result["task"] = "asr"
    for subset in args.subsets:
        scores, signatures, utts = score_subset(args.exp, args.dump, subset, args.st_normalise,
                                                args.wer_norm, args.lang if args.task == "asr" else None)
        result["subsets"][subset] = scores
        result["signatures"].update(signatures)
        shown = ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if isinstance(v, float))
        logging.info(f"{args.exp.name} {subset} ({scores['num_utts']} utts): {shown}")
        for w in scores["warnings"]:
            logging.warning(f"{args.exp.name} {subset}: {w}")
        per_utt = args.exp / f"decode_{subset}" / "per_utt.json"
        per_utt.parent.mkdir(parents=True, exist_ok=True)
        if "wer_norm" in scores:
            result["wer_norms"][scores["wer_norm"]] = wn.description(scores["wer_norm"])
            logging.info(f"{args.exp.name} {subset}: WER/CER on text --wer_norm "
                         f"{wn.label(scores['wer_norm'])}")
        head = {"subset": subset, "task": scores["task"]}
        head.update({"wer_norm": scores["wer_norm"]} if "wer_norm" in scores else {})
        per_utt.write_text(json.dumps({**head, "utts": utts}, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    for k, v in sorted(result["signatures"].items()):
        logging.info(f"signature {k}: {v}")
    (args.exp / "scores.json").write_text(json.dumps(result, indent=2) + "\n")
    logging.info(f"wrote {args.exp / 'scores.json'}")


if __name__ == "__main__":
    main()
