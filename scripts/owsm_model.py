#!/usr/bin/env python3
"""Stage 4: the pre-trained OWSM model's BPE, token list, feature statistics and weights.

``--model`` is a Hugging Face model tag (default ``espnet/owsm_v3.1_ebf``; downloaded with
``huggingface_hub.snapshot_download``, so ``HF_HOME``/``HF_HUB_OFFLINE`` apply) or a local
directory in the same layout (an unpacked hub snapshot or ``espnet_model_zoo`` download)::

    meta.yaml                                    # files.s2t_model_file, yaml_files.s2t_train_config
    exp/s2t_train_<...>/config.yaml              # token_list inline, bpemodel, normalize_conf
    exp/s2t_train_<...>/<...>.pth
    data/token_list/bpe_unigram50000/bpe.model
    exp/s2t_stats_raw_bpe50000/train/feats_stats.npz

Writes ``<out>/``: ``config.yaml`` (the original, its bpemodel and stats paths pointing to
the copies here), ``model.pth`` (link to the weights),
``bpe.model``, ``tokens.txt`` (from the config's token list), ``feats_stats.npz`` (global
MVN) and ``train_opts`` (the s2t_train options that reuse them: ``--token_list --bpemodel
--token_type bpe --normalize ... --normalize_conf ...``), ``model.json`` (what was found).

Checks, each a one-line error: every special token the recipe's data uses (``<deu>``,
``<st_eng>``, ``<notimestamps>``, ``<na>``, ...) is in the token list and is one piece of the
BPE model; the architecture options of ``--config`` (the fine-tuning YAML: encoder_conf,
decoder_conf, frontend_conf keys they share) equal the pre-trained model's.

Usage:
    python scripts/owsm_model.py --model espnet/owsm_v3.1_ebf --out exp/owsm \\
        --config conf/train_s2t_ebf_gated.yaml --specials "<deu> <fra> <ita> <asr> <st_eng>"
"""

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

PROG = "owsm_model"
DEFAULT_TAG = "espnet/owsm_v3.1_ebf"
WHISPER = "whisper:"  # whisper:base, whisper:/path/model.pt, whisper:/path/ct2_dir
ALWAYS = ("<na>", "<notimestamps>", "<sos>", "<eos>", "<sop>")
# Options of these sections that change the shape or meaning of pre-trained weights.
ARCH = {
    "encoder_conf": ("output_size", "attention_heads", "attention_layer_type",
                     "pos_enc_layer_type", "cgmlp_linear_units", "cgmlp_conv_kernel",
                     "use_linear_after_conv", "gate_activation", "num_blocks", "input_layer",
                     "linear_units", "positionwise_layer_type", "macaron_ffn",
                     "merge_conv_kernel", "use_ffn", "rel_pos_type", "qk_norm"),
    "decoder_conf": ("attention_heads", "linear_units", "num_blocks", "qk_norm"),
    "frontend_conf": ("n_fft", "win_length", "hop_length", "n_mels", "fs"),
}


class ModelError(ValueError):
    """The pre-trained model cannot be used (the message says why)."""


def fetch(model: str, cache_dir: Optional[Path] = None) -> Path:
    """A local model directory: ``model`` itself, its Hugging Face snapshot, or for
    ``whisper:<spec>`` Whisper written in this layout (``espnet_ext.whisper.export``, once)."""
    if model.startswith(WHISPER):
        from espnet_ext.whisper.export import export
        from espnet_ext.whisper.load import default_cache_dir

        spec = model[len(WHISPER):]
        out = (cache_dir or default_cache_dir()) / "espnet" / spec.strip("/").replace("/", "_")
        if not (out / "meta.yaml").is_file():
            try:
                export(spec, out, cache_dir)
            except (ValueError, OSError, RuntimeError) as e:
                raise ModelError(f"{model}: {e}") from e
        return out
    if Path(model).is_dir():
        return Path(model).resolve()
    if "/" not in model or model.startswith((".", "/")):
        raise ModelError(f"{model}: neither a directory nor a hub tag like {DEFAULT_TAG}")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id=model, cache_dir=cache_dir)
    except Exception as e:  # offline, unknown repo, network: one line, the cause kept
        raise ModelError(f"cannot download {model} from the Hugging Face hub "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                         f"pass a local model directory instead") from e
    return Path(path)


def find_files(root: Path) -> Dict[str, Path]:
    """config.yaml and model file of an ESPnet model dir (meta.yaml, else exp/*/)."""
    meta = root / "meta.yaml"
    if meta.is_file():
        m = yaml.safe_load(meta.read_text()) or {}
        config = (m.get("yaml_files") or {}).get("s2t_train_config")
        model = (m.get("files") or {}).get("s2t_model_file")
        if config and model:
            return {"config": root / config, "model": root / model}
    configs = sorted(root.glob("exp/*/config.yaml"))
    configs = [c for c in configs if list(c.parent.glob("*.pth"))]
    if len(configs) != 1:
        raise ModelError(f"{root}: expected one exp/*/config.yaml next to a .pth (or meta.yaml), "
                         f"found {len(configs)}")
    pths = sorted(configs[0].parent.glob("*.pth"), key=lambda p: ("ave" not in p.name, p.name))
    return {"config": configs[0], "model": pths[0]}


def resolve(root: Path, path: Optional[str]) -> Optional[Path]:
    """A path from config.yaml: absolute, or relative to the model root (as on the hub)."""
    if not path:
        return None
    p = Path(path)
    return p if p.is_absolute() else root / p


