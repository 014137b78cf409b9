#!/usr/bin/env python3
"""Stage 10 of ``--preset base``: packs the pre-trained base model in the OWSM hub layout.

The layout is what ``espnet/owsm_v3.1_ebf`` has on the Hugging Face hub (and what the
recipes' stage 4, ``scripts/owsm_model.py``, reads), so the mini recipe fine-tunes
its base exactly as the Europarl recipe fine-tunes OWSM v3.1::

    <out>/meta.yaml                                  files.s2t_model_file, yaml_files.s2t_train_config
    <out>/exp/s2t_train_mini_owsm/config.yaml        paths relative to <out>, token list inline
    <out>/exp/s2t_train_mini_owsm/valid.acc.ave.pth  weights in float16 (half the bytes in git)
    <out>/exp/s2t_stats_raw_bpe<N>/train/feats_stats.npz
    <out>/data/token_list/bpe_unigram<N>/bpe.model
    <out>/scores.json, train_seconds                 its test scores (stage 8), training wall time
    <out>/README.md                                  what it is, how it was made, those figures

float16 weights change a decode's scores by rounding only; ``--init_param`` casts them back to
float32. Machine-specific paths of the training config (data, output dir) are made relative.

Usage:
    python local/pack_base.py --exp exp/base --stats exp/s2t_stats_bpe500/pretrain/train/feats_stats.npz \\
        --out pretrained/mini_owsm
"""

import argparse
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path

import torch
import yaml

PROG = "pack_base"
NAME = "s2t_train_mini_owsm"


def relative(value, roots):
    """A training-time path made relative to the first root it lies under."""
    if isinstance(value, str):
        for root, new in roots:
            if value.startswith(root + "/"):
                return new + value[len(root):]
    if isinstance(value, list):
        return [relative(v, roots) for v in value]
    return value


def readme(conf: dict, state: dict, out: Path) -> str:
    """The model card: architecture, training, and the test scores of stage 8."""
    enc, dec = conf["encoder_conf"], conf["decoder_conf"]
    params = sum(v.numel() for v in state.values() if v.is_floating_point())
    secs = out / "train_seconds"
    md = ["# mini OWSM: the pre-trained base model of the mini Europarl recipe", "",
          "Made by `./run.sh --preset base` (egs2/mini_europarl/s2t1; conf/base/) and packed by "
          "`local/pack_base.py` (stage 10) in the OWSM v3.1 hub layout; every preset but `tiny` "
          "fine-tunes it (stage 4 reads it with `scripts/owsm_model.py`, as the "
          "Europarl recipe reads OWSM v3.1).", "",
          f"- {conf['encoder']} encoder ({enc['num_blocks']} blocks) + {conf['decoder']} "
          f"decoder ({dec['num_blocks']} blocks), d {enc['output_size']}, "
          f"{enc['attention_heads']} heads, FFN {enc['linear_units']}, cgMLP "
          f"{enc['cgmlp_linear_units']}, {enc['input_layer']} subsampling, "
          f"{conf['frontend_conf']['n_mels']} mel bins, "
          f"{len(conf['token_list'])} tokens; {params / 1e6:.2f} M parameters (float16 here)",
          f"- trained {conf['max_epoch']} x {conf['num_iters_per_epoch']} steps of "
          f"{conf['batch_size']} utterances on the `pretrain` split; weights: average of the "
          f"{conf['keep_nbest_models']} best epochs by validation accuracy"]
    if secs.is_file():
        md.append(f"- training wall time: {int(secs.read_text())} s on this machine "
                  f"({platform.machine()}, {os.cpu_count()} CPUs)")
    scores = out / "scores.json"
    if scores.is_file():
        subsets = json.loads(scores.read_text())["subsets"]
        md += ["", "Test scores (stage 8, beam 5; `scores.json`): BLEU for ST, WER % for ASR, and "
               "the fraction of distinct hypotheses (references in brackets):", "",
               "| set | utts | score | distinct hyps (refs) |", "| --- | ---: | ---: | ---: |"]
        for name, r in subsets.items():
            metric = "bleu" if "bleu" in r else "wer"
            md.append(f"| {name} | {r['num_utts']} | {metric.upper()} {r[metric]:.2f} | "
                      f"{r.get('distinct_hyp', float('nan')):.2f} "
                      f"({r.get('distinct_ref', float('nan')):.2f}) |")
        flagged = [name for name, r in subsets.items() if r.get("warnings")]
        if flagged:
            md += ["", f"**It does not listen yet**: `scripts/score.py` flags {len(flagged)} of "
                   f"{len(subsets)} sets (too few distinct hypotheses, or looping ones): "
                   + ", ".join(flagged) + ". Fine-tunes of it inherit that."]
    return "\n".join(md) + "\n"


