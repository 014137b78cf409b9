#!/usr/bin/env python3
"""Does the best pruning pattern depend on the context? Each unit's cost, per test set.

For every gated unit (encoder and decoder, one at a time) the unit is closed for
every utterance of a test set while all others stay open, and the training loss
(``ctc_weight * CTC + (1 - ctc_weight) * attention``, teacher-forced, summed over
tokens as in training) is compared with the all-open loss of the same
utterances. The result is a units x test-sets matrix of loss increases: what
closing a unit costs a language/task. Context-aware gates can only beat one
fixed pattern where these costs rank the units differently between test sets.
Reported:

- per pair of test sets, the Spearman correlation of their unit costs;
- per sparsity (``--fraction`` of the units, k units), each test set's k
  cheapest units and their overlap (Jaccard) with the k cheapest on average
  (one fixed pattern), and the summed cost of that fixed pattern vs each set
  closing its own k cheapest: what context-aware gates could gain if unit
  costs added up (they do not quite: closing several interacts, so this ranks
  units rather than predicting a pruned model's loss).

The weights may come from another checkpoint of the same architecture (e.g. the
full fine-tune, whose units were never trained to be closed): ``--weights``.

Usage:
    python scripts/bench/unit_importance.py --model_dir exp/gated --weights exp/full/valid.acc.ave.pth \\
        --dump dump/raw --test_sets test_eng_asr test_deu_st_eng --num_utts 20 --out exp/unit_costs.json
"""

import argparse
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from espnet2.tasks.s2t import S2TTask

from espnet_ext.context.audio import DataDirReader
from espnet_ext.kaldi import read_table
from espnet_ext.gating import GatedModule, pin_gates
from espnet_ext.s2t.inference import Speech2TextGated

PROG = "unit_importance"


def load(model_dir: Path, model_file: str, weights: Path = None) -> Speech2TextGated:
    s2t = Speech2TextGated(
        s2t_train_config=str(model_dir / "config.yaml"),
        s2t_model_file=str(model_dir / model_file),
        device="cpu", beam_size=1, ctc_weight=0.0,
    )
    if weights is not None:
        state = torch.load(weights, map_location="cpu")
        missing, unexpected = s2t.s2t_model.load_state_dict(state, strict=False)
        if unexpected or any("gate_" not in k for k in missing):
            raise ValueError(f"{weights}: not the architecture of {model_dir} "
                             f"(unexpected {unexpected[:3]}, missing {missing[:3]})")
    s2t.s2t_model.eval()
    return s2t


def batch(s2t: Speech2TextGated, preprocess, reader: DataDirReader, texts: dict, utts: list) -> dict:
    """Padded inputs (speech, text, text_prev, text_ctc) of ``utts``, made by the training
    preprocessor (tokenizer, special tokens, OWSM's fixed-length speech)."""
    rows = [preprocess(u, {"speech": reader.read(u), **{n: t[u] for n, t in texts.items()}})
            for u in utts]
    out = {}
    for name in ("speech", "text", "text_prev", "text_ctc"):
        seqs = [torch.as_tensor(r[name]) for r in rows]
        out[f"{name}_lengths"] = torch.tensor([len(x) for x in seqs])
        pad = 0.0 if name == "speech" else -1
        out[name] = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad)
    out["speech"] = out["speech"].float()
    return out


