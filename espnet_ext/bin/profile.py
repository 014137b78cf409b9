#!/usr/bin/env python3
"""Compute and wall-clock of several S2T models on the same utterances, side by side.

Usage:
    python -m espnet_ext.bin.profile \\
        --model full=exp/s2t_full/config.yaml:exp/s2t_full/valid.acc.ave.pth \\
        --model gated=exp/s2t_gated/config.yaml:exp/s2t_gated/valid.acc.ave.pth \\
        --reference full --data_dir dump/raw/test_deu_st_eng \\
        --lang_sym deu --task_sym st_eng --num_utts 20 --threads 2 \\
        --warmup 1 --repeats 3 --beam_size 5 --out exp/efficiency/test_deu_st_eng.json

Every model decodes the same utterances with the same settings (beam,
maxlenratio, batch 1, the model's own fixed-length padding, ``--search``:
the lean beam search by default), one utterance
after the other with the models interleaved, so machine noise hits all of
them alike. A pass = every utterance once; the first ``--warmup`` passes are
discarded and ``--repeats`` are timed: reported are the min and median over
passes of the mean seconds per utterance. GFLOPs per utterance are what each
decode actually spent (encoder + every beam-search step of the decoder, with
the units the gates left open; ``Speech2TextGated.decode_one``),
cross-checked once against fvcore on the encoder. Peak memory is measured in
a separate process per model (load + one decode), so models do not mask each
other. Ratios are model / reference.
"""

import argparse
import json
import logging
import multiprocessing
import platform
import resource
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

import espnet_ext
from espnet_ext import startup

startup.command(__name__)  # before ESPnet is imported: ~11 s less start-up
espnet_ext.register()

from espnet_ext import timing  # noqa: E402
from espnet_ext.context.audio import DataDirReader  # noqa: E402
from espnet_ext.gating import pin_gates  # noqa: E402
from espnet_ext.kaldi import read_table  # noqa: E402
from espnet_ext.s2t.inference import SEARCHES, Speech2TextGated  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", action="append", required=True, metavar="NAME=CONFIG:PTH",
                   help="A model to profile (repeat the option for each model).")
    p.add_argument("--reference", help="Name of the model the ratios divide by (default: the first).")
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", required=True, type=Path,
                   help="Data dir with wav.scp (and spk_embed.scp / event_embed.scp if the gates use them).")
    p.add_argument("--lang_sym", required=True, help="Language token, e.g. deu or <deu>.")
    p.add_argument("--task_sym", required=True, help="Task token, e.g. asr or <st_eng>.")
    p.add_argument("--num_utts", type=int, default=20,
                   help="Utterances to decode (first N of wav.scp; all of them if it has fewer, "
                        "which the log and the JSON's settings.num_utts_note say).")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads.")
    p.add_argument("--warmup", type=int, default=1, help="Untimed passes before timing.")
    p.add_argument("--repeats", type=int, default=3, help="Timed passes.")
    p.add_argument("--beam_size", type=int, default=5, help="Beam size.")
    p.add_argument("--maxlenratio", type=float, default=0.0, help="0.0: end detection (as in decode_s2t.yaml).")
    p.add_argument("--ctc_weight", type=float, default=0.0, help="CTC prefix scorer weight.")
    p.add_argument("--search", default="lean", choices=SEARCHES,
                   help="Beam search: lean (espnet_ext's, where it applies) or espnet (BatchBeamSearch).")
    p.add_argument("--espnet_reference", action="store_true",
                   help="Also decode the reference model with ESPnet's BatchBeamSearch (row "
                   "'<reference>@espnet'): our search vs ESPnet's on the same model, side by side.")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="Device.")
    p.add_argument("--no_memory", action="store_true", help="Skip the per-model peak-memory runs.")
    p.add_argument("--out", type=Path, help="Write the results as JSON here.")
    return p


def parse_models(specs: List[str]) -> Dict[str, Tuple[str, str]]:
    models = {}
    for spec in specs:
        name, sep, paths = spec.partition("=")
        config, sep2, pth = paths.rpartition(":")
        if not sep or not sep2 or not name:
            raise ValueError(f"--model must be NAME=CONFIG:PTH, got {spec!r}")
        for f in (config, pth):
            if not Path(f).is_file():
                raise FileNotFoundError(f"--model {name}: {f}: no such file")
        models[name] = (config, pth)
    return models


def _sym(s: str) -> str:
    return f"<{s.lstrip('<').rstrip('>')}>"


