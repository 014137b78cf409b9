"""Gated ASR decoding: ESPnet's ``Speech2Text`` plus gate decisions and GFLOPs.

``Speech2TextGated`` hands the optional gate context (speaker / event embedding) to the
model, and after each call holds the encoder's hard gate decisions and the GFLOPs actually
spent, counted as S2T decoding counts them (``espnet_ext.s2t.meter``): the input layer, the
open attention/FFN units for the real number of frames, and the decoder's beam-search steps.
It decodes as S2T does: with ``espnet_ext.s2t.lean_search`` where it applies (no CTC prefix
scoring, no LM), else with ESPnet's own beam search, unchanged.
Stock (ungated) Transformer models work too, counted with every unit open.

Usage (what egs2/librispeech_100/asr1 stage 5 runs):
    python -m espnet_ext.asr.inference --asr_train_config exp/gated/config.yaml \\
        --asr_model_file exp/gated/valid.acc.ave.pth --config conf/decode_asr.yaml \\
        --wav_scp data/test_{clean,other}/wav.scp --output_dir exp/gated/decode_test_{clean,other}

Writes ``<output_dir>/1best_recog/{text,token}`` (as ``espnet2.bin.asr_inference``),
``<output_dir>/gates`` (``<utt> 11 10 01 ...``: attn/ffn bits per layer) and
``<output_dir>/gflops`` (``<utt> <encoder GFLOPs>``: input layer + encoder).
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml

from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.bin.asr_inference import Speech2Text

from espnet_ext.gating import GatedModule, GateRecord, gate_inputs
from espnet_ext.gating.model import encode
from espnet_ext.kaldi import read_table
from espnet_ext.nets.transformer_decoder_token_condition import GatedScorer
from espnet_ext.s2t.lean_search import LeanBeamSearch
from espnet_ext.s2t.meter import DecodeMeter, decoder_macs

PROG = "espnet_ext.asr.inference"
DECODE_KEYS = ("beam_size", "ctc_weight", "lm_weight", "penalty", "maxlenratio",
               "minlenratio", "nbest", "batch_size", "search")


def _row(x) -> Optional[torch.Tensor]:
    return None if x is None else torch.as_tensor(np.asarray(x), dtype=torch.float32).reshape(1, -1)


class Speech2TextGated(Speech2Text):
    """``Speech2Text`` for gated ASR models (and stock Transformer ones).

    Extra ``__call__`` arguments: ``spk_embed`` (D_spk,), ``event_embed`` (D_event,), needed
    when the gates use them. After each call: ``gates`` (layers, units) of the encoder,
    ``meter.gflops`` per part and ``encoder_gflops``.

    ``search``: "lean" (default) decodes with ``LeanBeamSearch`` when the beam search allows
    it (``LeanBeamSearch.unsupported``); "espnet", or a search it does not support, with
    ESPnet's.
    """

    def __init__(self, *args, search: str = "lean", **kwargs):
        super().__init__(*args, **kwargs)
        encoder = self.asr_model.encoder
        if not isinstance(encoder, TransformerEncoder):
            raise ValueError(
                f"{PROG} counts Transformer encoders only, got {type(encoder).__name__}"
            )
        self.lean = LeanBeamSearch.for_search(self.beam_search, search)
        self.meter = DecodeMeter(self.asr_model)
        self.gates: Optional[torch.Tensor] = None

    @property
    def encoder_gflops(self) -> float:
        """GFLOPs of the last call's input layer and encoder."""
        g = self.meter.gflops
        return g["subsampling"] + g["encoder"]

    @torch.no_grad()
    def __call__(self, speech, spk_embed=None, event_embed=None):
        model = self.asr_model
        context = None
        if hasattr(model, "make_context"):
            dev = next(model.parameters()).device
            spk, event = _row(spk_embed), _row(event_embed)
            context = model.make_context(
                None if spk is None else spk.to(dev), None if event is None else event.to(dev)
            )
        record = GateRecord()
        if self.lean is None:  # ESPnet's code calls the encoder; its beam search, our scorer
            with self.meter.measure(record), gate_inputs(model, context, record), \
                    GatedScorer.installed(self.beam_search, context, record):
                results = super().__call__(speech)
        else:
            results = self._lean_decode(speech, context, record)
        self.gates = self.meter.unit_gates(model.encoder, record.gates.get("encoder"))
        self.gates = self.gates.detach().double().cpu()
        return results

    def _lean_decode(self, speech, context, record: GateRecord) -> list:
        """``__call__``'s n-best (text, token, token_int, hyp) with the lean search."""
        model, decoder = self.asr_model, self.asr_model.decoder
        self.meter.reset()
        speech = torch.as_tensor(np.asarray(speech)).reshape(1, -1).to(getattr(torch, self.dtype))
        lengths = speech.new_full([1], dtype=torch.long, fill_value=speech.size(1))
        enc, enc_lens = encode(model, speech.to(self.device), lengths.to(self.device), context, record)
        if isinstance(enc, tuple):
            raise NotImplementedError("the lean search with intermediate-CTC encoders: use search='espnet'")
        self.meter.count_encoder(record.gates.get("encoder"))
        gates = None
        if isinstance(decoder, GatedModule):
            valid = torch.ones(enc.shape[:2], dtype=torch.bool, device=enc.device)
            gates = decoder.compute_gates(enc, valid, context, record).detach()
        hyps = self.lean(enc, enc_lens, [[model.sos]], gates, self.maxlenratio, self.minlenratio)[0]
        self.meter.macs["decoder"] = decoder_macs(
            decoder, self.lean.steps[0], int(enc_lens[0]), None if gates is None else gates[0]
        )
        results = []
        for hyp in hyps[: self.nbest]:  # as ESPnet's Speech2Text._decode_single_sample
            token_int = [t for t in hyp.yseq[1:-1].tolist() if t != 0]  # blank: 0
            token = self.converter.ids2tokens(token_int)
            text = self.tokenizer.tokens2text(token) if self.tokenizer is not None else None
            results.append((text, token, token_int, hyp))
        return results


