#!/usr/bin/env python3
"""Stage 6: what a model's training YAML means for the pipeline (egs2/TEMPLATE/pipeline.sh).

Each model of ``--models`` trains from one YAML of the recipe's conf set, named after it
(``<conf set prefix><model>.yaml``). It is either a full ESPnet config (given to
``s2t_train --config``), or a variant: the model whose config it changes and only what changes,
passed to ``s2t_train`` as command-line overrides on top of that config::

    variant_of: gated               # --config: the gated model's YAML
    encoder_conf:                   # --encoder_conf gate_context=[lang,task,spk]
        gate_context: [lang, task, spk]
        spk_embed_dim: null         # null (or left out): the size of stage 3's embeddings

From the merged config (the config, then the variant's keys), the npy inputs the model reads
follow from its ``gate_context``: ``spk`` -> ``spk_embed``, ``event`` -> ``event_embed``. A
``<spk|event>_embed_dim`` left null or out is the size of the embeddings in ``--embed_dir``;
one that is set must match it. Errors: one line naming the YAML and the key.

Usage:
    # the s2t_train options a model adds to --config <config> (one option and value a line)
    python scripts/model_yaml.py options conf/train_s2t_ebf_gated.yaml \\
        --variant conf/train_s2t_ebf_gated_spk.yaml --embed_dir dump/raw/train
    # the npy inputs it reads (one name a line), e.g. of a trained model's config
    python scripts/model_yaml.py inputs exp/gated_spk/config.yaml
    # its model class (ESPnet's `model:`; left out: espnet), e.g. espnet_gated
    python scripts/model_yaml.py model conf/train_s2t_ebf_gated.yaml --variant conf/train_s2t_ebf_gated_spk.yaml
"""

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

PROG = "model_yaml"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # a trained model's config lists 50k tokens
VARIANT_KEY = "variant_of"
CONTEXTS = ("spk", "event")  # gate contexts read from npy files: <kv>_embed, <kv>_embed_dim


class ConfigError(ValueError):
    """A YAML the pipeline cannot use (the message names the file and the key)."""


def load(path: Path) -> Dict[str, Any]:
    try:
        conf = yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER) or {}
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror.lower()}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not YAML ({' '.join(str(e).split())})") from e
    if not isinstance(conf, dict):
        raise ConfigError(f"{path}: not a mapping of ESPnet options")
    return conf


def merged(config: Dict[str, Any], variant: Dict[str, Any]) -> Dict[str, Any]:
    """The config with the variant's keys on top (a ``*_conf`` key by key, as s2t_train's
    ``--<name>_conf key=value`` overrides do)."""
    out = dict(config)
    for key, value in variant.items():
        if key == VARIANT_KEY:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = {**out[key], **value}
        out[key] = value
    return out


def contexts(conf: Dict[str, Any]) -> Dict[str, List[str]]:
    """The npy gate contexts (spk, event) each ``*_conf`` of a config reads."""
    found = {}
    for key, value in conf.items():
        if isinstance(value, dict):
            ctx = [c for c in CONTEXTS if c in (value.get("gate_context") or [])]
            if ctx:
                found[key] = ctx
    return found


def inputs(conf: Dict[str, Any]) -> List[str]:
    """The npy inputs a model reads (spk_embed, event_embed)."""
    used = {c for ctx in contexts(conf).values() for c in ctx}
    return [f"{c}_embed" for c in CONTEXTS if c in used]


def word(v: Any, where: str) -> str:
    """One override value as s2t_train's parser reads it back (YAML, one word)."""
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, float):
        s = repr(v)
        return s.replace("e", ".0e", 1) if "e" in s and "." not in s else s  # 1e-05: a YAML 1.1 float
    if isinstance(v, list):
        return "[" + ",".join(word(x, where) for x in v) + "]"
    s = str(v)
    if isinstance(v, dict) or not s or any(c.isspace() for c in s) or yaml.safe_load(s) != v:
        raise ConfigError(f"{where}: {v!r} is not one word on the command line: use a full ESPnet config")
    return s