def load_utterances(data_dir: Path, n: int) -> List[Tuple[str, np.ndarray, dict]]:
    """First n utterances: (id, 16 kHz waveform, extra inputs such as spk_embed)."""
    reader = DataDirReader(data_dir, 16000)
    extra = {
        name: read_table(data_dir / f"{name}.scp")
        for name in ("spk_embed", "event_embed")
        if (data_dir / f"{name}.scp").is_file()
    }
    utts = []
    for utt in reader.utt_ids[:n]:
        inputs = {name: np.load(table[utt]) for name, table in extra.items() if utt in table}
        utts.append((utt, reader.read(utt), inputs))
    if not utts:
        raise ValueError(f"{data_dir}: no utterances")
    return utts


def fewer_note(data_dir: Path, found: int, asked: int) -> Optional[str]:
    """Why the profile ran on fewer utterances than ``--num_utts`` asked (None if it did not)."""
    if found >= asked:
        return None
    return f"{found} utterances, not the {asked} asked: {Path(data_dir).name} has only {found}"


ESPNET = "@espnet"  # suffix of a model decoded with ESPnet's search (--espnet_reference)


def build(config: str, pth: str, args, name: str = "") -> Speech2TextGated:
    return Speech2TextGated(
        config, pth, device=args.device, beam_size=args.beam_size,
        maxlenratio=args.maxlenratio, ctc_weight=args.ctc_weight,
        lang_sym=_sym(args.lang_sym), task_sym=_sym(args.task_sym),
        search="espnet" if name.endswith(ESPNET) else getattr(args, "search", "lean"),
        src_kv_cache=getattr(args, "src_kv_cache", True),
    )


def _inputs(s2t: Speech2TextGated, inputs: dict) -> dict:
    """Only the context inputs this model's gates use."""
    kinds = getattr(s2t.s2t_model, "context_kinds", [])
    return {k: v for k, v in inputs.items() if k.split("_")[0] in kinds}


def _peak_memory(config, pth, args, wav, inputs, queue, name) -> None:
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    s2t = build(config, pth, args, name)
    s2t.decode_one(wav, **_inputs(s2t, inputs))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
    queue.put((rss_mb, gpu_mb))


def peak_memory(config, pth, args, wav, inputs, name="") -> Tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory, args=(config, pth, args, wav, inputs, queue, name))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def fvcore_check(s2t: Speech2TextGated, wav: np.ndarray) -> float:
    """Relative gap between the meter's encoder MACs and fvcore's (matmul/conv only)."""
    from fvcore.nn import FlopCountAnalysis

    model = s2t.s2t_model
    encoder = model.encoder
    speech = torch.as_tensor(wav).unsqueeze(0)
    speech_length = int(s2t.preprocessor_conf["speech_length"] * s2t.preprocessor_conf["fs"])
    speech = torch.nn.functional.pad(speech, (0, max(0, speech_length - speech.size(1))))[:, :speech_length]
    lengths = torch.tensor([speech.size(1)])
    with torch.no_grad():
        feats, feats_lengths = model._extract_feats(speech, lengths)
        if model.normalize is not None:
            feats, feats_lengths = model.normalize(feats, feats_lengths)
    macs = s2t.meter.macs  # fvcore's run below triggers the meter again
    expected = float(macs["subsampling"] + macs["encoder"])
    gates = s2t.gates.get("encoder")
    ops = ("linear", "matmul", "conv", "bmm", "einsum", "addmm")

    def count():
        analysis = FlopCountAnalysis(encoder, (feats, feats_lengths))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return sum(v for k, v in analysis.by_operator().items() if k in ops)

    if gates is not None:
        with pin_gates(encoder, gates.unsqueeze(0)):
            macs = count()
    else:
        macs = count()
    return expected / float(macs) - 1.0


