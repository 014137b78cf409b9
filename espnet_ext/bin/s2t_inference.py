#!/usr/bin/env python3
"""Decode with a (gated) ESPnet S2T model; ESPnet's s2t_inference plus gates.

Usage:
    python -m espnet_ext.bin.s2t_inference \\
        --s2t_train_config exp/s2t_gated/config.yaml \\
        --s2t_model_file exp/s2t_gated/valid.acc.ave.pth \\
        --data_path_and_name_and_type dump/raw/test_deu_st/wav.scp,speech,sound \\
        --data_path_and_name_and_type dump/raw/test_deu_st/spk_embed.scp,spk_embed,npy \\
        --allow_variable_data_keys true \\
        --lang_sym "<deu>" --task_sym "<st_eng>" --beam_size 5 \\
        --output_dir exp/s2t_gated/decode/test_deu_st

Takes every option of ``python -m espnet2.bin.s2t_inference``. Writes ESPnet's
``<output_dir>/1best_recog/{text,token,token_int,score,text_nospecial}`` and,
per utterance: ``gates/encoder`` and ``gates/decoder`` (one group of 0/1 per
layer, units in the order of ``gates/units``), ``gflops`` (encoder + decoder
compute actually spent, see ``espnet_ext.s2t.meter``) and
``decode_seconds`` (with ``--batch_size N > 1``: the batch's wall-clock / N).

Beam search (``--search``): by default ``espnet_ext.s2t.lean_search`` (all
hypotheses as tensors, keys/values cached: ESPnet's hypotheses, faster);
``--search espnet`` (or a decode the lean search does not support: CTC
prefix scoring, LMs) runs ESPnet's, one utterance at a time. With the lean
search, ``--batch_size N`` decodes N utterances in one pass (one encoder call,
one decoder call per beam-search step for all their hypotheses, each row with
its own gates; ``Speech2TextGated.decode_batch``): the same results as one by
one, faster. (ESPnet's own CLI decodes one at a time.)

Audio is checked first (``espnet_ext.s2t.audio_input``): another sample rate
is resampled to the model's, stereo down-mixed (``--audio_mismatch convert``,
the default, one log line) or refused (``error``); unreadable or empty audio
ends in one line naming the utterance and the file.

ASR (ESPnet's ASR task, ``python -m espnet_ext.asr.inference``, ESPnet's
``asr_inference`` options): the same loop, records and files (``inference(args, "asr")``),
decoded by ``espnet_ext.asr.inference.Speech2TextGated``; no ``<lang>/<task>``.

Resumable: every finished utterance is appended to
``<output_dir>/logdir/decoded.jsonl``; a killed run, rerun with the same
command, skips the utterances found there. The final files are written at the
end, each atomically, in input order: identical to an uninterrupted run's
(``decode_seconds`` aside).
"""

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict

import humanfriendly
import torch
from tqdm import tqdm

import espnet_ext
from espnet_ext import startup

startup.command(__name__)  # before ESPnet is imported: ~11 s less start-up
espnet_ext.register()

from espnet2.bin.s2t_inference import get_parser as _stock_parser  # noqa: E402
from espnet2.tasks.s2t import S2TTask  # noqa: E402
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed  # noqa: E402
from espnet2.utils.types import str2bool  # noqa: E402
from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError  # noqa: E402

from espnet_ext.context.audio import AudioError  # noqa: E402
from espnet_ext.kaldi import write_text  # noqa: E402
from espnet_ext.results import count_closed  # noqa: E402
from espnet_ext.s2t.audio_input import MISMATCH, check_sound_inputs  # noqa: E402
from espnet_ext.s2t.inference import SEARCHES, Speech2TextGated, format_gates  # noqa: E402

