#!/usr/bin/env python3
"""Voxforge (de/fr/it, ...) -> ESPnet S2T Kaldi data directories (ASR, corpus label voxforge).

Voxforge (http://www.voxforge.org, GPL) is read speech recorded by volunteers. The official
archive serves one ``.tgz`` per recording session::

    http://www.repository.voxforge1.org/downloads/<lang>/Trunk/Audio/Main/16kHz_16bit/<session>.tgz
    <session> = <user>-<yyyymmdd>-<id>;  inside: <session>/etc/prompts-original (or etc/PROMPTS),
                                          <session>/wav/<uid>.wav (or flac/<uid>.flac)

``--root`` may hold that tree (or any tree of session ``.tgz`` files, or already unpacked
session dirs) with one sub-directory per language (``<root>/de``, ``<root>/fr``, ...);
``--download_dir`` downloads the listed archives first (resumable). Voxforge has no official
split: speakers are split deterministically (sorted by the MD5 of their name) into
``--test_speakers`` and ``--dev_speakers`` per language, the rest is train. Sessions of the
user ``anonymous`` count as one speaker each.

Writes ``<out>/{train,dev,test}`` like ``local/europarl_st/prepare.py`` (wav.scp +
segments with ``end = -1``, text ``<deu><asr><notimestamps> ...``, text.ctc, text.prev,
utt2spk, utt2lang, utt2task, utt2corpus = voxforge) so the two corpora can be merged and
compared (the ``utt2corpus`` label). Problems (a prompt without audio, audio without
prompt, empty prompt) are reported as ``file:line: what`` and skipped.

Usage:
    python local/voxforge/prepare.py --root downloads/voxforge --langs de,fr,it --out data/voxforge
    python local/voxforge/prepare.py --download_dir downloads/voxforge --max_sessions 200 ...
"""

import argparse
import hashlib
import logging
import os
import re
import sys
import tarfile
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple



def _europarl_st_prepare():
    """local/europarl_st/prepare.py (shared Kaldi writer), under a unique module name."""
    import importlib.util

    name = "europarl_st_prepare"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "europarl_st" / "prepare.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


_ep = _europarl_st_prepare()
ISO3, Utterance, safe_id, write_data_dir = _ep.ISO3, _ep.Utterance, _ep.safe_id, _ep.write_data_dir

PROG = "voxforge"
URL = "http://www.repository.voxforge1.org/downloads/{lang}/Trunk/Audio/Main/16kHz_16bit/"
CORPUS = "voxforge"


def download(download_dir: Path, langs: Sequence[str], max_sessions: int = 0,
             url: str = URL) -> Path:
    """Downloads the session archives of every language (resumable)."""
    from tqdm import tqdm

    for lang in langs:
        base = url.format(lang=lang)
        dest = download_dir / lang / "Trunk" / "Audio" / "Main" / "16kHz_16bit"
        dest.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(base) as resp:
            index = resp.read().decode("utf-8", errors="replace")
        names = sorted(set(re.findall(r'href="([^"/?]+\.tgz)"', index)))
        if max_sessions:
            names = names[:max_sessions]
        if not names:
            raise RuntimeError(f"{base}: no .tgz archives listed")
        for name in tqdm(names, desc=f"voxforge {lang}", unit="session"):
            target = dest / name
            if target.is_file():
                continue
            part = target.with_name(name + ".part")
            with urllib.request.urlopen(base + name) as resp, open(part, "wb") as f:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
            os.replace(part, target)
    return download_dir


def unpack(root: Path, lang: str, work: Path) -> List[Path]:
    """Session dirs of one language: unpacked ones under ``<root>/<lang>`` plus every
    ``.tgz`` there, unpacked (once) into ``<work>/<lang>``."""
    src = root / lang
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such directory (one sub-directory per language)")
    sessions = {p.parent.parent for p in src.rglob("etc/prompts-original")}
    sessions |= {p.parent.parent for p in src.rglob("etc/PROMPTS")}
    for archive in sorted(src.rglob("*.tgz")):
        out = work / lang
        mark = out / f".{archive.name}.done"
        if not mark.is_file():
            out.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive) as tar:
                tar.extractall(out, filter="data")
            mark.touch()
        sessions |= {p.parent.parent for p in (out / archive.name[:-4]).glob("etc/prompts-original")}
        sessions |= {p.parent.parent for p in (out / archive.name[:-4]).glob("etc/PROMPTS")}
    return sorted(sessions)


