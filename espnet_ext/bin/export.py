#!/usr/bin/env python3
"""Export a gated model for one fixed context as a plain, smaller ESPnet model.

Usage:
    python -m espnet_ext.bin.export \\
        --s2t_train_config exp/s2t_gated/config.yaml \\
        --s2t_model_file exp/s2t_gated/valid.acc.ave.pth \\
        --lang_sym deu --task_sym st_eng \\
        --data_dir dump/raw/dev_deu_st_eng --num_utts 100 \\
        --out_dir exp/s2t_gated/export_deu_st_eng

The gate predictors run on the given utterances of that context (with their
spk/event embeddings if the gates use them); units closed for all of them are
removed. Writes ``<out_dir>/config.yaml``, ``model.pth`` and ``report.json``
(parameters and file size before/after, closed and varying units, and how many
of the checked utterances decode identically with stock ``Speech2Text``).
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import espnet_ext
from espnet_ext import startup

startup.command(__name__)  # before ESPnet is imported: ~11 s less start-up
espnet_ext.register()

from espnet_ext.s2t.export import export  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--s2t_train_config", type=Path, required=True, help="Gated model's config.yaml.")
    p.add_argument("--s2t_model_file", type=Path, required=True, help="Gated model's .pth.")
    p.add_argument("--lang_sym", required=True, help="Language token, e.g. deu or <deu>.")
    p.add_argument("--task_sym", required=True, help="Task token, e.g. asr or <st_eng>.")
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", type=Path, required=True,
                   help="Utterances of this context (wav.scp, optional spk_embed.scp/event_embed.scp).")
    p.add_argument("--num_utts", type=int, default=None, help="Use the first N utterances (default: all).")
    p.add_argument("--verify_utts", type=int, default=3, help="Utterances decoded by both models to check equality.")
    p.add_argument("--beam_size", type=int, default=5, help="Beam size of the equality check.")
    p.add_argument("--out_dir", type=Path, required=True, help="Output directory.")
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.WARNING)
    sym = lambda s: f"<{s.lstrip('<').rstrip('>')}>"  # noqa: E731
    report = export(args.s2t_train_config, args.s2t_model_file, sym(args.lang_sym),
                    sym(args.task_sym), args.data_dir, args.out_dir, args.num_utts,
                    args.verify_utts, args.beam_size)
    (args.out_dir / "report.json").write_text(json.dumps(report, indent=2))
    p, f, v = report["params_m"], report["file_mb"], report["verified"]
    print(f"{report['context']}: {report['utterances']} utterances; closed units {report['closed_units']} "
          f"of {report['total_units']} (varying: {report['varying_units']})")
    print(f"params {p['gated']:.3f} M -> {p['static']:.3f} M; file {f['gated']:.2f} MB -> {f['static']:.2f} MB")
    print(f"identical outputs: {v['identical']}/{v['utterances']} checked "
          f"({v['matching_pattern']} utterances have exactly the exported gates)")


if __name__ == "__main__":
    main(sys.argv[1:])