# Speech2Text arguments taken verbatim from the stock CLI options.
S2T_KEYS = (
    "s2t_train_config s2t_model_file lm_train_config lm_file ngram_file token_type bpemodel "
    "maxlenratio minlenratio dtype beam_size ctc_weight lm_weight ngram_weight penalty nbest "
    "normalize_length quantize_s2t_model quantize_lm quantize_modules quantize_dtype lang_sym "
    "task_sym predict_time partial_ar threshold_probability max_seq_len max_mask_parallel"
).split()
# ASR: those of the stock asr_inference (what its inference() hands Speech2Text).
ASR_KEYS = (
    "asr_train_config asr_model_file transducer_conf lm_train_config lm_file ngram_file token_type "
    "bpemodel maxlenratio minlenratio dtype beam_size ctc_weight lm_weight ngram_weight penalty nbest "
    "normalize_length streaming enh_s2t_task multi_asr quantize_asr_model quantize_lm quantize_modules "
    "quantize_dtype hugging_face_decoder hugging_face_decoder_conf time_sync prompt_token_file "
    "lang_prompt_token nlp_prompt_token partial_ar threshold_probability max_seq_len max_mask_parallel"
).split()
TASKS = ("s2t", "asr")


def get_parser(task: str = "s2t"):
    """The stock ``s2t_inference`` (``asr_inference``) options plus ours."""
    if task == "asr":
        from espnet2.bin.asr_inference import get_parser as stock
    else:
        stock = _stock_parser
    parser = stock()
    parser.description = f"{task.upper()} decoding with gate decisions and GFLOPs per utterance"
    parser.add_argument(
        "--search", choices=SEARCHES, default="lean",
        help="lean: espnet_ext's beam search (tensor ops over all hypotheses of a batch, keys/values "
        "cached; ESPnet's hypotheses) where it applies (no CTC prefix scorer, no LM), else ESPnet's; "
        "espnet: ESPnet's BatchBeamSearch",
    )
    parser.add_argument(
        "--src_kv_cache", type=str2bool, default=True,
        help="--search espnet, gated decoder: source-attention K/V once per utterance instead of "
        "at every step (false: compute as stock ESPnet does, for like-for-like comparisons)",
    )
    parser.add_argument(
        "--audio_mismatch", choices=MISMATCH, default="convert",
        help="Audio at another sample rate than the model's, multi-channel audio, or audio ESPnet "
        "cannot read: convert (resample / down-mix / decode it once into <output_dir>/logdir/audio, "
        "one log line) or error (refuse it: one line naming utterance and file)",
    )
    return parser


def model_rate(train_args) -> int:
    """The sample rate the model was trained at (frontend's fs, else the preprocessor's)."""
    fs = (getattr(train_args, "frontend_conf", None) or {}).get("fs")
    fs = fs or (getattr(train_args, "preprocessor_conf", None) or {}).get("fs") or 16000
    return int(humanfriendly.parse_size(fs)) if isinstance(fs, str) else int(fs)


def _items(keys, batch: Dict[str, torch.Tensor]):
    """Splits a collated batch back into single utterances (padding removed)."""
    for i, key in enumerate(keys):
        item = {}
        for name, value in batch.items():
            if name.endswith("_lengths"):
                continue
            lengths = batch.get(f"{name}_lengths")
            item[name] = value[i][: lengths[i]] if lengths is not None else value[i]
        yield key, item


class Progress:
    """Per-utterance results of a decode, appended as JSON lines as they come.

    A killed decode loses at most the batch in flight: a rerun reads the
    finished utterances back (a torn last line is dropped) and skips them.
    """

    def __init__(self, path: Path):
        self.path = path
        self.done: Dict[str, dict] = {}
        if path.exists():
            good = 0
            with path.open("rb") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        break
                    if not line.endswith(b"\n"):
                        break
                    self.done[record["key"]] = record
                    good += len(line)
            os.truncate(path, good)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a")

    def add(self, records) -> None:
        for record in records:
            self._file.write(json.dumps(record) + "\n")
            self.done[record["key"]] = record
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _record(key: str, results, gates: Dict[str, torch.Tensor], gflops: float, seconds: float, nbest: int) -> dict:
    if isinstance(results, tuple):
        results = results[0]
    return {
        "key": key,
        "nbest": [
            {
                "token": " ".join(token),
                "token_int": " ".join(map(str, token_int)),
                "score": str(float(hyp.score)),
                "text": text if text is not None else "",
                "text_nospecial": text_nospecial or "",
            }
            for text, token, token_int, text_nospecial, hyp in results[:nbest]
        ],
        "gates": {name: format_gates(g) for name, g in gates.items()},
        "gflops": f"{gflops:.4f}",
        "decode_seconds": f"{seconds:.4f}",
    }


