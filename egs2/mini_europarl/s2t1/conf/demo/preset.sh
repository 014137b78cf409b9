# Preset "demo" (the README's main command): the whole method end to end, fresh machine to
# RESULTS.md in < 20 minutes on 2 cores including the install. Tiny model, small corpus.
corpus_sizes=pretrain=300,train=80,dev=8,test=8   # sentences per language per split
voices_per_lang=8
nbpe=300
tagger_clips_per_event=30   # event tagger training clips per label (0: all)
tagger_opts="--epochs 4 --channels 8 16 32 --embed-dim 64 --crop-seconds 2"
profile_num_utts=8
profile_repeats=3
profile_opts=""
