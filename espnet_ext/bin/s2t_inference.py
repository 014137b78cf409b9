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
compute actually spent, see ``espnet_ext.s2t.inference.DecodeMeter``) and
``decode_seconds``. ``--batch_size N`` loads N utterances at a time and
decodes them one by one, as ESPnet does.
"""

import logging
import sys
import time
from typing import Dict

import torch
from tqdm import tqdm

import espnet_ext

espnet_ext.register()

from espnet2.bin.s2t_inference import get_parser as _stock_parser  # noqa: E402
from espnet2.fileio.datadir_writer import DatadirWriter  # noqa: E402
from espnet2.tasks.s2t import S2TTask  # noqa: E402
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed  # noqa: E402
from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError  # noqa: E402

from espnet_ext.s2t.inference import Speech2TextGated, format_gates  # noqa: E402

# Speech2Text arguments taken verbatim from the stock CLI options.
S2T_KEYS = (
    "s2t_train_config s2t_model_file lm_train_config lm_file ngram_file token_type bpemodel "
    "maxlenratio minlenratio dtype beam_size ctc_weight lm_weight ngram_weight penalty nbest "
    "normalize_length quantize_s2t_model quantize_lm quantize_modules quantize_dtype lang_sym "
    "task_sym predict_time partial_ar threshold_probability max_seq_len max_mask_parallel"
).split()


def get_parser():
    parser = _stock_parser()
    parser.description = "S2T decoding with gate decisions and GFLOPs per utterance"
    return parser


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


def inference(args) -> None:
    if args.ngpu > 1:
        raise ValueError("only single-GPU decoding is supported (--ngpu 0 or 1)")
    if args.word_lm_train_config is not None:
        raise ValueError("word LMs are not supported")
    device = "cuda" if args.ngpu >= 1 else "cpu"
    set_all_random_seed(args.seed)
    kwargs = {k: getattr(args, k) for k in S2T_KEYS}
    # '<' and '>' are awkward on command lines: accept deu as <deu>
    for k in ("lang_sym", "task_sym"):
        kwargs[k] = f"<{kwargs[k].lstrip('<').rstrip('>')}>"
    s2t = Speech2TextGated(device=device, **kwargs)
    loader = S2TTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype=args.dtype,
        batch_size=args.batch_size,
        key_file=args.key_file,
        num_workers=args.num_workers,
        preprocess_fn=S2TTask.build_preprocess_fn(s2t.s2t_train_args, False),
        collate_fn=S2TTask.build_collate_fn(s2t.s2t_train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys,
        inference=True,
    )
    model = s2t.s2t_model
    with DatadirWriter(args.output_dir) as writer, tqdm(desc="decode", unit="utt") as bar:
        for name, m in (("encoder", model.encoder), ("decoder", model.decoder)):
            if hasattr(m, "unit_names"):
                writer["gates"]["units"][name] = " ".join(m.unit_names)
        for keys, batch in loader:
            for key, item in _items(keys, batch):
                start = time.perf_counter()
                try:
                    results = s2t(**item)
                except TooShortUttError as e:
                    logging.warning(f"{key}: {e}; writing an empty hypothesis")
                    results = []
                seconds = time.perf_counter() - start
                if isinstance(results, tuple):
                    results = results[0]
                for n, (text, token, token_int, text_nospecial, hyp) in enumerate(
                    results[: args.nbest], start=1
                ):
                    out = writer[f"{n}best_recog"]
                    out["token"][key] = " ".join(token)
                    out["token_int"][key] = " ".join(map(str, token_int))
                    out["score"][key] = str(float(hyp.score))
                    out["text"][key] = text if text is not None else ""
                    out["text_nospecial"][key] = text_nospecial or ""
                if not results:
                    writer["1best_recog"]["text"][key] = ""
                for name, gates in s2t.gates.items():
                    writer["gates"][name][key] = format_gates(gates)
                writer["gflops"][key] = f"{s2t.meter.gflops['total']:.4f}"
                writer["decode_seconds"][key] = f"{seconds:.4f}"
                bar.update(1)


def main(cmd=None):
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    inference(args)


if __name__ == "__main__":
    main(sys.argv[1:])
