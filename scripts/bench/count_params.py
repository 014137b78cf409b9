#!/usr/bin/env python3
"""Parameter counts of the stock OWSM v3.1 ebf model and its gated twin.

Builds both models with random weights on the CPU through ESPnet's own
``S2TTask.build_model`` (arguments from parsing the training YAMLs with
``S2TTask.get_parser()``), with a synthetic 50,000-entry token list that holds
the OWSM special tokens, and ``utterance_mvn`` in place of ``global_mvn`` (no
parameters either way; global_mvn needs a stats file). Prints total, encoder,
decoder, CTC and gate-predictor parameters, and the gate predictors' share.

Each OWSM-size model needs about 4 GB of RAM and ~10 s to build; they are
built one after the other.

Usage:
    python scripts/bench/count_params.py
    python scripts/bench/count_params.py --stock conf/train_s2t_ebf_full.yaml \\
        --gated conf/train_s2t_ebf_gated.yaml --vocab_size 50000
    python scripts/bench/count_params.py --num_blocks 1   # quick check, 1+1 layers
"""

import argparse
import gc
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from espnet_ext.s2t.owsm import build, owsm_token_list, parse_config  # noqa: F401 (used by tests)

ROOT = Path(__file__).resolve().parents[2]


def _n(module: Optional[torch.nn.Module]) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count(model: torch.nn.Module) -> Dict[str, int]:
    """Parameter counts of an S2T model, the gate predictors apart.

    Returns:
        dict: total, encoder, decoder, ctc, other (frontend, ...),
        gate_enc, gate_dec (0 for stock modules), gates, gate_tables (the
        lang/task embedding tables inside them), gate_rest, stock_part
        (= total - gates).
    """
    gate_enc = _n(getattr(model.encoder, "gate_predictor", None))
    gate_dec = _n(getattr(model.decoder, "gate_predictor", None))
    tables = sum(
        m.num_embeddings * m.embedding_dim
        for side in (model.encoder, model.decoder)
        if hasattr(side, "gate_predictor")
        for m in side.gate_predictor.modules()
        if isinstance(m, torch.nn.Embedding)
    )
    total = _n(model)
    out = {
        "total": total,
        "encoder": _n(model.encoder) - gate_enc,
        "decoder": _n(model.decoder) - gate_dec,
        "ctc": _n(model.ctc),
        "gate_enc": gate_enc,
        "gate_dec": gate_dec,
        "gates": gate_enc + gate_dec,
        "gate_tables": tables,
        "gate_rest": gate_enc + gate_dec - tables,
        "stock_part": total - gate_enc - gate_dec,
    }
    out["other"] = total - out["encoder"] - out["decoder"] - out["ctc"] - out["gates"]
    return out


def table(stock: Dict[str, int], gated: Dict[str, int]) -> str:
    """Markdown table of the two counts (millions of parameters)."""
    rows = [
        ("total", "total"),
        ("encoder (w/o gate predictor)", "encoder"),
        ("decoder (w/o gate predictor)", "decoder"),
        ("CTC", "ctc"),
        ("other (frontend, normalize, ...)", "other"),
        ("encoder gate predictor", "gate_enc"),
        ("decoder gate predictor", "gate_dec"),
        ("gate predictors", "gates"),
        ("  of which lang/task embedding tables", "gate_tables"),
        ("  of which pooling norms + gate layer G", "gate_rest"),
        ("stock part (total - gate predictors)", "stock_part"),
    ]

    def m(v: int) -> str:
        return f"{v / 1e6:,.3f} M"

    lines = ["| parameters | stock | gated | gated - stock |", "|---|---:|---:|---:|"]
    for label, key in rows:
        lines.append(
            f"| {label} | {m(stock[key])} | {m(gated[key])} | {m(gated[key] - stock[key])} |"
        )
    share = 100.0 * gated["gates"] / gated["total"]
    lines.append(
        f"\nGate predictors: {gated['gates']:,} parameters "
        f"(encoder {gated['gate_enc']:,}, decoder {gated['gate_dec']:,}) = "
        f"{share:.4f}% of the gated model"
    )
    return "\n".join(lines)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stock",
        type=Path,
        default=ROOT / "conf" / "train_s2t_ebf_full.yaml",
        help="Training YAML of the stock model (default: %(default)s).",
    )
    parser.add_argument(
        "--gated",
        type=Path,
        default=ROOT / "conf" / "train_s2t_ebf_gated.yaml",
        help="Training YAML of the gated model (default: %(default)s).",
    )
    parser.add_argument(
        "--vocab_size",
        type=int,
        default=50000,
        help="Entries of the synthetic token list (default: %(default)s, as OWSM v3.1).",
    )
    parser.add_argument(
        "--num_blocks",
        type=int,
        default=None,
        help="Reduce encoder and decoder layers to this many (default: as in the YAML).",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    tokens = owsm_token_list(args.vocab_size)
    counts = {}
    for name, config in (("stock", args.stock), ("gated", args.gated)):
        model = build(parse_config(config, tokens, args.num_blocks))
        print(
            f"{name}: {config} -> {type(model).__name__}, {type(model.encoder).__name__}, "
            f"{type(model.decoder).__name__}",
            file=sys.stderr,
        )
        counts[name] = count(model)
        del model
        gc.collect()
    print(table(counts["stock"], counts["gated"]))


if __name__ == "__main__":
    main()
