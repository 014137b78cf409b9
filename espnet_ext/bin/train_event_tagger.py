"""Trains the small event tagger (``espnet_ext.context.event.EventTagger``).

Reads the utterances of a data dir (``wav.scp`` [``segments``]) and their
event labels (``utt2event``: ``<utt_id> <label>``), trains on random crops and
writes a checkpoint that ``extract_context --kind event --model <ckpt>`` loads.
All audio is held in memory: meant for a recipe's own labelled events (the
mini corpus), not for AudioSet-scale data.

Usage:
    python -m espnet_ext.bin.train_event_tagger \\
        --data_dir data/train --utt2event data/train/utt2event \\
        --out exp/event_tagger/tagger.pth --epochs 30
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

PROG = "train_event_tagger"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data_dir", "--data-dir", required=True, type=Path, help="Data dir with wav.scp [segments]."
    )
    parser.add_argument(
        "--utt2event",
        type=Path,
        default=None,
        help="<utt_id> <label> lines (default: <data-dir>/utt2event).",
    )
    parser.add_argument("--out", required=True, type=Path, help="Checkpoint to write.")
    parser.add_argument("--epochs", type=int, default=30, help="Passes over the data.")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=16, help="Clips per step.")
    parser.add_argument("--lr", type=float, default=3e-3, help="Peak learning rate.")
    parser.add_argument(
        "--crop_seconds", "--crop-seconds", type=float, default=3.0, help="Training crop length (s)."
    )
    parser.add_argument("--n_mels", "--n-mels", type=int, default=64, help="Mel bands.")
    parser.add_argument(
        "--channels",
        type=int,
        nargs="+",
        default=[16, 32, 64, 128],
        help="Output channels of each conv block.",
    )
    parser.add_argument(
        "--embed_dim", "--embed-dim", type=int, default=128, help="Embedding (penultimate layer) size."
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
    parser.add_argument("--device", default="cpu", help="Torch device.")
    parser.add_argument(
        "--num_threads", "--num-threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's).",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s"
    )
    import torch

    from espnet_ext.context.audio import DataDirReader
    from espnet_ext.kaldi import read_table
    from espnet_ext.context.event import train_event_tagger

    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    labels = read_table(args.utt2event or args.data_dir / "utt2event")
    reader = DataDirReader(args.data_dir)
    known = set(reader.utt_ids)
    missing = [u for u in labels if u not in known]
    if missing:
        raise ValueError(
            f"{len(missing)} labelled utterances not in {args.data_dir}: {missing[:5]}"
        )
    utts = sorted(labels)
    wavs = [reader.read(u) for u in utts]
    logging.info(f"{len(utts)} clips, labels: {sorted(set(labels.values()))}")
    train_event_tagger(
        wavs,
        [labels[u] for u in utts],
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        crop_seconds=args.crop_seconds,
        seed=args.seed,
        device=args.device,
        n_mels=args.n_mels,
        channels=tuple(args.channels),
        embed_dim=args.embed_dim,
    )
    logging.info(f"wrote {args.out}")


if __name__ == "__main__":
    main()
