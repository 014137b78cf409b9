"""The compute budget of the static baselines: the dynamic model's measured GFLOPs.

``matched_gflops`` decodes utterances of a data dir with the dynamic model
(beam search, each utterance with the ``<lang>``/``<task>`` of its own
``text``) and counts, for every decode, the MACs it spent
(``espnet_ext.s2t.meter.DecodeMeter``: encoder with its open units, every
decoder step with its open units) and the MACs the full model spends on the
same trajectory: same input frames, same decoder steps, hypotheses and prefix
lengths, every unit open. The fraction a baseline must reach is the ratio of
the two sums.

Why the same trajectory and not the full model's own decode: the output length
differs between models, and a full model that loops to ``maxlen`` on a few
utterances (a weak mini model on German ASR does) would make the gated model
look several times cheaper than its gates make it. The fraction is what the
gates save, independent of what either model happens to output.
"""

import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from tqdm import tqdm

from espnet2.tasks.s2t import S2TTask

from espnet_ext.context.audio import DataDirReader
from espnet_ext.kaldi import read_table
from espnet_ext.s2t.inference import Speech2TextGated
from espnet_ext.s2t.meter import gflops


def matched_gflops(
    config: Path,
    model_file: Path,
    reference_config: Path,
    reference_file: Path,
    data_dir: Path,
    num_utts: Optional[int] = None,
    beam_size: int = 5,
) -> Dict:
    """Decode GFLOPs per utterance of a model, and of the reference on the same decodes.

    Args:
        config, model_file: The dynamic (gated) model; a stock model works too.
        reference_config, reference_file: The full model (same frontend and
            subsampling, so the same encoder frames).
        data_dir (Path): Kaldi dir with wav.scp and text (``<lang><task>...``);
            spk_embed.scp / event_embed.scp when the gates use them.
        num_utts (int): First N utterances.
        beam_size (int): Beam size.

    Returns:
        {"fraction": model / reference, "gflops": {"model", "reference"} (means),
        "utterances": N}.
    """
    data_dir = Path(data_dir)
    # src_kv_cache off: the budget compares with the stock full model, which recomputes the
    # source K/V at every step (and so do the static baselines, decoded by stock ESPnet).
    s2t = Speech2TextGated(config, model_file, device="cpu", beam_size=beam_size, maxlenratio=0.0,
                           ctc_weight=0.0, src_kv_cache=False)
    reference, _ = S2TTask.build_model_from_file(reference_config, reference_file, "cpu")
    sub, ref_sub = (type(m.encoder.embed).__name__ for m in (s2t.s2t_model, reference))
    if sub != ref_sub:
        raise ValueError(f"the models subsample differently ({sub} vs {ref_sub}): no common trajectory")
    reader = DataDirReader(data_dir, 16000)
    texts = read_table(data_dir / "text")
    kinds = getattr(s2t.s2t_model, "context_kinds", [])
    tables = {n: read_table(data_dir / f"{n}.scp") for n in ("spk_embed", "event_embed")
              if n.split("_")[0] in kinds}
    spent, dense = [], []
    for utt in tqdm(reader.utt_ids[:num_utts], desc=f"gflops {Path(model_file).parent.name}", unit="utt"):
        tags = re.findall(r"<[^>]+>", texts[utt].split(" ", 1)[0])
        extra = {k: np.load(t[utt]) for k, t in tables.items()}
        s2t(reader.read(utt), lang_sym=tags[0], task_sym=tags[1], **extra)
        spent.append(s2t.meter.gflops["total"])
        dense.append(gflops(s2t.meter.dense_macs(reference))["total"])
    if not spent:
        raise ValueError(f"{data_dir}: no utterances")
    return {"fraction": float(np.sum(spent) / np.sum(dense)),
            "gflops": {"model": float(np.mean(spent)), "reference": float(np.mean(dense))},
            "utterances": len(spent)}