def profile(args) -> dict:
    torch.set_num_threads(args.threads)
    models = parse_models(args.model)
    reference = args.reference or next(iter(models))
    if reference not in models:
        raise ValueError(f"--reference {reference} is not one of {list(models)}")
    if getattr(args, "espnet_reference", False) and args.search != "espnet":
        models[reference + ESPNET] = models[reference]
    utts = load_utterances(args.data_dir, args.num_utts)
    fewer = fewer_note(args.data_dir, len(utts), args.num_utts)
    if fewer:
        logging.warning(f"profiling {fewer}")
    decoders = {name: build(config, pth, args, name) for name, (config, pth) in models.items()}
    # ESPnet's search: a stock decoder recomputes the source K/V at every step: compute them the
    # same way in the gated ones, or the comparison would credit gating with the cache's savings.
    # (The lean search caches them for every model.)
    cache = all(hasattr(s.s2t_model.decoder, "cache_src_kv") for s in decoders.values())
    args.src_kv_cache = cache  # for the peak-memory runs
    for s2t in decoders.values():
        if hasattr(s2t.s2t_model.decoder, "cache_src_kv"):
            s2t.s2t_model.decoder.cache_src_kv = cache

    gflops = {name: [] for name in models}

    def decode(name):
        s2t = decoders[name]

        def run(utt):
            _, wav, inputs = utt
            decoded = s2t.decode_one(wav, **_inputs(s2t, inputs))
            if len(gflops[name]) < len(utts):  # the first pass: compute spent per utterance
                gflops[name].append(decoded.gflops)
        return run

    def report_pass(i, timed, totals):
        print(f"pass {i + 1}/{args.warmup + args.repeats}{'' if timed else ' (warm-up)'}: "
              + ", ".join(f"{n} {t / len(utts):.3f} s/utt" for n, t in totals.items()),
              file=sys.stderr, flush=True)

    # seconds per utterance of each timed pass, the models interleaved utterance by utterance
    passes = {name: [t / len(utts) for t in ts] for name, ts in timing.interleaved(
        {name: decode(name) for name in models}, utts, args.warmup, args.repeats,
        args.device, report_pass).items()}

    results = {}
    for name, s2t in decoders.items():
        config, pth = models[name]
        model = s2t.s2t_model
        decoders[name](utts[0][1], **_inputs(s2t, utts[0][2]))
        rss, gpu = (None, None) if args.no_memory else peak_memory(config, pth, args, utts[0][1], utts[0][2], name)
        results[name] = {
            "gflops_mean": statistics.fmean(float(g["total"]) for g in gflops[name]),
            # per part; subsampling (the conv input layer) is never gated: the floor of any gating
            "gflops_parts": {part: statistics.fmean(float(g[part]) for g in gflops[name])
                             for part in gflops[name][0] if part != "total"},
            "time_median_s": statistics.median(passes[name]),
            "time_min_s": min(passes[name]),
            "peak_rss_mb": rss,
            "peak_gpu_mb": gpu,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "fvcore_encoder_gap": fvcore_check(s2t, utts[0][1]),
            "settings": {
                "config": config,
                "model_file": pth,
                "speech_length_s": s2t.preprocessor_conf.get("speech_length"),
                "class": type(model).__name__,
            },
        }
    ref = results[reference]
    for r in results.values():
        r["gflops_ratio"] = r["gflops_mean"] / ref["gflops_mean"]
        r["time_ratio"] = r["time_median_s"] / ref["time_median_s"]
    settings = {
        "data_dir": str(args.data_dir),
        "num_utts": len(utts),
        "num_utts_asked": args.num_utts,
        "num_utts_note": fewer,  # why fewer than asked, else None
        "lang_sym": _sym(args.lang_sym),
        "task_sym": _sym(args.task_sym),
        "beam_size": args.beam_size,
        "maxlenratio": args.maxlenratio,
        "ctc_weight": args.ctc_weight,
        "batch_size": 1,
        "search": args.search,
        "searches": {name: s.search for name, s in decoders.items()},
        "src_kv_cache": cache,
        "threads": args.threads,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "reference": reference,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    return {"settings": settings, "models": results}


def print_table(report: dict) -> None:
    s = report["settings"]
    if s.get("num_utts_note"):
        print(f"# {s['num_utts_note']}")
    print(f"# {s['num_utts']} utts of {s['data_dir']} ({s['lang_sym']}{s['task_sym']}), beam {s['beam_size']}, "
          f"maxlenratio {s['maxlenratio']}, batch 1, search {s.get('search', 'espnet')}, {s['threads']} threads, {s['device']}, "
          f"warm-up {s['warmup']}, {s['repeats']} timed passes")
    print("GFLOPs: fvcore's convention, one multiply-add = one flop")
    print("subsampling: the share of the GFLOPs in the encoder's conv input layer (never gated)")
    print(f"{'model':<16}{'GFLOPs/utt':>12}{'ratio':>8}{'subsampling':>13}{'s/utt med':>11}{'s/utt min':>11}"
          f"{'ratio':>8}{'peak MB':>9}")
    for name, r in report["models"].items():
        mem = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "-"
        sub = r["gflops_parts"]["subsampling"] / r["gflops_mean"]
        print(f"{name:<16}{r['gflops_mean']:>12.3f}{r['gflops_ratio']:>8.3f}{sub:>13.2f}"
              f"{r['time_median_s']:>11.3f}{r['time_min_s']:>11.3f}{r['time_ratio']:>8.3f}{mem:>9}")


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    # ESPnet's beam search logs every hypothesis at INFO: keep only warnings.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s: %(message)s")
    report = profile(args)
    print_table(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