def decode_set(s2t: Speech2TextGated, wav_scp: Path, spk_scp: Optional[Path], output_dir: Path) -> int:
    """Decodes one set; writes 1best_recog/{text,token}, gates and gflops."""
    import soundfile
    from tqdm import tqdm

    wavs = read_table(wav_scp)
    spk = read_table(spk_scp) if spk_scp else {}
    out = output_dir / "1best_recog"
    out.mkdir(parents=True, exist_ok=True)
    lines = {name: [] for name in ("text", "token")}
    gate_lines, gflop_lines, dec_gflops = [], [], []
    for utt, path in tqdm(sorted(wavs.items()), desc=f"decoding {wav_scp.parent.name}"):
        speech, rate = soundfile.read(path, dtype="float32")
        if rate != 16000 or speech.ndim != 1:
            logging.error(f"{path}: {rate} Hz, {speech.ndim} channel dims; expected 16 kHz mono")
            return 1
        embed = np.load(spk[utt]) if utt in spk else None
        text, token, *_ = s2t(speech, spk_embed=embed)[0]
        lines["text"].append(f"{utt} {text}")
        lines["token"].append(f"{utt} {' '.join(token)}")
        bits = " ".join("".join(str(int(v)) for v in row) for row in s2t.gates.round().int().tolist())
        gate_lines.append(f"{utt} {bits}")
        gflop_lines.append(f"{utt} {s2t.encoder_gflops:.6g}")
        dec_gflops.append(s2t.meter.gflops["decoder"])
    for name, rows in lines.items():
        (out / name).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    (output_dir / "gates").write_text("".join(r + "\n" for r in gate_lines))
    (output_dir / "gflops").write_text("".join(r + "\n" for r in gflop_lines))
    mean = sum(float(r.split()[1]) for r in gflop_lines) / max(1, len(gflop_lines))
    dec = sum(dec_gflops) / max(1, len(dec_gflops))
    uncounted = "" if s2t.lean is not None else " (ESPnet's search: CTC prefix scorer and LM not counted)"
    logging.info(f"decoded {len(gate_lines)} utterances -> {out}; GFLOPs/utt: encoder {mean:.4g}, "
                 f"decoder {dec:.4g}{uncounted}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--asr_train_config", required=True, help="exp/<model>/config.yaml")
    parser.add_argument("--asr_model_file", required=True, help="exp/<model>/valid.acc.ave.pth")
    parser.add_argument("--config", help="Decoding YAML (beam_size, ctc_weight, penalty, ...).")
    parser.add_argument("--wav_scp", required=True, type=Path, nargs="+",
                        help="<utt> <audio path> table(s), one per test set.")
    parser.add_argument("--spk_embed_scp", type=Path, nargs="+",
                        help="<utt> <npy> table(s) (one per --wav_scp), if the gates use spk.")
    parser.add_argument("--output_dir", required=True, type=Path, nargs="+",
                        help="One per --wav_scp.")
    parser.add_argument("--ngpu", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format=f"%(asctime)s ({PROG}) %(levelname)s: %(message)s")
    if len(args.output_dir) != len(args.wav_scp) or (
        args.spk_embed_scp and len(args.spk_embed_scp) != len(args.wav_scp)
    ):
        parser.error("give one --output_dir (and --spk_embed_scp) per --wav_scp")
    conf = yaml.safe_load(open(args.config)) if args.config else {}
    unknown = set(conf) - set(DECODE_KEYS)
    if unknown:
        parser.error(f"{args.config}: unknown decoding keys {sorted(unknown)} (known: {DECODE_KEYS})")
    s2t = Speech2TextGated(
        asr_train_config=args.asr_train_config, asr_model_file=args.asr_model_file,
        device="cuda" if args.ngpu > 0 else "cpu", **conf,
    )
    spk_scps = args.spk_embed_scp or [None] * len(args.wav_scp)
    for wav_scp, spk_scp, output_dir in zip(args.wav_scp, spk_scps, args.output_dir):
        if decode_set(s2t, wav_scp, spk_scp, output_dir) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
