#!/usr/bin/env python3
"""Stage 7: decodes several test subsets of one model in one process.

For every ``<subset>`` (``test_<lang>_<task>``) not decoded yet (no
``<model_dir>/decode_<subset>/.done``) this runs exactly

    python -m espnet_ext.bin.s2t_inference --config conf/decode_s2t.yaml \\
        --s2t_train_config <model_dir>/config.yaml --s2t_model_file <model_dir>/<model_file> \\
        --data_path_and_name_and_type <dump>/<subset>/wav.scp,speech,sound \\
        [--data_path_and_name_and_type <dump>/<subset>/<name>.scp,<name>,npy \\
         --allow_variable_data_keys true] \\
        --lang_sym <lang> --task_sym <task> --output_dir <model_dir>/decode_<subset> ...

but calls its ``main`` in-process: importing ESPnet costs ~6 s per process (17 s with typeguard on), more
than decoding a subset of the small presets. Each command is printed first.

Options after ``--`` go to ``s2t_inference``, e.g. ``--batch_size 8``: 8 utterances
decoded in one pass (batched beam search, same results as one by one). A subset
killed mid-way resumes where it stopped (``decode_<subset>/logdir/decoded.jsonl``).

``--nj N`` (as s2t.sh's ``--inference_nj``): each subset's utterances are split
into N contiguous parts (``decode_<subset>/logdir/keys.<j>.scp``), decoded by N
``s2t_inference`` processes side by side (``--key_file``, output in
``logdir/output.<j>``, log ``logdir/decode.<j>.log``; with ``--ngpu 1`` job j
gets the ((j - 1) mod #GPUs)-th GPU this process may use: an entry of its own
``CUDA_VISIBLE_DEVICES`` when set, e.g. 4,5,6,7 -> jobs on 4, 5, 6, 7, 4, ...), then merged into ``decode_<subset>/``: the same
files as one job writes (``decode_seconds`` aside). Each job resumes on its own.

``--task asr`` (ESPnet's ASR task, e.g. LibriSpeech): every set (its name as it is, no
``<lang>/<task>``) is decoded by ``python -m espnet_ext.asr.inference --asr_train_config ...
--asr_model_file ...`` (the ASR twin of ``s2t_inference``: the same loop, files, resuming,
``--nj`` and ``--cmd``).

``--cmd "<job command>"`` (with ``--nj``): each job is submitted through a job backend with
run.pl's calling convention instead, as ``<cmd> --gpu <0|1> logdir/decode.<j>.log python -m
espnet_ext.bin.s2t_inference ...`` (e.g. ``local/slurm.pl --config conf/slurm.conf``): its
GPU is the one the backend gives it (no ``CUDA_VISIBLE_DEVICES`` set here, and this process
needs none).

Usage:
    python scripts/decode.py --model_dir exp/gated_spk --dump dump/raw --npy spk_embed \\
        test_deu_st_eng test_eng_asr -- --config conf/decode_s2t.yaml --ngpu 0 --batch_size 8
    python scripts/decode.py --nj 4 --model_dir exp/gated --dump dump/raw test_deu_st_eng \\
        -- --config conf/decode_s2t.yaml --ngpu 1 --batch_size 16
    python scripts/decode.py --task asr --model_dir exp/gated --dump dump/raw test_clean test_other \\
        -- --config conf/decode_asr.yaml --ngpu 0
"""

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch

import espnet_ext
from espnet_ext import quiet, startup

startup.command(__name__)  # before ESPnet is imported: ~11 s less start-up
quiet.install()  # no flash-attention line, no NLTK download (espnet_ext/quiet.py)
espnet_ext.register()

from espnet_ext.bin import s2t_inference  # noqa: E402
from espnet_ext.kaldi import read_table  # noqa: E402

PROG = "decode"
MODULES = {"s2t": "espnet_ext.bin.s2t_inference", "asr": "espnet_ext.asr.inference"}  # per --task


