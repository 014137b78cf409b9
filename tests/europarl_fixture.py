"""Offline miniatures of Europarl-ST v1.1, Voxforge and an OWSM v3.1 hub directory.

- ``make_europarl_st(root)``: ``<root>/v1.1`` in the real layout: per source language
  ``audios/<speech_id>.m4a`` (AAC, 44.1 kHz, made with ffmpeg, so stage 2 must resample)
  and ``<src>/<tgt>/<split>/{segments.lst,segments.<src>,segments.<tgt>,speeches.lst,
  speakers.lst}``. Every segment is a tone of its own frequency between silences, so a test
  can check that the cut, resampled audio is the right segment.
- ``make_voxforge(root)``: the official Voxforge archive layout
  ``<root>/<lang>/Trunk/Audio/Main/16kHz_16bit/<user>-<date>-<id>.tgz`` holding
  ``etc/prompts-original`` and ``wav/*.wav`` (48 kHz here, to exercise resampling).
- ``make_owsm_dir(root, texts)``: a tiny stock ESPnet S2T model (``conf/tiny`` sizes) with a
  sentencepiece BPE whose user-defined symbols are the OWSM special tokens, saved in the
  Hugging Face layout of ``espnet/owsm_v3.1_ebf`` (``meta.yaml``, ``exp/s2t_train_*/config.yaml``
  with the token list inline, the ``.pth``, ``data/token_list/bpe_unigram<N>/bpe.model``,
  ``exp/s2t_stats_raw_bpe<N>/train/feats_stats.npz``).
"""

import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
WORDS = {
    "de": ["das", "parlament", "stimmt", "heute", "ueber", "den", "bericht", "ab"],
    "fr": ["le", "parlement", "vote", "aujourd'hui", "sur", "le", "rapport", "final"],
    "it": ["il", "parlamento", "vota", "oggi", "sulla", "relazione", "della", "commissione"],
    "en": ["the", "parliament", "votes", "today", "on", "the", "report", "now"],
    "es": ["el", "parlamento", "vota", "hoy", "sobre", "el", "informe", "final"],
}
SPLITS = ("train", "dev", "test")


def tone_freq(src_index: int, speech_index: int, seg_index: int) -> float:
    """The frequency of one segment's tone (distinct within a speech)."""
    return 300.0 + 40.0 * src_index + 25.0 * speech_index + 150.0 * seg_index


def sentence(lang: str, i: int) -> str:
    words = WORDS[lang]
    return " ".join(words[(i + k) % len(words)] for k in range(3 + i % 3))


