#!/usr/bin/env python3
"""Before stage 1: the options run.sh would otherwise trip on stages later, checked at once.

- The pre-trained model (``--owsm_model``: a model dir, ``whisper:<name>`` or a hub tag) and
  the training configs that fit it: ``--conf_dir auto`` takes the first config set, of ``conf/``
  (OWSM v3.1 ebf) and ``conf/<name>/``, whose gated and full YAMLs have the model's
  architecture (encoder/decoder family, ``encoder_conf``/``decoder_conf`` sizes: the keys
  ``scripts/owsm_model.py`` compares at stage 4); a given ``--conf_dir`` must fit it. A set is
  ``train_s2t_ebf_{full,gated,l0,layerprune}.yaml`` or ``train_{full,gated,...}.yaml``.
  A hub tag not downloaded yet cannot be read: ``conf/`` is taken and stage 4 checks it.
- The YAML of every model of ``--models`` (``<prefix><model>.yaml``; ``l0``/``layerprune``:
  ``--baselines true``), and for a variant (``variant_of: <model>``) that model's, and
  ``--decode_config`` exist.
- The ``<lang>``/``<task>`` tokens of the data's ``text`` are in the model's token list.
- ``--ngpu N`` against ``torch.cuda.device_count()`` (``--check_gpu true``: local runs).

Prints ``<config prefix>\\t<what was picked>`` (the prefix: ``<dir>/train_s2t_ebf_`` or
``<dir>/train_``). An error is one line on stderr naming the fix; exit status 1.

Usage (run.sh, from the recipe dir):
    local/check_setup.py --owsm_model pretrained/mini_owsm --conf_dir auto --models "full gated" \\
        --texts data/train/text --ngpu 0 --check_gpu true --decode_config conf/decode_s2t.yaml
"""

import argparse
import os
import re
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import yaml

sys.path.insert(0, str(Path(os.environ.get("MAIN_ROOT", Path(__file__).resolve().parents[4])) / "scripts"))
import owsm_model as om  # noqa: E402  (scripts/owsm_model.py: stage 4)

PROG = "check_setup"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # a token list is 50k lines
BASELINES = ("l0", "layerprune")  # --baselines true adds them
NOT_LANGS = {"<sos>", "<eos>", "<sop>", "<unk>", "<asr>", "<na>"}


class SetupError(ValueError):
    """An option that a later stage would fail on (the message names the fix)."""


def load(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER) or {}


def model_config(model: str) -> Tuple[Optional[dict], str]:
    """The pre-trained model's config.yaml (None: a hub tag not downloaded yet) and its name."""
    if model.startswith(om.WHISPER) or Path(model).is_dir():
        try:
            root = om.fetch(model)  # whisper:<spec>: exported once, stage 4 reuses it
            files = om.find_files(root)
        except om.ModelError as e:
            raise SetupError(f"--owsm_model {e}") from e
        return load(files["config"]), model.rstrip("/").split("/")[-1]
    if model.count("/") != 1 or model.startswith((".", "/", "~")):  # a hub tag is <owner>/<name>
        raise SetupError(f"--owsm_model {model}: no such directory (a relative path is taken from "
                         f"where you ran run.sh) and not a hub tag like {om.DEFAULT_TAG} or whisper:base")
    try:
        from huggingface_hub import snapshot_download

        root = Path(snapshot_download(repo_id=model, local_files_only=True))
        return load(om.find_files(root)["config"]), model
    except Exception:  # not in the local hub cache: stage 4 downloads and checks it
        return None, model


def family(name: Optional[str]) -> str:
    """Encoder/decoder class without our gating suffix (e_branchformer, transformer, whisper)."""
    return re.sub(r"(_decoder)?_token_condition$", "", str(name or "")).replace("_decoder", "")


def describe(conf: dict) -> str:
    enc, dec = conf.get("encoder_conf") or {}, conf.get("decoder_conf") or {}
    return (f"{family(conf.get('encoder'))} d {enc.get('output_size')}, heads {enc.get('attention_heads')}, "
            f"{enc.get('num_blocks')} + {dec.get('num_blocks')} blocks, linear units "
            f"{enc.get('linear_units')}")


def mismatch(model_conf: dict, yaml_path: Path) -> Optional[str]:
    """Why the YAML does not fit the model (None: it fits)."""
    train = load(yaml_path)
    for side in ("encoder", "decoder"):
        if family(model_conf.get(side)) != family(train.get(side)):
            return f"{side} {model_conf.get(side)} vs {yaml_path.name} {train.get(side)}"
    try:
        om.check_arch(model_conf, train, yaml_path)
    except om.ModelError as e:  # the first differences: one line
        diffs = str(e).split(" pre-trained model: ", 1)[-1].split("; ")
        return "; ".join(diffs[:3]) + (f"; {len(diffs) - 3} more" if len(diffs) > 3 else "")
    return None


def prefix_of(d: Path) -> Optional[str]:
    for p in ("train_s2t_ebf_", "train_"):
        if (d / f"{p}gated.yaml").is_file():
            return f"{d}/{p}"
    return None


