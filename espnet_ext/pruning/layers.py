"""Layer pruning of a stock S2T model: per-layer representations, costs, removal.

- ``layer_representations``: runs a model over a data dir (ESPnet's own S2T
  preprocessor: padding to ``speech_length``, tokenisation) and returns, per
  encoder layer, the mean-pooled output of every utterance (labelled by its
  ``<lang>``, ``<task>`` or both) and, per decoder layer, the teacher-forced
  output at every target position (labelled by the token it predicts).
- ``layer_macs``: MACs of each layer for given lengths (``espnet_ext.flops``).
- ``drop_layers``: a stock config + state dict with only the first layers.
"""

import copy
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from espnet_ext import flops
from espnet_ext.context.audio import DataDirReader

from espnet_ext.kaldi import read_table

ENCODER_LABELS = ("lang", "task", "lang_task")


def _prefix_label(text: str, kind: str) -> str:
    tags = re.findall(r"<[^>]+>", text.split(" ", 1)[0])
    if len(tags) < 2:
        raise ValueError(f"text must start with <lang><task>, got {text[:40]!r}")
    return {"lang": tags[0], "task": tags[1], "lang_task": tags[0] + tags[1]}[kind]


@torch.no_grad()
def layer_representations(
    model: torch.nn.Module,
    preprocess,
    data_dir: Path,
    num_utts: Optional[int] = None,
    encoder_label: str = "lang",
    max_tokens: int = 3000,
    seed: int = 0,
) -> Dict[str, Tuple[List[np.ndarray], np.ndarray]]:
    """Per-layer representations and labels.

    Args:
        model: An ``ESPnetS2TModel`` (eval mode).
        preprocess: ``S2TTask.build_preprocess_fn(train_args, False)``.
        data_dir (Path): Kaldi dir with wav.scp (+ segments), text, text.ctc.
        num_utts (int): First N utterances (default: all).
        encoder_label (str): "lang", "task" or "lang_task".
        max_tokens (int): Decoder positions kept (random subset).
        seed (int): Subset seed.

    Returns:
        {"encoder": ([layers x (N_utt, D)], labels (N_utt,)),
         "decoder": ([layers x (N_tok, D)], token ids (N_tok,))}.
    """
    if encoder_label not in ENCODER_LABELS:
        raise ValueError(f"unknown encoder_label: {encoder_label} (choose from {ENCODER_LABELS})")
    data_dir = Path(data_dir)
    reader = DataDirReader(data_dir, 16000)
    texts = read_table(data_dir / "text")
    ctc = read_table(data_dir / "text.ctc") if (data_dir / "text.ctc").is_file() else {}
    utts = reader.utt_ids[:num_utts]
    enc_out: Dict[int, torch.Tensor] = {}
    dec_out: Dict[int, torch.Tensor] = {}
    hooks = []
    def keep(store, i):
        def hook(_module, _args, out):  # layers return (x, mask, ...); x may be (x, pos_emb)
            store[i] = out[0][0] if isinstance(out[0], tuple) else out[0]

        return hook

    for i, layer in enumerate(model.encoder.encoders):
        hooks.append(layer.register_forward_hook(keep(enc_out, i)))
    for i, layer in enumerate(model.decoder.decoders):
        hooks.append(layer.register_forward_hook(keep(dec_out, i)))
    enc_rows: List[List[np.ndarray]] = [[] for _ in model.encoder.encoders]
    dec_rows: List[List[np.ndarray]] = [[] for _ in model.decoder.decoders]
    enc_labels, dec_labels = [], []
    try:
        for utt in tqdm(utts, desc="representations", unit="utt"):
            text = texts[utt]
            data = preprocess(utt, {"speech": reader.read(utt), "text": text,
                                    "text_prev": "<na>", "text_ctc": ctc.get(utt, "")})
            speech = torch.as_tensor(data["speech"]).float()[None]
            lengths = torch.tensor([speech.size(1)])
            enc, enc_lens = model.encode(speech, lengths)
            n = int(enc_lens[0])
            for i in range(len(enc_rows)):
                enc_rows[i].append(enc_out[i][0, :n].mean(0).numpy())
            enc_labels.append(_prefix_label(text, encoder_label))
            tokens = torch.as_tensor(data["text"]).long()
            ys_in = torch.cat([torch.tensor([model.sos]), tokens])[None]
            ys_out = torch.cat([tokens, torch.tensor([model.eos])])
            model.decoder(enc, enc_lens, ys_in, torch.tensor([ys_in.size(1)]))
            body = slice(3, None)  # predicting the text after <lang><task><notimestamps>
            for i in range(len(dec_rows)):
                dec_rows[i].append(dec_out[i][0, body].numpy())
            dec_labels.append(ys_out[body].numpy())
    finally:
        for h in hooks:
            h.remove()
    if not utts:
        raise ValueError(f"{data_dir}: no utterances")
    dec_all = [np.concatenate(r) for r in dec_rows]
    labels = np.concatenate(dec_labels)
    if labels.size > max_tokens:
        pick = np.sort(np.random.default_rng(seed).choice(labels.size, max_tokens, replace=False))
        dec_all, labels = [r[pick] for r in dec_all], labels[pick]
    return {
        "encoder": ([np.stack(r) for r in enc_rows], np.asarray(enc_labels)),
        "decoder": (dec_all, labels),
    }


