# Preset "demo" (the README's main command): the whole method end to end, fresh machine to
# RESULTS.md in < 20 minutes on 2 cores including the install. Tiny model, small corpus.
corpus_sizes=pretrain=2000,train=80,dev=10,test=50   # sentences per language per split (pretrain: --base scratch only)
voices_per_lang=8
nbpe=300                   # BPE size with --base scratch (otherwise the base model's token list)
preset_base=pretrained/mini_owsm   # the base model (OWSM stand-in) shipped in git; scratch: stage 6a
preset_gated_models=gated    # full + lang/task gated: the 20-minute budget (bench adds spk, event)
tagger_clips_per_event=30   # event tagger training clips per label (0: all)
tagger_opts="--epochs 4 --channels 8 16 32 --embed_dim 64 --crop_seconds 2"
profile_num_utts=8
profile_repeats=3
profile_opts=""
