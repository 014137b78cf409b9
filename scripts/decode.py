#!/usr/bin/env python3
"""Stage 7: decodes several test subsets of one model in one process.

For every ``<subset>`` (``test_<lang>_<task>``) not decoded yet (no
``<model_dir>/decode_<subset>/.done``) this runs exactly

    python -m espnet_ext.bin.s2t_inference --config conf/decode_s2t.yaml \\
        --s2t_train_config <model_dir>/config.yaml --s2t_model_file <model_dir>/<model_file> \\
        --data_path_and_name_and_type <dump>/<subset>/wav.scp,speech,sound \\
        [--data_path_and_name_and_type <dump>/<subset>/<name>.scp,<name>,npy \\
         --allow_variable_data_keys true] \\
        --lang_sym <lang> --task_sym <task> --output_dir <model_dir>/decode_<subset> ...

but calls its ``main`` in-process: importing ESPnet costs ~10 s per process, more
than decoding a subset of the small presets. Each command is printed first.

Options after ``--`` go to ``s2t_inference``, e.g. ``--batch_size 8``: 8 utterances
decoded in one pass (batched beam search, same results as one by one). A subset
killed mid-way resumes where it stopped (``decode_<subset>/logdir/decoded.jsonl``).

Usage:
    python scripts/decode.py --model-dir exp/gated_spk --dump dump/raw --npy spk_embed \\
        test_deu_st_eng test_eng_asr -- --config conf/decode_s2t.yaml --ngpu 0 --batch_size 8
"""

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import espnet_ext

espnet_ext.register()

from espnet_ext.bin import s2t_inference  # noqa: E402

PROG = "decode"


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="exp/<model>.")
    parser.add_argument("--model-file", default="valid.acc.ave.pth", help="In --model-dir.")
    parser.add_argument("--dump", required=True, type=Path, help="dump/raw.")
    parser.add_argument("--npy", action="append", default=[],
                        help="Extra npy input (spk_embed, event_embed); repeatable.")
    parser.add_argument("subsets", nargs="+",
                        help="Subsets, then -- and further s2t_inference options.")
    argv = sys.argv[1:]
    i = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:i]), argv[i + 1:]
    subsets = args.subsets
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    for subset in subsets:
        out = args.model_dir / f"decode_{subset}"
        if (out / ".done").exists():
            continue
        _, lang, task = subset.split("_", 2)
        data = args.dump / subset
        cmd = extra + [
            "--s2t_train_config", str(args.model_dir / "config.yaml"),
            "--s2t_model_file", str(args.model_dir / args.model_file),
            "--data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
        ]
        for name in args.npy:
            cmd += ["--data_path_and_name_and_type", f"{data}/{name}.scp,{name},npy"]
        if args.npy:
            cmd += ["--allow_variable_data_keys", "true"]
        cmd += ["--lang_sym", lang, "--task_sym", task, "--output_dir", str(out)]
        n = sum(1 for _ in open(data / "wav.scp"))
        print("python -m espnet_ext.bin.s2t_inference " + shlex.join(cmd), flush=True)
        start = time.perf_counter()
        summary = s2t_inference.main(cmd)
        (out / ".done").touch()
        print(f"decoded {args.model_dir.name} {subset}: {n} utts in "
              f"{time.perf_counter() - start:.1f} s, {s2t_inference.describe(summary)}", flush=True)


if __name__ == "__main__":
    main()