@torch.no_grad()
def losses(model, inputs: dict, pins: dict) -> torch.Tensor:
    """Per-utterance training loss with the gates ``pins`` {side: (1, layers, units)}."""
    out = []
    for i in range(inputs["speech"].size(0)):
        row = {k: v[i: i + 1] for k, v in inputs.items()}
        for k in ("speech", "text", "text_prev", "text_ctc"):
            row[k] = row[k][:, : int(row[f"{k}_lengths"])]
        with pin_gates(model.encoder, pins["encoder"]), pin_gates(model.decoder, pins["decoder"]):
            _, stats, _ = model(**row)
        w = model.ctc_weight
        out.append(w * float(stats["loss_ctc"]) + (1 - w) * float(stats["loss_att"]))
    return torch.tensor(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", type=Path, required=True, help="a gated exp/<model> (architecture)")
    parser.add_argument("--model_file", default="valid.acc.ave.pth")
    parser.add_argument("--weights", type=Path, default=None, help="other weights of that architecture")
    parser.add_argument("--dump", type=Path, required=True)
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--num_utts", type=int, default=20, help="per test set")
    parser.add_argument("--fraction", type=float, nargs="+", default=[0.3, 0.45],
                        help="sparsities of the compared patterns")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(message)s")
    torch.set_num_threads(1)

    s2t = load(args.model_dir, args.model_file, args.weights)
    preprocess = S2TTask.build_preprocess_fn(s2t.s2t_train_args, train=False)
    model = s2t.s2t_model
    sides = {"encoder": model.encoder, "decoder": model.decoder}
    if not all(isinstance(m, GatedModule) for m in sides.values()):
        raise ValueError(f"{args.model_dir}: needs a gated encoder and decoder")
    units = [(side, layer, name) for side, m in sides.items()
             for layer in range(m.num_layers) for name in m.unit_names]
    open_pins = {s: torch.ones(1, m.num_layers, len(m.unit_names)) for s, m in sides.items()}

    costs = {}
    for subset in args.test_sets:
        data = args.dump / subset
        reader = DataDirReader(data, 16000)
        texts = {n: read_table(data / n.replace("_", ".")) for n in ("text", "text_prev", "text_ctc")}
        inputs = batch(s2t, preprocess, reader, texts, reader.utt_ids[: args.num_utts])
        base = losses(model, inputs, open_pins)
        row = []
        for side, layer, name in units:
            pins = {s: p.clone() for s, p in open_pins.items()}
            pins[side][0, layer, sides[side].unit_names.index(name)] = 0.0
            row.append(float((losses(model, inputs, pins) - base).mean()))
        costs[subset] = row
        logging.info(f"{subset}: all-open loss {float(base.mean()):.2f}, unit costs "
                     f"{min(row):+.2f} .. {max(row):+.2f}")

    names = [f"{s}.{layer}.{n}" for s, layer, n in units]
    c = np.array([costs[s] for s in args.test_sets])  # (sets, units)
    rho = {f"{a}~{b}": float(spearmanr(c[i], c[j])[0])
           for (i, a), (j, b) in itertools.combinations(enumerate(args.test_sets), 2)}
    report = {
        "weights": str(args.weights or args.model_dir / args.model_file),
        "num_utts": args.num_utts, "units": names,
        "costs": {s: [round(v, 3) for v in costs[s]] for s in args.test_sets},
        "spearman": rho,
        "spearman_mean": float(np.mean(list(rho.values()))) if rho else None,
        "patterns": {},
    }
    logging.info(f"Spearman between sets: mean {report['spearman_mean']:.2f}, "
                 f"min {min(rho.values()):.2f}")
    for fraction in args.fraction:
        k = max(1, round(fraction * len(units)))
        pooled = set(np.argsort(c.mean(0))[:k])
        per_set = {s: set(np.argsort(c[i])[:k]) for i, s in enumerate(args.test_sets)}
        fixed = float(sum(c[i, sorted(pooled)].sum() for i in range(len(c))))
        own = float(sum(c[i, sorted(per_set[s])].sum() for i, s in enumerate(args.test_sets)))
        jaccard = {s: len(v & pooled) / len(v | pooled) for s, v in per_set.items()}
        report["patterns"][str(fraction)] = {
            "k": k, "fixed": [names[u] for u in sorted(pooled)],
            "cheapest": {s: [names[u] for u in sorted(v)] for s, v in per_set.items()},
            "jaccard_vs_fixed": jaccard,
            "cost_fixed_pattern": fixed, "cost_per_set_patterns": own,
        }
        logging.info(f"closing {k} units ({fraction:.0%}): summed loss increase of one fixed "
                     f"pattern {fixed:.2f}, of per-set patterns {own:.2f}; Jaccard per set vs "
                     f"fixed: " + ", ".join(f"{v:.2f}" for v in jaccard.values()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    logging.info(f"wrote {args.out}")


if __name__ == "__main__":
    main()