def write_m4a(path: Path, audio: np.ndarray, rate: int = SR) -> None:
    """Encodes float audio as AAC in an .m4a container with ffmpeg."""
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "wav", "-i", "-", "-c:a", "aac",
         "-b:a", "64k", str(path)], input=buf.getvalue(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def make_europarl_st(root: Path, srcs: Sequence[str] = ("de", "fr", "it"),
                     segments_per_speech: int = 3, speeches_per_split: int = 1,
                     extra_targets: Dict[str, str] = None,
                     long_segments: Dict[Tuple[str, str], float] = None) -> Dict:
    """Writes ``<root>/v1.1``; returns {"root": path, "segments": {(src, split): [...]}}.

    Each speech: 0.3 s silence, then per segment a tone of ``0.9 + 0.2 * j`` s followed by
    0.3 s of silence. ``extra_targets`` (default ``{"de": "es"}``) adds a second target dir
    with the same segments, as in the real corpus, for ASR de-duplication.
    ``long_segments`` ({(src, split): seconds}) makes the last segment of that split's first
    speech that long instead (e.g. longer than the model's ``speech_length``).
    """
    long_segments = long_segments or {}
    extra_targets = {"de": "es"} if extra_targets is None else extra_targets
    v11 = Path(root) / "v1.1"
    info = {"root": v11, "segments": {}, "freqs": {}}
    rng = np.random.default_rng(0)
    for si, src in enumerate(srcs):
        (v11 / src / "audios").mkdir(parents=True, exist_ok=True)
        for split_i, split in enumerate(SPLITS):
            rows = []
            speeches = []
            for k in range(speeches_per_split):
                speech = f"{src}.2009{split_i}{k}1.{k + 3}.2-{100 + 7 * k + split_i}"
                speeches.append(speech)
                t, parts = 0.3, [np.zeros(int(0.3 * SR))]
                for j in range(segments_per_speech):
                    dur = 0.9 + 0.2 * j
                    if k == 0 and j == segments_per_speech - 1:
                        dur = long_segments.get((src, split), dur)
                    f = tone_freq(si, split_i * speeches_per_split + k, j)
                    n = int(round(dur * SR))
                    tt = np.arange(n) / SR
                    parts.append(0.4 * np.sin(2 * np.pi * f * tt) * np.hanning(n))
                    parts.append(np.zeros(int(0.3 * SR)))
                    rows.append((speech, round(t, 2), round(t + dur, 2), j, f))
                    info["freqs"][(speech, round(t, 2))] = f
                    t += dur + 0.3
                audio = np.concatenate(parts) + 0.003 * rng.standard_normal(
                    sum(len(p) for p in parts))
                write_m4a(v11 / src / "audios" / f"{speech}.m4a", audio)
            info["segments"][(src, split)] = rows
            targets = ["en"] + ([extra_targets[src]] if src in extra_targets else [])
            for tgt in targets:
                d = v11 / src / tgt / split
                d.mkdir(parents=True, exist_ok=True)
                (d / "segments.lst").write_text(
                    "".join(f"{s} {a:.2f} {b:.2f}\n" for s, a, b, _, _ in rows))
                (d / f"segments.{src}").write_text(
                    "".join(sentence(src, j + 2 * split_i) + "\n" for _, _, _, j, _ in rows))
                (d / f"segments.{tgt}").write_text(
                    "".join(sentence(tgt, j + 2 * split_i) + "\n" for _, _, _, j, _ in rows))
                (d / "speeches.lst").write_text("".join(s + "\n" for s in speeches))
                (d / "speakers.lst").write_text(
                    "".join(f"MEP {src.upper()} {k}\n" for k in range(len(speeches))))
    return info


VOXFORGE_PROMPTS = {
    "de": ["guten morgen meine damen und herren", "die sitzung ist eroeffnet",
           "wir stimmen jetzt ab", "der bericht wurde angenommen"],
    "fr": ["bonjour mesdames et messieurs", "la seance est ouverte",
           "nous passons au vote", "le rapport est adopte"],
    "it": ["buongiorno signore e signori", "la seduta e aperta",
           "passiamo alla votazione", "la relazione e approvata"],
}


def make_voxforge(root: Path, langs: Sequence[str] = ("de", "fr", "it"),
                  sessions_per_lang: int = 4, prompts_per_session: int = 2,
                  rate: int = 48000) -> Dict:
    """Writes Voxforge session archives in the official layout; returns their info."""
    root = Path(root)
    info = {"root": root, "sessions": {}}
    for li, lang in enumerate(langs):
        arch_dir = root / lang / "Trunk" / "Audio" / "Main" / "16kHz_16bit"
        arch_dir.mkdir(parents=True, exist_ok=True)
        for s in range(sessions_per_lang):
            user = "anonymous" if s == sessions_per_lang - 1 else f"speaker{li}{s}"
            session = f"{user}-2010010{s}-{lang}{s}x"
            prompts = []
            with tarfile.open(arch_dir / f"{session}.tgz", "w:gz") as tar:
                def add(name: str, data: bytes) -> None:
                    ti = tarfile.TarInfo(f"{session}/{name}")
                    ti.size = len(data)
                    tar.addfile(ti, io.BytesIO(data))

                for p in range(prompts_per_session):
                    uid = f"{lang}{s}-{p:02d}"
                    text = VOXFORGE_PROMPTS[lang][(s + p) % len(VOXFORGE_PROMPTS[lang])]
                    prompts.append((uid, text))
                    n = int(0.8 * rate)
                    f = 500.0 + 60.0 * li + 20.0 * p
                    audio = 0.3 * np.sin(2 * np.pi * f * np.arange(n) / rate) * np.hanning(n)
                    buf = io.BytesIO()
                    sf.write(buf, audio.astype(np.float32), rate, format="WAV", subtype="PCM_16")
                    add(f"wav/{uid}.wav", buf.getvalue())
                add("etc/prompts-original",
                    "".join(f"{u} {t}\n" for u, t in prompts).encode())
                add("etc/README", f"User Name:{user}\nLanguage: {lang.upper()}\n".encode())
            info["sessions"][session] = prompts
    return info


def make_owsm_dir(root: Path, texts: List[str], vocab_size: int = 120,
                  st_targets: Sequence[str] = ("eng",)) -> Path:
    """A tiny stock OWSM-format model directory (Hugging Face layout); returns its root."""
    import torch
    import yaml

    from espnet_ext.tokens import special_tokens, train_bpe

    import espnet_ext

    espnet_ext.register()
    from espnet2.tasks.s2t import S2TTask

    root = Path(root)
    nbpe = vocab_size
    tok_dir = root / "data" / "token_list" / f"bpe_unigram{nbpe}"
    nlsyms = special_tokens(langs=("eng", "deu", "fra", "ita", "spa"), st_targets=st_targets,
                            time_tokens=False)
    tokens = train_bpe(texts, tok_dir, nbpe, nlsyms)
    tmp_tokens = root / "tokens.tmp"
    os.replace(tokens, tmp_tokens)  # as on the hub: the token list is inside config.yaml
    (tok_dir / "train.txt").unlink()
    stats = root / "exp" / f"s2t_stats_raw_bpe{nbpe}" / "train" / "feats_stats.npz"
    stats.parent.mkdir(parents=True)
    n_mels = 40
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((500, n_mels)) * 2.0 - 5.0
    np.savez(stats, count=np.array(len(feats)), sum=feats.sum(0), sum_square=(feats ** 2).sum(0))
    exp = root / "exp" / f"s2t_train_s2t_ebf_tiny_raw_bpe{nbpe}"
    exp.mkdir(parents=True)
    args = S2TTask.get_parser().parse_args([
        "--config", str(ROOT / "conf" / "tiny" / "train_s2t_ebf_full.yaml"),
        "--token_list", str(tmp_tokens), "--token_type", "bpe",
        "--bpemodel", f"data/token_list/bpe_unigram{nbpe}/bpe.model",
        "--normalize", "global_mvn", "--normalize_conf",
        f"stats_file=exp/s2t_stats_raw_bpe{nbpe}/train/feats_stats.npz",
        "--output_dir", str(exp), "--ngpu", "0",
    ])
    cwd = os.getcwd()
    os.chdir(root)  # relative stats_file / bpemodel paths resolve from the model root
    try:
        torch.manual_seed(0)
        model = S2TTask.build_model(args)  # turns args.token_list into the list itself
    finally:
        os.chdir(cwd)
    tmp_tokens.unlink()
    conf = vars(args).copy()
    conf["output_dir"] = str(exp.relative_to(root))
    conf["config"] = None
    (exp / "config.yaml").write_text(yaml.safe_dump(conf, allow_unicode=True, sort_keys=False))
    model_file = exp / "valid.total_count.ave_5best.till45epoch.pth"
    torch.save(model.state_dict(), model_file)
    (root / "meta.yaml").write_text(yaml.safe_dump({
        "espnet": "202511", "files": {"s2t_model_file": str(model_file.relative_to(root))},
        "yaml_files": {"s2t_train_config": str((exp / "config.yaml").relative_to(root))},
        "timestamp": 0, "torch": str(torch.__version__)}))
    return root
