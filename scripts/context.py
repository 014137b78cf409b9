#!/usr/bin/env python3
"""Stage 3 helpers: context embeddings per recording, listed per utterance.

In mini Europarl the ASR and ST utterances of a German/French/Italian recording
share one wav, so embeddings are computed once per wav (with
``espnet_ext.bin.extract_context``'s ``extract``) and each utterance's scp line
points at its recording's npy.

Usage:
    # speaker/event embeddings -> dump/raw/<set>/{spk,event}_embed.scp
    # (+ the same lines, filtered, in the --subsets dirs)
    python scripts/context.py extract --kind speaker --model resemblyzer \\
        dump/raw/train dump/raw/dev dump/raw/test \\
        --subsets dump/raw/test_deu_st_eng dump/raw/test_eng_asr
    # one clip per recording of several dirs, with its event label (event tagger data),
    # at most 40 per event
    python scripts/context.py recordings --out exp/event_tagger/data --max_per_event 40 \\
        dump/raw/pretrain dump/raw/train
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from espnet_ext.kaldi import read_table, write_table

PROG = "context"


def recordings(data_dirs: List[Path]) -> Dict[str, List[str]]:
    """wav path -> utterances using it (over all ``data_dirs``)."""
    recs: Dict[str, List[str]] = {}
    for d in data_dirs:
        for utt, wav in read_table(d / "wav.scp").items():
            recs.setdefault(wav, []).append(utt)
    return recs


def cmd_recordings(args) -> None:
    """A data dir with one utterance per recording (its first utterance id)."""
    recs = recordings(args.data_dirs)
    events = {}
    for d in args.data_dirs:
        if (d / "utt2event").exists():
            events.update(read_table(d / "utt2event"))
    wav_scp = {sorted(utts)[0]: wav for wav, utts in recs.items()}
    if args.max_per_event and events:
        by_event: Dict[str, List[str]] = {}
        for utt in sorted(wav_scp):
            if utt not in events:
                raise ValueError(f"{utt}: no label in the utt2event of {args.data_dirs}")
            by_event.setdefault(events[utt], []).append(utt)
        rng = np.random.default_rng(args.seed)
        keep = [u for us in by_event.values()
                for u in rng.permutation(us)[: args.max_per_event]]
        wav_scp = {u: wav_scp[u] for u in keep}
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(args.out / "wav.scp", wav_scp)
    if events:
        write_table(args.out / "utt2event", {u: events[u] for u in wav_scp})
    logging.info(f"{args.out}: {len(wav_scp)} recordings from "
                 f"{sum(map(len, recs.values()))} utterances")


def cmd_extract(args) -> None:
    from espnet_ext.bin.extract_context import extract
    from espnet_ext.context.base import DATA_NAMES

    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    name = DATA_NAMES[args.kind]
    utt_scp = {}
    for data_dir in args.data_dirs:
        recs = recordings([data_dir])
        rec_dir = data_dir / "recordings"
        rec_dir.mkdir(exist_ok=True)
        first = {wav: sorted(utts)[0] for wav, utts in recs.items()}
        write_table(rec_dir / "wav.scp", {u: wav for wav, u in first.items()})
        logging.info(f"{data_dir}: {len(recs)} recordings")
        counts = extract(args.kind, args.model, rec_dir, rec_dir, batch_size=args.batch_size)
        rec_scp = read_table(rec_dir / f"{name}.scp")
        scp = {u: rec_scp[first[wav]] for wav, utts in recs.items() for u in utts}
        write_table(data_dir / f"{name}.scp", scp)
        utt_scp.update(scp)
        logging.info(f"wrote {data_dir / name}.scp ({len(scp)} utterances; {counts})")
    for sub in args.subsets:
        utts = read_table(sub / "wav.scp")
        missing = sorted(set(utts) - set(utt_scp))
        if missing:
            raise ValueError(f"{sub}: {len(missing)} utterance(s) not in the extracted dirs, "
                             f"e.g. {missing[0]} (a --subsets dir must be a subset of them)")
        write_table(sub / f"{name}.scp", {u: utt_scp[u] for u in utts})
    if args.subsets:
        logging.info(f"wrote {name}.scp in {len(args.subsets)} subset dirs")


def dim(scp: Path) -> int:
    """The size of the vectors of an npy scp (its first); scripts/model_yaml.py: a model's
    ``<spk|event>_embed_dim``."""
    table = read_table(scp)
    if not table:
        raise ValueError(f"{scp}: empty (rerun stage 3)")
    return int(np.load(next(iter(table.values()))).shape[0])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("extract", help="Embeddings per recording, scp per utterance.")
    p.add_argument("--kind", required=True, choices=["speaker", "event"], help="Context kind.")
    p.add_argument("--model", required=True, help="Extractor (see extract_context --help).")
    p.add_argument("data_dirs", nargs="+", type=Path, help="dump/raw/<set> dirs.")
    p.add_argument("--batch_size", "--batch-size", type=int, default=16, help="Utterances per call.")
    p.add_argument("--num_threads", "--num-threads", type=int, default=None, help="torch threads.")
    p.add_argument("--subsets", nargs="*", type=Path, default=[],
                   help="Dirs whose utterances are a subset of data_dirs': get filtered scps.")
    p.set_defaults(func=cmd_extract)
    p = sub.add_parser("recordings", help="One utterance per recording of several dirs.")
    p.add_argument("--out", required=True, type=Path, help="Output data dir.")
    p.add_argument("--max_per_event", "--max-per-event", type=int, default=0,
                   help="Keep at most N random recordings per event label (0: all).")
    p.add_argument("--seed", type=int, default=0, help="Seed of that sample.")
    p.add_argument("data_dirs", nargs="+", type=Path, help="Input data dirs.")
    p.set_defaults(func=cmd_recordings)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    from espnet_ext.bin.extract_context import AUDIO_HINT
    from espnet_ext.context.audio import AudioError

    try:
        args.func(args)
    except AudioError as e:
        print(f"{PROG}: error: {e} ({AUDIO_HINT})", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:  # missing/bad tables, unknown --model
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
