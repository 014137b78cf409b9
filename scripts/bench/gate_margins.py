#!/usr/bin/env python3
"""Why the gates do (or do not) follow the context: each gate's logit margin, decomposed.

A gate is open at inference when its margin m = logit(open) - logit(closed) > 0.
With the default predictor (one linear layer G over [C; LN(pool(x_GP))]) the
margin is a sum of three parts: the bias, the context part (G's columns of C,
i.e. language/task/speaker/event) and the audio part (G's columns of the
pooled input). For every utterance of the given test sets this script
computes the three parts of every gate and reports, per side:

- ``margin``: mean |m| over gates and utterances (how far the decisions are
  from flipping);
- ``context_spread``: the standard deviation of the context part across
  utterances, averaged over gates (how much the context moves a gate);
- ``audio_spread``: the same for the audio part;
- ``flippable``: the fraction of gates whose margin changes sign somewhere
  across the utterances (gates that do differ between utterances).

A context that moves the margins by much less than their size cannot change a
decision: the gates are then one pattern for all utterances.

Usage:
    python scripts/bench/gate_margins.py --model_dir exp/gated --dump dump/raw \\
        --test_sets test_eng_asr test_deu_st_eng --num_utts 20 --out exp/gated/margins.json
"""

import argparse
import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from espnet_ext.context.audio import DataDirReader
from espnet_ext.kaldi import read_table
from espnet_ext.gating import GatedModule
from espnet_ext.s2t.inference import Speech2TextGated

PROG = "gate_margins"


def parts(predictor, recorded):
    """(bias, context, audio) margin parts (#batch, L) of one predictor call."""
    net = predictor.net
    if not isinstance(net, torch.nn.Linear):
        raise ValueError("gate_margins decomposes one-layer predictors only (gate_hidden_units: 0)")
    w = net.weight.view(-1, 2, net.in_features)
    w = w[:, 1] - w[:, 0]  # (L, in): margin weights
    b = net.bias.view(-1, 2)
    b = b[:, 1] - b[:, 0]
    x = recorded["x"]
    c = recorded.get("c")
    n_c = 0 if c is None else c.size(-1)
    ctx = torch.zeros(x.size(0), w.size(0)) if c is None else c @ w[:, :n_c].T
    return b.expand(x.size(0), -1), ctx, x @ w[:, n_c:].T


def record(predictor):
    """Hooks that keep the predictor's C and LN(pool(x)) of its last call."""
    recorded = {}
    hooks = [
        predictor.norm.register_forward_hook(lambda m, i, o: recorded.__setitem__("x", o.detach())),
        predictor.context.register_forward_hook(
            lambda m, i, o: recorded.__setitem__("c", None if o is None else o.detach())
        ),
    ]
    return recorded, hooks


def context_syms(text: str):
    """'<deu><st_eng><notimestamps> ...' -> ('<deu>', '<st_eng>')."""
    m = re.match(r"\s*(<[^>]+>)\s*(<[^>]+>)", text)
    if not m:
        raise ValueError(f"text does not start with <lang><task>: {text[:60]}")
    return m.group(1), m.group(2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", type=Path, required=True, help="exp/<model> with config.yaml")
    parser.add_argument("--model_file", default="valid.acc.ave.pth")
    parser.add_argument("--dump", type=Path, required=True)
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--num_utts", type=int, default=20, help="per test set")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(message)s")

    s2t = Speech2TextGated(
        s2t_train_config=str(args.model_dir / "config.yaml"),
        s2t_model_file=str(args.model_dir / args.model_file),
        device="cpu", beam_size=1, ctc_weight=0.0,
    )
    model = s2t.s2t_model
    sides = {n: m for n, m in (("encoder", model.encoder), ("decoder", model.decoder))
             if isinstance(m, GatedModule) and m.gate_predictor is not None}
    hooks, recorded = [], {}
    for name, m in sides.items():
        recorded[name], h = record(m.gate_predictor)
        hooks += h
    rows = {name: {"bias": [], "context": [], "audio": []} for name in sides}
    groups = []
    for subset in args.test_sets:
        data = args.dump / subset
        reader = DataDirReader(data, 16000)
        tables = {k: read_table(data / f"{k}.scp") for k in ("spk_embed", "event_embed")
                  if (data / f"{k}.scp").is_file()}
        texts = read_table(data / "text")
        for utt in reader.utt_ids[: args.num_utts]:
            lang, task = context_syms(texts[utt])
            extra = {k: np.load(t[utt]) for k, t in tables.items()
                     if k.split("_")[0] in model.context_kinds}
            s2t.predict_gates(reader.read(utt), lang, task, **extra)
            for name, m in sides.items():
                for key, value in zip(("bias", "context", "audio"), parts(m.gate_predictor, recorded[name])):
                    rows[name][key].append(value[0].detach().numpy())
            groups.append(subset)
    for h in hooks:
        h.remove()

    report = {"model_dir": str(args.model_dir), "utterances": len(groups), "sides": {}}
    for name, r in rows.items():
        b, c, a = (np.stack(r[k]) for k in ("bias", "context", "audio"))  # (N, L)
        m = b + c + a
        report["sides"][name] = {
            "margin": float(np.abs(m).mean()),
            "bias": float(np.abs(b[0]).mean()),
            "context_spread": float(c.std(0).mean()),
            "audio_spread": float(a.std(0).mean()),
            "flippable": float(((m > 0).any(0) & (m <= 0).any(0)).mean()),
            "per_gate_margin": m.mean(0).round(3).tolist(),
            "per_gate_context_spread": c.std(0).round(3).tolist(),
            "per_set_margin": {g: m[np.array(groups) == g].mean(0).round(3).tolist()
                               for g in args.test_sets},
        }
        s = report["sides"][name]
        logging.info(
            f"{name}: |margin| {s['margin']:.2f} (|bias| {s['bias']:.2f}), spread across "
            f"utterances: context {s['context_spread']:.3f}, audio {s['audio_spread']:.3f}; "
            f"gates that flip: {s['flippable']:.2f}"
        )
        for gate in np.flatnonzero((m > 0).any(0) & (m <= 0).any(0)):
            open_in = {g: float((m[np.array(groups) == g, gate] > 0).mean()) for g in args.test_sets}
            logging.info(f"  {name} gate {gate} open in: "
                         + ", ".join(f"{g} {v:.0%}" for g, v in open_in.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    logging.info(f"wrote {args.out}")


if __name__ == "__main__":
    main()