def write_outputs(output_dir: Path, keys, records: Dict[str, dict], units: Dict[str, str]) -> None:
    """ESPnet's ``<n>best_recog/`` files plus gates/gflops/decode_seconds, each written atomically."""
    files: Dict[str, list] = {}

    def put(name, key, value):
        files.setdefault(name, []).append(f"{key} {value}\n")

    for name, value in units.items():
        put("gates/units", name, value)
    for key in keys:
        record = records[key]
        for n, hyp in enumerate(record["nbest"], start=1):
            for field in ("token", "token_int", "score", "text", "text_nospecial"):
                put(f"{n}best_recog/{field}", key, hyp[field])
        if not record["nbest"]:
            put("1best_recog/text", key, "")
        for name, value in record["gates"].items():
            put(f"gates/{name}", key, value)
        put("gflops", key, record["gflops"])
        put("decode_seconds", key, record["decode_seconds"])
    for name, lines in files.items():
        write_text(output_dir / name, "".join(lines))


def summarize(records) -> Dict[str, float]:
    """Mean GFLOPs and the fraction of gated units closed (per side and in all) of decoded records."""
    records = list(records)
    out = {"utts": len(records)}
    if records:
        out["gflops"] = sum(float(r["gflops"]) for r in records) / len(records)
    sides = sorted({side for r in records for side in r["gates"]}, key=lambda side: side != "encoder")
    for side in sides:  # encoder first
        closed, total = count_closed(r["gates"][side] for r in records if side in r["gates"])
        out[f"closed_{side}"] = closed / total
    if sides:
        closed, total = count_closed(bits for r in records for bits in r["gates"].values())
        out["closed"] = closed / total
    return out


def describe(summary: Dict[str, float]) -> str:
    """'12.3% of gated units closed (encoder 20.0%, decoder 0.0%), 0.123 GFLOPs/utt'."""
    text = f"{summary.get('gflops', 0.0):.3f} GFLOPs/utt"
    if "closed" in summary:
        sides = ", ".join(f"{k[len('closed_'):]} {100 * v:.1f}%" for k, v in summary.items()
                          if k.startswith("closed_"))
        text = f"{100 * summary['closed']:.1f}% of gated units closed ({sides}), {text}"
    return text


def _decode(s2t: Speech2TextGated, batch, nbest: int):
    """Records of a list of (key, item); in one pass with the lean search, else one by one."""
    if s2t.lean is not None:
        start = time.perf_counter()
        try:
            items = [item for _, item in batch]
            pick = lambda name: [it.get(name) for it in items]  # noqa: E731
            decoded = s2t.decode_batch(
                pick("speech"), spk_embed=pick("spk_embed"), event_embed=pick("event_embed"),
                text_prev=pick("text_prev"),
            )
        except TooShortUttError:
            decoded = None  # find the culprit one by one
        if decoded is not None:
            seconds = (time.perf_counter() - start) / len(batch)  # batch wall-clock, shared
            return [
                _record(key, d.results, d.gates, d.gflops["total"], seconds, nbest)
                for (key, _), d in zip(batch, decoded)
            ]
    records = []
    for key, item in batch:
        start = time.perf_counter()
        try:
            results = s2t(**item)
            gates = s2t.gates
        except TooShortUttError as e:
            logging.warning(f"{key}: {e}; writing an empty hypothesis")
            results, gates = [], {}
        seconds = time.perf_counter() - start
        records.append(_record(key, results, gates, s2t.meter.gflops["total"], seconds, nbest))
    return records