def check_specials(tokens: List[str], bpe: Optional[Path], specials: Sequence[str]) -> None:
    import sentencepiece as spm

    missing = [t for t in list(ALWAYS) + list(specials) if t not in tokens]
    if missing:
        raise ModelError(f"token list lacks {' '.join(missing)} (needed by the data)")
    if bpe is None:  # a tokenizer that keeps the token list's <...> tags whole (Whisper's)
        return
    sp = spm.SentencePieceProcessor(model_file=str(bpe))
    split = [t for t in specials
             if sp.piece_to_id(t) == sp.unk_id() or t not in sp.encode(t, out_type=str)]
    if split:
        raise ModelError(f"{bpe}: special tokens not kept whole: {' '.join(split)} "
                         f"(they must be user-defined symbols)")


def check_arch(model_conf: dict, train_conf: dict, config: Path) -> None:
    diffs = []
    for section, keys in ARCH.items():
        a, b = model_conf.get(section) or {}, train_conf.get(section) or {}
        for k in keys:
            if k in a and k in b and a[k] != b[k]:
                diffs.append(f"{section}.{k}: model {a[k]!r}, {config.name} {b[k]!r}")
    if diffs:
        raise ModelError(f"{config} does not match the pre-trained model: " + "; ".join(diffs))


def prepare(model: str, out: Path, config: Optional[Path] = None,
            specials: Sequence[str] = (), cache_dir: Optional[Path] = None) -> dict:
    root = fetch(model, cache_dir)
    files = find_files(root)
    for name, path in files.items():
        if not path.is_file():
            raise ModelError(f"{path}: missing ({name} of {root})")
    conf = yaml.safe_load(files["config"].read_text())
    tokens = conf.get("token_list")
    if isinstance(tokens, str):
        tokens = resolve(root, tokens).read_text(encoding="utf-8").split()
    if not tokens:
        raise ModelError(f"{files['config']}: no token_list")
    whisper = conf.get("preprocessor") == "s2t_whisper"  # Whisper's own tokenizer, no BPE file
    bpe = None if whisper else resolve(root, conf.get("bpemodel"))
    if whisper:
        check_specials(tokens, None, specials)
    elif conf.get("token_type") != "bpe" or bpe is None or not bpe.is_file():
        raise ModelError(f"{files['config']}: token_type bpe with an existing bpemodel needed "
                         f"(token_type {conf.get('token_type')!r}, bpemodel {bpe})")
    else:
        check_specials(tokens, bpe, specials)
    if config is not None:
        check_arch(conf, yaml.safe_load(config.read_text()), config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    link = out / "model.pth"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(files["model"].resolve(), link)
    opts = ["--token_list", str((out / "tokens.txt").resolve())]
    if whisper:
        opts += ["--token_type", "word", "--preprocessor", "s2t_whisper"]
    else:
        shutil.copyfile(bpe, out / "bpe.model")
        opts += ["--token_type", "bpe", "--bpemodel", str((out / "bpe.model").resolve())]
    normalize = conf.get("normalize")
    if normalize == "global_mvn":
        stats = resolve(root, (conf.get("normalize_conf") or {}).get("stats_file"))
        if stats is None or not stats.is_file():
            raise ModelError(f"{files['config']}: global_mvn stats file {stats} is missing")
        shutil.copyfile(stats, out / "feats_stats.npz")
        conf["normalize_conf"] = dict(conf["normalize_conf"],
                                      stats_file=str((out / "feats_stats.npz").resolve()))
        opts += ["--normalize", "global_mvn", "--normalize_conf",
                 f"stats_file={(out / 'feats_stats.npz').resolve()}"]
    elif normalize:
        opts += ["--normalize", normalize]
    (out / "train_opts").write_text(" ".join(opts) + "\n")
    # The config with its paths pointing here: ESPnet's tools (build_model_from_file,
    # s2t_inference) load it as it is; the hub's copy has paths relative to its root.
    conf.update(bpemodel=None if whisper else str((out / "bpe.model").resolve()), token_list=tokens)
    (out / "config.yaml").write_text(yaml.safe_dump(conf, allow_unicode=True, sort_keys=False),
                                     encoding="utf-8")
    info = {"model": model, "root": str(root), "config": str(files["config"]),
            "model_file": str(files["model"]), "num_tokens": len(tokens),
            "normalize": normalize, "encoder": conf.get("encoder"), "decoder": conf.get("decoder"),
            "encoder_blocks": (conf.get("encoder_conf") or {}).get("num_blocks"),
            "decoder_blocks": (conf.get("decoder_conf") or {}).get("num_blocks"),
            "output_size": (conf.get("encoder_conf") or {}).get("output_size")}
    (out / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    logging.info(f"{model} -> {out}: {len(tokens)} tokens, {conf.get('encoder')} "
                 f"{info['encoder_blocks']} + {conf.get('decoder')} {info['decoder_blocks']} "
                 f"blocks, d={info['output_size']}, normalize {normalize}")
    return info


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_TAG,
                        help="Hub tag, local directory, or whisper:<name|.pt|CTranslate2 dir> "
                             "(e.g. whisper:base, offline from the PyPI wheels).")
    parser.add_argument("--out", required=True, type=Path, help="Output dir (exp/owsm).")
    parser.add_argument("--config", type=Path, help="Fine-tuning YAML to check against.")
    parser.add_argument("--specials", default="",
                        help="Special tokens the data uses (space-separated).")
    parser.add_argument("--cache_dir", "--cache-dir", type=Path, help="Hugging Face cache dir.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    try:
        prepare(args.model, args.out, args.config, args.specials.split(), args.cache_dir)
    except ModelError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from espnet_ext import quiet

    quiet.install()  # no flash-attention line, no NLTK download when Whisper is exported
    sys.exit(main())