def pack(exp: Path, stats: Path, out: Path, model_file: str = "valid.acc.ave.pth") -> Path:
    import espnet

    conf = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    if not isinstance(conf.get("token_list"), list):
        raise ValueError(f"{exp}/config.yaml: token_list is not inline")
    import sentencepiece as spm

    nbpe = spm.SentencePieceProcessor(model_file=conf["bpemodel"]).get_piece_size()
    model_dir = Path("exp") / NAME
    bpe = Path("data") / "token_list" / f"bpe_unigram{nbpe}" / "bpe.model"
    stats_rel = Path("exp") / f"s2t_stats_raw_bpe{nbpe}" / "train" / "feats_stats.npz"
    if out.exists():
        shutil.rmtree(out)
    for p in (model_dir, bpe.parent, stats_rel.parent):
        (out / p).mkdir(parents=True, exist_ok=True)

    state = torch.load(exp / model_file, map_location="cpu")
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(half, out / model_dir / model_file)
    shutil.copyfile(conf["bpemodel"], out / bpe)
    shutil.copyfile(stats, out / stats_rel)

    roots = [(str(exp.resolve().parent), "exp"),
             (str(Path(conf["bpemodel"]).resolve().parents[2]), "data")]
    if conf.get("train_data_path_and_name_and_type"):  # <dump>/raw/<set>/wav.scp
        roots.append((str(Path(conf["train_data_path_and_name_and_type"][0][0]).parents[2]), "dump"))
    for key in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type",
                "train_shape_file", "valid_shape_file", "output_dir"):
        if key in conf:
            conf[key] = relative(conf[key], roots)
    conf["bpemodel"] = str(bpe)
    conf["normalize_conf"] = dict(conf.get("normalize_conf") or {}, stats_file=str(stats_rel))
    conf["init_param"] = []
    (out / model_dir / "config.yaml").write_text(
        yaml.safe_dump(conf, allow_unicode=True, sort_keys=False), encoding="utf-8")
    meta = {"espnet": str(espnet.__version__), "files": {"s2t_model_file": str(model_dir / model_file)},
            "python": platform.python_version(),
            "timestamp": (exp / model_file).stat().st_mtime,  # when it was trained
            "torch": str(torch.__version__), "yaml_files": {"s2t_train_config": str(model_dir / "config.yaml")}}
    (out / "meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    for f in ("scores.json", "train_seconds"):
        if (exp / f).is_file():
            shutil.copyfile(exp / f, out / f)
    (out / "README.md").write_text(readme(conf, state, out), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    logging.info(f"{exp} -> {out}: {len(state)} tensors in float16, {nbpe}-piece BPE, "
                 f"{size / 2**20:.1f} MiB")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, type=Path, help="Trained base model dir.")
    parser.add_argument("--stats", required=True, type=Path, help="feats_stats.npz (global MVN).")
    parser.add_argument("--out", required=True, type=Path, help="Packed model dir (replaced).")
    parser.add_argument("--model_file", "--model-file", default="valid.acc.ave.pth", help="In --exp.")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    for p in (args.exp / "config.yaml", args.exp / args.model_file, args.stats):
        if not p.is_file():
            print(f"{PROG}: error: {p}: missing", file=sys.stderr)
            return 1
    pack(args.exp, args.stats, args.out, args.model_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
