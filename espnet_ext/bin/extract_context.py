"""Extracts per-utterance context embeddings (speaker or acoustic event).

Writes ``<out>/<name>/<utt_id>.npy`` (float32, shape (dim,)) and
``<out>/<name>.scp`` (``<utt_id> <absolute npy path>``, LC_ALL=C order), where
``<name>`` is ``spk_embed`` for ``--kind speaker`` and ``event_embed`` for
``--kind event``. The scp feeds ESPnet as
``--train_data_path_and_name_and_type <out>/spk_embed.scp,spk_embed,npy``.

A rerun skips utterances whose npy already exists, is valid and is newer than
its audio file, so an interrupted run resumes (and changed audio is redone).
Unreadable or empty audio stops the run with one error line naming the
utterance and the file; npys already written stay.

Usage:
    # speaker embeddings with resemblyzer (offline, weights in its wheel)
    python -m espnet_ext.bin.extract_context --kind speaker --model resemblyzer \\
        --data_dir data/train --out dump/raw/train

    # ECAPA-TDNN from the hub, or from a local copy of it
    python -m espnet_ext.bin.extract_context --kind speaker \\
        --model ecapa --data_dir data/train --out dump/raw/train
    python -m espnet_ext.bin.extract_context --kind speaker \\
        --model /models/spkrec-ecapa-voxceleb --data_dir data/train --out dump/raw/train

    # event embeddings: a tagger trained by espnet_ext.bin.train_event_tagger,
    # or an official BEATs checkpoint
    python -m espnet_ext.bin.extract_context --kind event \\
        --model exp/event_tagger/tagger.pth --data_dir data/train --out dump/raw/train
    python -m espnet_ext.bin.extract_context --kind event \\
        --model beats:/models/BEATs_iter3_plus_AS2M.pt \\
        --data_dir data/train --out dump/raw/train
"""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from espnet_ext.context.base import DATA_NAMES, EXTRACTORS
from espnet_ext.kaldi import write_table

PROG = "extract_context"
AUDIO_HINT = ("fix the file or remove the utterance from the data dir (the recipes: "
              "scripts/format_data.py --skip_bad_utts); finished npys are kept and a rerun resumes")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--kind", required=True, choices=sorted(EXTRACTORS), help="Kind of context."
    )
    parser.add_argument(
        "--model",
        required=True,
        help="Extractor: a name ("
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in EXTRACTORS.items())
        + "), name:path, or a local checkpoint file/directory (format detected).",
    )
    parser.add_argument(
        "--data_dir", "--data-dir", required=True, type=Path, help="Data dir with wav.scp [segments]."
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="Output dir (e.g. dump/raw/<set>)."
    )
    parser.add_argument(
        "--batch_size", "--batch-size",
        type=int,
        default=16,
        help="Utterances read and embedded per call.",
    )
    parser.add_argument(
        "--device", default="cpu", help="Torch device, e.g. cpu or cuda:0."
    )
    parser.add_argument(
        "--num_threads", "--num-threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's).",
    )
    parser.add_argument(
        "--log_level", "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Logging level.",
    )
    return parser


def is_valid(path: Path, dim: int) -> bool:
    """Whether ``path`` holds a finite float32 vector of size ``dim``."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return x.dtype == np.float32 and x.shape == (dim,) and bool(np.isfinite(x).all())


def is_stale(path: Path, source: str) -> bool:
    """Whether the audio file ``source`` changed after ``path`` was written."""
    try:
        return os.path.getmtime(source) > os.path.getmtime(path)
    except OSError:  # a piped wav.scp entry: no file to compare with
        return False


def save_npy(path: Path, x: np.ndarray) -> None:
    """Writes an npy atomically (a crash never leaves a truncated file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, x)
    os.replace(tmp, path)


def extract(
    kind: str,
    model: str,
    data_dir: Path,
    out: Path,
    batch_size: int = 16,
    device: str = "cpu",
) -> dict:
    """Runs extraction; see the module docstring.

    Returns:
        dict: Counts ``{"total", "skipped", "extracted"}``.

    Raises:
        AudioError: On unusable audio (after writing earlier utterances).
    """
    from tqdm import tqdm

    from espnet_ext.context.audio import DataDirReader
    from espnet_ext.context.base import build_extractor

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    extractor = build_extractor(kind, model, device=device)
    reader = DataDirReader(data_dir, sample_rate=extractor.sample_rate)
    name = DATA_NAMES[kind]
    npy_dir = (out / name).resolve()
    npy_dir.mkdir(parents=True, exist_ok=True)
    utts = sorted(reader.utt_ids)
    for utt in utts:
        if "/" in utt or utt in (".", ".."):
            raise ValueError(f"utterance id {utt!r} cannot be a file name")
    paths = {utt: npy_dir / f"{utt}.npy" for utt in utts}
    todo = [u for u in utts if not is_valid(paths[u], extractor.dim)
            or is_stale(paths[u], reader.source(u))]
    logging.info(
        f"{len(utts)} utterances, {len(utts) - len(todo)} already done, "
        f"{len(todo)} to extract with {extractor}"
    )
    with tqdm(total=len(todo), desc=name, unit="utt", disable=None) as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            wavs = [reader.read(utt) for utt in batch]
            for utt, vec in zip(batch, extractor.embed(wavs)):
                save_npy(paths[utt], vec)
            bar.update(len(batch))
    write_table(out / f"{name}.scp", [(u, str(paths[u])) for u in utts])
    return {
        "total": len(utts),
        "skipped": len(utts) - len(todo),
        "extracted": len(todo),
    }


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s",
    )
    if args.num_threads is not None:
        import torch

        torch.set_num_threads(args.num_threads)
    from espnet_ext.context.audio import AudioError

    try:
        counts = extract(
            args.kind, args.model, args.data_dir, args.out, args.batch_size, args.device
        )
    except AudioError as e:
        print(f"{PROG}: error: {e} ({AUDIO_HINT})", file=sys.stderr)
        sys.exit(1)
    except (OSError, ValueError) as e:  # missing/bad data dir, unknown --model
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)
    logging.info(
        f"wrote {args.out / DATA_NAMES[args.kind]}.scp: "
        f"{counts['extracted']} extracted, "
        f"{counts['skipped']} skipped (already done)"
    )


if __name__ == "__main__":
    main()