def read_prompts(session: Path, problems: List[str]) -> List[Tuple[str, str, int, Path]]:
    """(uid, text, line, prompts file) per prompt of a session."""
    f = session / "etc" / "prompts-original"
    upper = False
    if not f.is_file():
        f, upper = session / "etc" / "PROMPTS", True
    out = []
    for num, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        key, _, text = line.strip().partition(" ")
        uid = key.rsplit("/", 1)[-1]  # PROMPTS: <session>/mfc/<uid>
        text = " ".join(text.split())
        if upper:
            text = text.lower()
        if not text:
            problems.append(f"{f}:{num}: empty prompt for {uid}")
            continue
        out.append((uid, text, num, f))
    return out


def speaker_of(session: Path) -> str:
    user = session.name.split("-")[0]
    return safe_id(session.name if user.lower() in ("anonymous", "") else user)


def split_speakers(speakers: Sequence[str], n_test: int, n_dev: int) -> Dict[str, str]:
    order = sorted(set(speakers), key=lambda s: hashlib.md5(s.encode()).hexdigest())
    if len(order) < n_test + n_dev + 1:
        raise ValueError(f"{len(order)} speakers cannot give {n_test} test + {n_dev} dev "
                         f"speakers and a training set")
    return {s: "test" if i < n_test else "dev" if i < n_test + n_dev else "train"
            for i, s in enumerate(order)}


def prepare(root: Path, out: Path, langs: Sequence[str], work: Path, n_test: int = 10,
            n_dev: int = 10) -> Dict[str, int]:
    splits: Dict[str, List[Utterance]] = defaultdict(list)
    recs: Dict[str, str] = {}
    problems: List[str] = []
    for lang in langs:
        lang3 = ISO3[lang]
        sessions = unpack(root, lang, work)
        if not sessions:
            raise ValueError(f"{root / lang}: no Voxforge sessions (etc/prompts-original)")
        assign = split_speakers([speaker_of(s) for s in sessions], n_test, n_dev)
        for session in sessions:
            spk = speaker_of(session)
            for uid, text, num, pfile in read_prompts(session, problems):
                audio = next((p for p in (session / "wav" / f"{uid}.wav",
                                          session / "flac" / f"{uid}.flac") if p.is_file()), None)
                if audio is None:
                    problems.append(f"{pfile}:{num}: no audio for {uid} in {session}/wav or flac")
                    continue
                rec = f"vf-{safe_id(session.name)}-{safe_id(uid)}"
                utt = f"{spk}_{rec}_{lang3}_asr"
                recs[rec] = str(audio.resolve())
                splits[assign[spk]].append(
                    Utterance(utt, rec, 0.0, -1.0, spk, lang3, "asr", text, text))
    counts = {}
    for split in ("train", "dev", "test"):
        utts = sorted(splits[split], key=lambda u: u.utt)
        write_data_dir(out / split, utts, recs, corpus=CORPUS)
        (out / split / "problems.txt").write_text("".join(p + "\n" for p in problems))
        counts[split] = len(utts)
        logging.info(f"{out / split}: {len(utts)} utterances, "
                     f"{len({u.speaker for u in utts})} speakers")
    for p in problems[:20]:
        logging.warning(p)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="Voxforge tree: <root>/<lang>/...")
    parser.add_argument("--download_dir", "--download-dir", type=Path, help="Without --root: download here.")
    parser.add_argument("--max_sessions", "--max-sessions", type=int, default=0,
                        help="Download at most this many sessions per language (0: all).")
    parser.add_argument("--url", default=URL, help="Archive index URL, {lang} is replaced.")
    parser.add_argument("--langs", default="de,fr,it", help="Languages (comma-separated).")
    parser.add_argument("--out", required=True, type=Path, help="Output: <out>/<split>.")
    parser.add_argument("--work", type=Path, help="Where archives are unpacked "
                                                  "(default: <out>/unpacked).")
    parser.add_argument("--test_speakers", "--test-speakers", type=int, default=10, help="Per language.")
    parser.add_argument("--dev_speakers", "--dev-speakers", type=int, default=10, help="Per language.")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    langs = args.langs.split(",")
    try:
        for lang in langs:
            if lang not in ISO3:
                raise ValueError(f"unknown language {lang!r}")
        if args.root is None:
            if args.download_dir is None:
                parser.error("give --root or --download_dir")
            args.root = download(args.download_dir, langs, args.max_sessions, args.url)
        prepare(args.root, args.out, langs, args.work or args.out / "unpacked",
                args.test_speakers, args.dev_speakers)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