def build(args, device: str, task: str = "s2t"):
    """(Speech2TextGated, ESPnet task class, train args, model) of ``args`` (S2T or ASR)."""
    if task == "asr":  # imported here: S2T decoding does not pay for ESPnet's ASR modules
        from espnet2.tasks.asr import ASRTask

        from espnet_ext.asr.inference import Speech2TextGated as ASRSpeech2TextGated

        s2t = ASRSpeech2TextGated(device=device, search=args.search, src_kv_cache=args.src_kv_cache,
                                  **{k: getattr(args, k) for k in ASR_KEYS})
        return s2t, ASRTask, s2t.asr_train_args, s2t.asr_model
    kwargs = {k: getattr(args, k) for k in S2T_KEYS}
    # '<' and '>' are awkward on command lines: accept deu as <deu>
    for k in ("lang_sym", "task_sym"):
        kwargs[k] = f"<{kwargs[k].lstrip('<').rstrip('>')}>"
    s2t = Speech2TextGated(device=device, search=args.search, src_kv_cache=args.src_kv_cache, **kwargs)
    return s2t, S2TTask, s2t.s2t_train_args, s2t.s2t_model


def inference(args, task: str = "s2t") -> Dict[str, float]:
    """Decodes ``args``' inputs into ``args.output_dir``; returns ``summarize`` of them.

    ``task``: "s2t" (``args`` of ``get_parser()``) or "asr" (of ``get_parser("asr")``).
    """
    if args.ngpu > 1:
        raise ValueError("only single-GPU decoding is supported (--ngpu 0 or 1)")
    if args.word_lm_train_config is not None:
        raise ValueError("word LMs are not supported")
    device = "cuda" if args.ngpu >= 1 else "cpu"
    set_all_random_seed(args.seed)
    s2t, espnet_task, train_args, model = build(args, device, task)
    output_dir = Path(args.output_dir)
    inputs = check_sound_inputs(args.data_path_and_name_and_type, model_rate(train_args),
                                args.audio_mismatch, output_dir / "logdir" / "audio")
    loader = espnet_task.build_streaming_iterator(
        inputs,
        dtype=args.dtype,
        batch_size=args.batch_size,
        key_file=args.key_file,
        num_workers=args.num_workers,
        preprocess_fn=espnet_task.build_preprocess_fn(train_args, False),
        collate_fn=espnet_task.build_collate_fn(train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys,
        inference=True,
    )
    units = {
        name: " ".join(m.unit_names)
        for name, m in (("encoder", model.encoder), ("decoder", model.decoder))
        if hasattr(m, "unit_names")
    }
    progress = Progress(output_dir / "logdir" / "decoded.jsonl")
    if progress.done:
        logging.warning(f"resuming: {len(progress.done)} utterances already decoded in {progress.path}")
    keys = []
    try:
        with tqdm(desc="decode", unit="utt") as bar:
            for batch_keys, batch in loader:
                items = list(_items(batch_keys, batch))
                keys += [key for key, _ in items]
                todo = [(key, item) for key, item in items if key not in progress.done]
                if todo:
                    progress.add(_decode(s2t, todo, args.nbest))
                bar.update(len(items))
    finally:
        progress.close()
    if len(progress.done) > len(keys):
        logging.warning(f"{progress.path} has utterances that are not in the input: ignored")
    write_outputs(output_dir, keys, progress.done, units)
    summary = summarize(progress.done[k] for k in dict.fromkeys(keys))
    logging.info(f"decoded {summary['utts']} utterances: {describe(summary)}")
    return summary


def main(cmd=None, task: str = "s2t"):
    parser = get_parser(task)
    args = parser.parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    try:
        return inference(args, task)
    except AudioError as e:
        print(f"{task}_inference: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
