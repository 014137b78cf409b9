"""The compute budget of the static baselines: the dynamic model's measured GFLOPs.

``measured_gflops`` decodes utterances of a data dir with a model (beam
search, each utterance with the ``<lang>``/``<task>`` of its own ``text``) and
returns the mean GFLOPs actually spent (``espnet_ext.s2t.inference.DecodeMeter``:
encoder with its open units, every decoder step). The FLOPs fraction a
baseline must reach is gated / full on the same utterances.
"""

import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from tqdm import tqdm

from espnet_ext.context.audio import DataDirReader, read_table
from espnet_ext.s2t.inference import Speech2TextGated


def measured_gflops(
    config: Path,
    model_file: Path,
    data_dir: Path,
    num_utts: Optional[int] = None,
    beam_size: int = 5,
) -> Dict[str, float]:
    """Mean decode GFLOPs per utterance of one model.

    Args:
        config, model_file: The model (stock, gated or exported).
        data_dir (Path): Kaldi dir with wav.scp and text (``<lang><task>...``);
            spk_embed.scp / event_embed.scp when the gates use them.
        num_utts (int): First N utterances.
        beam_size (int): Beam size.

    Returns:
        {"gflops": mean, "utterances": N}.
    """
    data_dir = Path(data_dir)
    # src_kv_cache off: the budget compares with the stock full model, which recomputes the
    # source K/V at every step (and so do the static baselines, decoded by stock ESPnet).
    s2t = Speech2TextGated(config, model_file, device="cpu", beam_size=beam_size, maxlenratio=0.0,
                           ctc_weight=0.0, src_kv_cache=False)
    reader = DataDirReader(data_dir, 16000)
    texts = read_table(data_dir / "text")
    kinds = getattr(s2t.s2t_model, "context_kinds", [])
    tables = {n: read_table(data_dir / f"{n}.scp") for n in ("spk_embed", "event_embed")
              if n.split("_")[0] in kinds}
    values = []
    for utt in tqdm(reader.utt_ids[:num_utts], desc=f"gflops {Path(model_file).parent.name}", unit="utt"):
        tags = re.findall(r"<[^>]+>", texts[utt].split(" ", 1)[0])
        extra = {k: np.load(t[utt]) for k, t in tables.items()}
        s2t(reader.read(utt), lang_sym=tags[0], task_sym=tags[1], **extra)
        values.append(s2t.meter.gflops["total"])
    if not values:
        raise ValueError(f"{data_dir}: no utterances")
    return {"gflops": float(np.mean(values)), "utterances": len(values)}
