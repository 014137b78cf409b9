"""OWSM v3.1-shaped models from a training YAML, with random weights: the synthetic OWSM
token list, the training args as ``s2t_train`` parses them (optionally fewer layers or a
smaller width), and the model ESPnet's ``S2TTask.build_model`` builds from them. Used by
the parameter count, the decoding and training-cost benchmarks (scripts/)."""

import argparse
from pathlib import Path
from typing import List, Optional

import torch

# OWSM v3.1 special tokens (ISO 639-3 languages, tasks, timestamps, sos/eos/sop).
LANGS = ["<eng>", "<deu>", "<fra>", "<ita>"]
TASKS = ["<asr>", "<st_eng>", "<st_deu>", "<st_fra>", "<st_ita>"]
TIMES = [f"<{0.02 * i:.2f}>" for i in range(1501)]  # <0.00> .. <30.00>


def owsm_token_list(size: int = 50000) -> List[str]:
    """A synthetic OWSM-style token list of ``size`` entries.

    ``<blank> <unk> <na> <nospeech>``, languages, tasks, ``<notimestamps>``,
    ``<0.00>`` .. ``<30.00>``, filler BPE pieces, then ``<sos> <eos> <sop>``.
    """
    head = ["<blank>", "<unk>", "<na>", "<nospeech>"] + LANGS + TASKS
    head += ["<notimestamps>"] + TIMES
    tail = ["<sos>", "<eos>", "<sop>"]
    n_bpe = size - len(head) - len(tail)
    if n_bpe < 1:
        raise ValueError(f"vocab_size must exceed {len(head) + len(tail)}")
    return head + [f"\u2581bpe{i}" for i in range(n_bpe)] + tail


def parse_config(
    config: Path,
    token_list: List[str],
    num_blocks: Optional[int] = None,
    width: Optional[int] = None,
) -> argparse.Namespace:
    """Training args of ``config`` as ``s2t_train`` would parse them.

    Args:
        config: Training YAML.
        token_list: Token list handed to ``build_model``.
        num_blocks: If set, encoder and decoder layers are reduced to this.
        width: If set, the model dimension (FFN and cgMLP units 4x it, heads kept):
            a CPU-sized stand-in of the same structure.
    """
    import espnet_ext

    espnet_ext.register()
    from espnet2.tasks.s2t import S2TTask

    args = S2TTask.get_parser().parse_args(["--config", str(config)])
    args.token_list = list(token_list)
    args.normalize = "utterance_mvn"
    args.normalize_conf = {}
    # flash_attn is a CUDA-only extra; without it ESPnet falls back anyway
    args.encoder_conf["use_flash_attn"] = False
    args.decoder_conf["use_flash_attn"] = False
    if num_blocks is not None:
        args.encoder_conf["num_blocks"] = num_blocks
        args.decoder_conf["num_blocks"] = num_blocks
    if width is not None:
        args.encoder_conf.update(output_size=width, linear_units=4 * width, cgmlp_linear_units=4 * width)
        args.decoder_conf["linear_units"] = 4 * width
    return args


def build(args: argparse.Namespace) -> torch.nn.Module:
    """``S2TTask.build_model(args)`` with random weights on the CPU."""
    from espnet2.tasks.s2t import S2TTask

    return S2TTask.build_model(args)


def synthetic_batch(token_list: List[str], batch: int, seconds: float, n_tokens: int,
                    device: str = "cpu", fs: int = 16000) -> tuple:
    """A German-to-English ST batch of noise for training-cost measurements: the arguments
    of ``ESPnetS2TModel.forward`` (speech, text ``<deu><st_eng><notimestamps>`` + BPE pieces,
    text_prev ``<na>``, text_ctc), each followed by its lengths. Content does not matter to
    the cost; shapes do.
    """
    ids = {t: i for i, t in enumerate(token_list)}
    bpe = [i for i, t in enumerate(token_list) if t.startswith("\u2581")][:n_tokens]
    speech = 0.1 * torch.randn(batch, int(seconds * fs), device=device)
    prefix = [ids["<deu>"], ids["<st_eng>"], ids["<notimestamps>"]]
    text = torch.tensor([prefix + bpe[: n_tokens - 3]] * batch, device=device)
    ctc = torch.tensor([bpe] * batch, device=device)
    prev = torch.full((batch, 1), ids["<na>"], device=device)
    out = []
    for x in (speech, text, prev, ctc):
        out += [x, torch.full((batch,), x.shape[1], dtype=torch.long, device=device)]
    return tuple(out)