def pick_configs(model_conf: Optional[dict], name: str, conf_dir: str) -> Tuple[str, str]:
    if conf_dir != "auto":
        d = Path(conf_dir)
        if not d.is_dir():
            raise SetupError(f"--conf_dir {conf_dir}: no such directory (or --conf_dir auto: "
                             f"the configs that fit --owsm_model)")
        prefix = prefix_of(d)
        if prefix is None:
            raise SetupError(f"--conf_dir {conf_dir} has no train_s2t_ebf_gated.yaml or train_gated.yaml "
                             f"(or --conf_dir auto: the configs that fit --owsm_model)")
        why = model_conf and mismatch(model_conf, Path(prefix + "gated.yaml"))
        if why:
            raise SetupError(f"--conf_dir {conf_dir} does not fit {name} ({why}): use --conf_dir auto")
        return prefix, f"{prefix}*.yaml (--conf_dir {conf_dir})"
    sets = [Path("conf")] + sorted(p for p in Path("conf").iterdir() if p.is_dir())
    sets = [(d, prefix_of(d)) for d in sets if prefix_of(d)]
    if model_conf is None:
        return "conf/train_s2t_ebf_", (f"conf/train_s2t_ebf_*.yaml (OWSM v3.1 ebf; {name} is not "
                                       f"downloaded yet: stage 4 checks that they fit)")
    for d, prefix in sets:
        if mismatch(model_conf, Path(prefix + "gated.yaml")) is None:
            return prefix, f"{prefix}*.yaml, fitting {name} ({describe(model_conf)})"
    raise SetupError(f"no config set in conf/ fits {name} ({describe(model_conf)}): copy "
                     f"conf/train_s2t_ebf_{{full,gated}}.yaml to conf/<name>/ with that encoder_conf "
                     f"and decoder_conf (sets here: {', '.join(str(d) for d, _ in sets)})")


def check_yaml(prefix: str, model: str, of: Optional[str] = None) -> None:
    """The model's YAML exists, and for a variant the YAML of the model it changes
    (pipeline.sh's model_yaml, model_config)."""
    y = Path(f"{prefix}{model}.yaml")
    if not y.is_file():
        why = f"variant_of: {model} in {prefix}{of}.yaml" if of else f"the config of {model}" + (
            ": --baselines false" if model in BASELINES else "")
        raise SetupError(f"{y}: no such file ({why})")
    base = load(y).get("variant_of")
    if base is not None:
        check_yaml(prefix, str(base), model)


def token_list(model_conf: dict) -> List[str]:
    tokens = model_conf.get("token_list") or []
    if isinstance(tokens, str):
        tokens = Path(tokens).read_text(encoding="utf-8").split() if Path(tokens).is_file() else []
    return tokens


def check_specials(model_conf: dict, name: str, texts: List[Path]) -> None:
    tokens = set(token_list(model_conf))
    if not tokens:
        return  # stage 4 says why
    used = {}
    for t in texts:
        for n, line in enumerate(t.read_text(encoding="utf-8").splitlines(), 1):
            m = re.match(r"\S+\s+(<[^<>\s]+>)(<[^<>\s]+>)", line)
            if m:
                used.setdefault(m.group(1), (t, n, "lang"))
                used.setdefault(m.group(2), (t, n, "task"))
    langs = sorted(x for x in tokens if re.fullmatch(r"<[a-z]{3}>", x) and x not in NOT_LANGS)
    tasks = sorted(x for x in tokens if x == "<asr>" or re.fullmatch(r"<st_[a-z]{3}>", x))
    for tok, (t, n, kind) in sorted(used.items()):
        if tok not in tokens:
            valid = langs if kind == "lang" else tasks
            raise SetupError(f"{t}:{n}: {tok} is not a {'language' if kind == 'lang' else 'task'} token "
                             f"of {name}: use one of {' '.join(valid)}")


def check_gpus(ngpu: int) -> None:
    import torch

    found = torch.cuda.device_count()
    if ngpu > found:
        fix = "--ngpu 0" if found == 0 else f"--ngpu {found}"
        raise SetupError(f"--ngpu {ngpu} but {'no GPU' if found == 0 else f'{found} GPU(s)'} here "
                         f"(torch.cuda.device_count() = {found}): use {fix}")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--owsm_model", required=True, help="Pre-trained model (run.sh --owsm_model).")
    p.add_argument("--conf_dir", default="auto", help="auto, or the dir of the training YAMLs.")
    p.add_argument("--models", default="full gated", help="Models to train (their YAMLs must exist).")
    p.add_argument("--texts", nargs="*", default=[], type=Path, help="The data's text tables.")
    p.add_argument("--ngpu", type=int, default=0, help="run.sh --ngpu.")
    p.add_argument("--check_gpu", default="true", choices=("true", "false"),
                   help="Compare --ngpu with the GPUs here (false: jobs run elsewhere).")
    p.add_argument("--decode_config", type=Path, help="Decoding YAML (stage 7).")
    a = p.parse_args(argv)
    try:
        if a.ngpu > 0 and a.check_gpu == "true":
            check_gpus(a.ngpu)
        conf, name = model_config(a.owsm_model)
        prefix, what = pick_configs(conf, name, a.conf_dir)
        for m in a.models.split():
            check_yaml(prefix, m)
        if a.decode_config is not None and not a.decode_config.is_file():
            raise SetupError(f"--decode_config {a.decode_config}: no such file")
        if conf is not None:
            check_specials(conf, name, [t for t in a.texts if t.is_file()])
    except SetupError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(f"{prefix}\t{what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
