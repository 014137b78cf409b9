"""Static export: one fixed context -> a plain, smaller ESPnet model.

For a context (``<lang>``, ``<task>``, and the speaker/event embeddings of
the utterances given), the gate predictors run over sample utterances; a unit
closed for every one of them is removed, the rest is kept always open. The
result is an ESPnet model (``model: espnet``) whose gated encoder/decoder
carry ``fixed_gates`` and simply lack the removed sub-modules: fewer
parameters on disk and in memory, no predictor, loadable by stock
``Speech2Text`` (with espnet_ext installed, which registers the classes).
Outputs are identical to the gated model on every utterance whose predicted
gates equal the exported pattern (all of them when the gates follow the
context only).
"""

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import yaml

from espnet_ext.context.audio import DataDirReader
from espnet_ext.kaldi import read_table
from espnet_ext.gating import GATE_CONF_KEYS
from espnet_ext.s2t.inference import Speech2TextGated

MODEL_KEYS = ("prune_scope", "sparsity_weighting")


def predicted_gates(
    s2t: Speech2TextGated, data_dir: Path, lang_sym: str, task_sym: str, num_utts: Optional[int]
) -> Dict[str, Dict[str, torch.Tensor]]:
    """Predicted gates of the first ``num_utts`` utterances of ``data_dir``."""
    reader = DataDirReader(data_dir, 16000)
    tables = {
        name: read_table(data_dir / f"{name}.scp")
        for name in ("spk_embed", "event_embed")
        if (data_dir / f"{name}.scp").is_file()
    }
    kinds = getattr(s2t.s2t_model, "context_kinds", [])
    out = {}
    for utt in reader.utt_ids[:num_utts]:
        extra = {k: np.load(t[utt]) for k, t in tables.items() if k.split("_")[0] in kinds}
        out[utt] = s2t.predict_gates(reader.read(utt), lang_sym, task_sym, **extra)
    if not out:
        raise ValueError(f"{data_dir}: no utterances")
    return out


def static_config(config: dict, patterns: Dict[str, torch.Tensor]) -> dict:
    """The training config rewritten for fixed gates and the stock model class."""
    conf = dict(config)
    for side, pattern in patterns.items():
        key = f"{side}_conf"
        conf[key] = {k: v for k, v in conf[key].items() if k not in GATE_CONF_KEYS}
        conf[key]["gate_context"] = []
        conf[key]["fixed_gates"] = pattern.int().tolist()
    conf["model"] = "espnet"
    conf["model_conf"] = {k: v for k, v in conf["model_conf"].items() if k not in MODEL_KEYS}
    return conf


def export(
    config: Path,
    model_file: Path,
    lang_sym: str,
    task_sym: str,
    data_dir: Path,
    out_dir: Path,
    num_utts: Optional[int] = None,
    verify_utts: int = 3,
    beam_size: int = 5,
) -> dict:
    """Writes ``out_dir/{config.yaml,model.pth}``; returns a report dict."""
    from espnet2.bin.s2t_inference import Speech2Text
    from espnet2.tasks.s2t import S2TTask

    s2t = Speech2TextGated(config, model_file, device="cpu", beam_size=beam_size,
                           lang_sym=lang_sym, task_sym=task_sym)
    gates = predicted_gates(s2t, Path(data_dir), lang_sym, task_sym, num_utts)
    sides = list(next(iter(gates.values())))
    if not sides:
        raise ValueError(f"{config}: the model has no gated encoder or decoder")
    stacked = {side: torch.stack([g[side] for g in gates.values()]) for side in sides}
    patterns = {side: (g.amax(0) > 0).float() for side, g in stacked.items()}
    varying = {side: int((g.amin(0) != g.amax(0)).sum()) for side, g in stacked.items()}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    conf = static_config(yaml.safe_load(Path(config).read_text()), patterns)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(conf, allow_unicode=True, sort_keys=False))
    static, _ = S2TTask.build_model_from_file(out_dir / "config.yaml", None, "cpu")
    state = torch.load(model_file, map_location="cpu")
    static.load_state_dict({k: state[k] for k in static.state_dict()}, strict=True)
    torch.save(static.state_dict(), out_dir / "model.pth")

    # outputs must match on utterances whose gates equal the exported pattern
    matching = [u for u, g in gates.items() if all(torch.equal(g[s], patterns[s]) for s in sides)]
    stock = Speech2Text(out_dir / "config.yaml", out_dir / "model.pth", device="cpu",
                        beam_size=beam_size, lang_sym=lang_sym, task_sym=task_sym)
    reader = DataDirReader(Path(data_dir), 16000)
    kinds = getattr(s2t.s2t_model, "context_kinds", [])
    tables = {n: read_table(Path(data_dir) / f"{n}.scp") for n in ("spk_embed", "event_embed")
              if (Path(data_dir) / f"{n}.scp").is_file() and n.split("_")[0] in kinds}
    identical: List[bool] = []
    for utt in matching[:verify_utts]:
        wav = reader.read(utt)
        extra = {k: np.load(t[utt]) for k, t in tables.items()}
        a, b = s2t(wav, **extra)[0], stock(wav)[0]
        identical.append(a[2] == b[2] and abs(float(a[4].score) - float(b[4].score)) < 1e-4)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    return {
        "context": f"{lang_sym}{task_sym}",
        "utterances": len(gates),
        "closed_units": {s: int((1 - p).sum()) for s, p in patterns.items()},
        "total_units": {s: int(p.numel()) for s, p in patterns.items()},
        "varying_units": varying,
        "params_m": {"gated": count(s2t.s2t_model) / 1e6, "static": count(static) / 1e6},
        "file_mb": {
            "gated": Path(model_file).stat().st_size / 2**20,
            "static": (out_dir / "model.pth").stat().st_size / 2**20,
        },
        "patterns": {s: p.int().tolist() for s, p in patterns.items()},
        "verified": {"utterances": len(identical), "identical": sum(identical),
                     "matching_pattern": len(matching)},
    }