def split_keys(wav_scp: Path, nj: int, logdir: Path) -> List[Path]:
    """``nj`` contiguous parts of ``wav_scp`` (as utils/split_scp.pl), as key files."""
    lines = wav_scp.read_text(encoding="utf-8").splitlines(keepends=True)
    nj = max(1, min(nj, len(lines)))
    logdir.mkdir(parents=True, exist_ok=True)
    files = []
    for j in range(nj):
        part = lines[j * len(lines) // nj: (j + 1) * len(lines) // nj]
        path = logdir / f"keys.{j + 1}.scp"
        if not path.exists() or path.read_text(encoding="utf-8") != "".join(part):
            path.write_text("".join(part), encoding="utf-8")
            # another split than a previous run's: the job must look at its keys again
            (logdir / f"output.{j + 1}" / ".done").unlink(missing_ok=True)
        files.append(path)
    return files


def gpus_requested(extra: List[str]) -> bool:
    return "--ngpu" in extra and int(extra[extra.index("--ngpu") + 1]) > 0


def visible_gpus(parent: Optional[str], count: int) -> List[str]:
    """The GPUs this process may use, each as a child's ``CUDA_VISIBLE_DEVICES`` names it.

    Args:
        parent: This process's ``CUDA_VISIBLE_DEVICES`` (None: unset, every GPU).
        count: ``torch.cuda.device_count()``: the GPUs CUDA sees (the listed ones up
            to the first it does not know).

    Returns:
        list of str: ``0 .. count-1`` when unset, else the first ``count`` entries
            of the list (indices or GPU-/MIG- UUIDs, as given).
    """
    if parent is None:
        return [str(i) for i in range(count)]
    return [d.strip() for d in parent.split(",") if d.strip()][:count]


def decode_split(cmd: List[str], out: Path, wav_scp: Path, nj: int, gpu: bool,
                 backend: Optional[str] = None, task: str = "s2t") -> dict:
    """Decodes ``cmd``'s input in ``nj`` processes (jobs of ``backend``, a run.pl-style
    command, when given) and merges their outputs into ``out``."""
    logdir = out / "logdir"
    key_files = split_keys(wav_scp, nj, logdir)
    parent = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible_gpus(parent, torch.cuda.device_count()) if gpu and not backend else []
    if gpu and not backend and not gpus:
        sys.exit(f"{PROG}: --ngpu 1 but no GPU is visible (CUDA_VISIBLE_DEVICES="
                 f"{'unset' if parent is None else repr(parent)})")
    jobs = []
    for j, keys in enumerate(key_files, start=1):
        job_out = logdir / f"output.{j}"
        if (job_out / ".done").exists():
            continue
        env = dict(os.environ)
        if gpus:  # one of the parent's GPUs, by its name there (not its index here)
            env["CUDA_VISIBLE_DEVICES"] = gpus[(j - 1) % len(gpus)]
        job_cmd = cmd + ["--key_file", str(keys), "--output_dir", str(job_out)]
        log = logdir / f"decode.{j}.log"
        argv = [sys.executable, "-m", MODULES[task], *job_cmd]
        if backend:  # the backend writes the job's output to the log (appending)
            log.unlink(missing_ok=True)
            proc = subprocess.Popen(shlex.split(backend) + ["--gpu", "1" if gpu else "0", str(log), *argv])
        else:
            with log.open("w") as f:
                proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env)
        jobs.append((j, proc, log, job_out))
    failed = []
    for j, proc, log, job_out in jobs:
        if proc.wait() == 0:
            (job_out / ".done").touch()
        else:
            failed.append((j, log))
    if failed:
        for j, log in failed:
            if not log.exists():  # a backend that could not start the job
                print(f"--- job {j} failed, no {log}", file=sys.stderr)
                continue
            print(f"--- job {j} failed, last lines of {log}:", file=sys.stderr)
            print("".join(log.read_text(errors="replace").splitlines(True)[-20:]), file=sys.stderr)
        sys.exit(f"{PROG}: {len(failed)} of {len(key_files)} jobs failed (rerun: finished jobs are kept)")
    records, keys = {}, []
    for j, key_file in enumerate(key_files, start=1):
        keys += [line.split(maxsplit=1)[0] for line in key_file.read_text(encoding="utf-8").splitlines()]
        with (logdir / f"output.{j}" / "logdir" / "decoded.jsonl").open() as f:
            records.update((r["key"], r) for r in map(json.loads, f))
    units = dict(read_table(logdir / "output.1" / "gates" / "units")) if (
        logdir / "output.1" / "gates" / "units").exists() else {}
    s2t_inference.write_outputs(out, keys, records, units)
    return s2t_inference.summarize(records[k] for k in keys)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=MODULES, default="s2t",
                        help="s2t: test_<lang>_<task> subsets (s2t_inference); asr: ESPnet's ASR "
                             "task, any set name (espnet_ext.asr.inference).")
    parser.add_argument("--model_dir", "--model-dir", required=True, type=Path, help="exp/<model>.")
    parser.add_argument("--model_file", "--model-file", default="valid.acc.ave.pth", help="In --model-dir.")
    parser.add_argument("--dump", required=True, type=Path, help="dump/raw.")
    parser.add_argument("--npy", action="append", default=[],
                        help="Extra npy input (spk_embed, event_embed); repeatable.")
    parser.add_argument("--nj", type=int, default=1,
                        help="Parallel decoding jobs per subset (1: in this process).")
    parser.add_argument("--cmd", default=None,
                        help="Job backend for the --nj jobs (run.pl convention), e.g. "
                             "'local/slurm.pl --config conf/slurm.conf'; the backend picks each job's GPU.")
    parser.add_argument("subsets", nargs="+",
                        help="Subsets, then -- and further s2t_inference (asr_inference) options.")
    argv = sys.argv[1:] if argv is None else list(argv)
    i = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:i]), argv[i + 1:]
    subsets = args.subsets
    if args.cmd and args.nj < 2:
        sys.exit(f"{PROG}: --cmd submits the --nj jobs: use it with --nj > 1 (or run decode.py itself as the job)")
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    for subset in subsets:
        out = args.model_dir / f"decode_{subset}"
        if (out / ".done").exists():
            continue
        data = args.dump / subset
        cmd = extra + [
            f"--{args.task}_train_config", str(args.model_dir / "config.yaml"),
            f"--{args.task}_model_file", str(args.model_dir / args.model_file),
            "--data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
        ]
        for name in args.npy:
            cmd += ["--data_path_and_name_and_type", f"{data}/{name}.scp,{name},npy"]
        if args.npy:
            cmd += ["--allow_variable_data_keys", "true"]
        if args.task == "s2t":
            _, lang, task = subset.split("_", 2)
            cmd += ["--lang_sym", lang, "--task_sym", task]
        n = sum(1 for _ in open(data / "wav.scp"))
        start = time.perf_counter()
        if args.nj > 1:
            print(f"{args.nj} jobs of: python -m {MODULES[args.task]} " + shlex.join(cmd)
                  + f" --key_file {out}/logdir/keys.JOB.scp --output_dir {out}/logdir/output.JOB",
                  flush=True)
            summary = decode_split(cmd, out, data / "wav.scp", args.nj, gpus_requested(extra), args.cmd,
                                   args.task)
        else:
            cmd += ["--output_dir", str(out)]
            print(f"python -m {MODULES[args.task]} " + shlex.join(cmd), flush=True)
            summary = s2t_inference.main(cmd, args.task)
        (out / ".done").touch()
        print(f"decoded {args.model_dir.name} {subset}: {n} utts in "
              f"{time.perf_counter() - start:.1f} s, {s2t_inference.describe(summary)}", flush=True)


if __name__ == "__main__":
    main()