def encoder_frames(encoder, n_input_frames: int, feat_dim: int) -> int:
    """Frames after the encoder's subsampling."""
    p = next(encoder.parameters())
    x = torch.zeros(1, n_input_frames, feat_dim, dtype=p.dtype)
    mask = torch.ones(1, 1, n_input_frames, dtype=torch.bool)
    with torch.no_grad():
        out = encoder.embed(x, mask)[0]
    return (out[0] if isinstance(out, tuple) else out).size(1)


def layer_macs(
    model, n_input_frames: int, feat_dim: int, n_tokens: int, beam: int = 0
) -> Tuple[Dict[str, List[float]], float]:
    """MACs of every layer of a stock E-Branchformer/Transformer S2T model.

    Args:
        model: ``ESPnetS2TModel``.
        n_input_frames (int): Feature frames of one utterance.
        feat_dim (int): Feature size.
        n_tokens (int): Decoder positions.
        beam (int): 0: one teacher-forced decoder pass; > 0: as a beam search
            of this width spends it (``n_tokens`` steps of ``beam`` hypotheses,
            each one query against its prefix and every encoder frame), the
            count of ``espnet_ext.s2t.meter.DecodeMeter`` and of the L0
            model's ``flops_beam``.

    Returns:
        {"encoder": [...], "decoder": [...]} MACs per layer, and the MACs of
        the rest (subsampling, decoder output layer).
    """
    enc, dec = model.encoder, model.decoder
    n = encoder_frames(enc, n_input_frames, feat_dim)
    units = flops.encoder_units(enc, n)
    merge_free = units.sum(1)  # merge is split into attn/cgmlp halves: the sum counts it once
    if beam > 0:
        dec_units = sum(beam * flops.decoder_units(dec, 1, t, n) for t in range(1, n_tokens + 1))
        positions = beam * n_tokens
    else:
        dec_units, positions = flops.decoder_units(dec, n_tokens, n_tokens, n), n_tokens
    fixed = float(flops.subsampling(enc, n_input_frames, feat_dim))
    if dec.output_layer is not None:
        fixed += positions * dec.output_layer.in_features * dec.output_layer.out_features
    return {"encoder": merge_free.tolist(), "decoder": dec_units.sum(1).tolist()}, fixed


def drop_layers(
    config: dict, state: Dict[str, torch.Tensor], keep: Dict[str, int]
) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """Keeps the first ``keep[side]`` layers of a stock model.

    Args:
        config (dict): Stock ESPnet config (``e_branchformer`` / ``transformer``).
        state (dict): Its state dict.
        keep (dict): {"encoder": n, "decoder": m} layers to keep.

    Returns:
        The config with smaller ``num_blocks`` and the matching state dict.
    """
    conf = copy.deepcopy(config)
    pattern = {"encoder": re.compile(r"^encoder\.encoders\.(\d+)\."),
               "decoder": re.compile(r"^decoder\.decoders\.(\d+)\.")}
    for side, n in keep.items():
        blocks = conf[f"{side}_conf"].get("num_blocks")
        if blocks is None or not 1 <= n <= blocks:
            raise ValueError(f"keep {side}={n}: must be in [1, {side}_conf.num_blocks={blocks}]")
        if conf[f"{side}_conf"].get("interctc_layer_idx"):
            raise ValueError(f"{side}_conf.interctc_layer_idx is set: drop it before layer pruning")
        conf[f"{side}_conf"]["num_blocks"] = n
    out = {}
    for k, v in state.items():
        drop = False
        for side, n in keep.items():
            m = pattern[side].match(k)
            if m and int(m.group(1)) >= n:
                drop = True
        if not drop:
            out[k] = v
    return conf, out