def flatten(prefix: str, d: Dict[str, Any]):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flatten(f"{prefix}{k}.", v)
        else:
            yield f"{prefix}{k}", v


def embed_dim(kv: str, embed_dir: Optional[Path]) -> int:
    from context import dim  # scripts/context.py (numpy): only for a model that reads embeddings

    scp = embed_dir / f"{kv}_embed.scp" if embed_dir else None
    if scp is None or not scp.is_file():
        raise ConfigError(f"no {kv} embeddings in {embed_dir} (stage 3)")
    return dim(scp)


def options(config: Path, variant: Optional[Path], embed_dir: Optional[Path]) -> List[str]:
    """The s2t_train options a model adds to ``--config <config>``: its variant's keys (in
    their order), then the embedding sizes its YAMLs leave out."""
    conf, var = load(config), load(variant) if variant else {}
    if VARIANT_KEY in conf:
        raise ConfigError(f"{config}: {VARIANT_KEY} must be one plain word (a model name)")
    if variant and VARIANT_KEY not in var:
        raise ConfigError(f"{variant}: no {VARIANT_KEY}: <model> (a variant names the model it changes)")
    full = merged(conf, var)
    reads = contexts(full)
    dims = {kv: embed_dim(kv, embed_dir) for kv in CONTEXTS if any(kv in c for c in reads.values())}
    for key, ctx in reads.items():  # a size that is set must be the embeddings' one
        for kv in ctx:
            name = f"{kv}_embed_dim"
            if full[key].get(name) not in (None, dims[kv]):
                src = variant if name in (var.get(key) or {}) else config
                raise ConfigError(f"{src}: {key}.{name} is {full[key][name]}, but the {kv} embeddings in "
                                  f"{embed_dir} have {dims[kv]} (stage 3): set it to {dims[kv]}, or null")
    out = []
    for key, v in var.items():
        if key == VARIANT_KEY:
            continue
        if isinstance(v, list):  # ESPnet's list options take several words
            raise ConfigError(f"{variant}: {key}: a list option is not one word: use a full ESPnet config")
        if not isinstance(v, dict):
            out.append(f"--{key} {word(v, f'{variant}: {key}')}")
            continue
        for k, x in flatten("", v):
            kv = k[:-len("_embed_dim")] if k.endswith("_embed_dim") else None
            if x is None and kv in reads.get(key, []):
                x = dims[kv]  # null: from the data
            out.append(f"--{key} {k}={word(x, f'{variant}: {key}.{k}')}")
    for key, ctx in reads.items():  # left out of both YAMLs: from the data
        for kv in ctx:
            name = f"{kv}_embed_dim"
            if full[key].get(name) is None and name not in (var.get(key) or {}):
                out.append(f"--{key} {name}={dims[kv]}")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    yamls = argparse.ArgumentParser(add_help=False)
    yamls.add_argument("config", type=Path, help="The YAML given to --config (a full ESPnet config).")
    yamls.add_argument("--variant", type=Path, help="The model's variant YAML (variant_of: <model>).")
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("options", parents=[yamls], help="The s2t_train options a model adds to --config.")
    o.add_argument("--embed_dir", type=Path, help="Where stage 3's <spk|event>_embed.scp are.")
    sub.add_parser("inputs", parents=[yamls], help="The npy inputs a model reads.")
    sub.add_parser("model", parents=[yamls], help="Its model class (model:; default espnet).")
    a = p.parse_args(argv)
    try:
        if a.cmd == "options":
            lines = options(a.config, a.variant, a.embed_dir)
        else:
            conf = merged(load(a.config), load(a.variant) if a.variant else {})
            lines = inputs(conf) if a.cmd == "inputs" else [str(conf.get("model", "espnet"))]
    except ValueError as e:  # ConfigError; an empty embeddings scp
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    if lines:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
