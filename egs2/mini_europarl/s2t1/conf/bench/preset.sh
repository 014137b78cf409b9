# Preset "bench": more data, a larger model and more steps, so that the numbers mean
# something (57 min on 2 cores, measured; see README.md).
corpus_sizes=pretrain=2000,train=300,dev=20,test=100   # sentences per language per split (pretrain: --base scratch only)
voices_per_lang=8
nbpe=500                   # BPE size with --base scratch (otherwise the base model's token list)
preset_base=pretrained/mini_owsm   # the base model (OWSM stand-in) shipped in git; scratch: stage 6a
tagger_clips_per_event=80   # event tagger training clips per label (0: all)
tagger_opts="--epochs 5 --channels 8 16 32 --embed_dim 64 --crop_seconds 2"
profile_num_utts=10
profile_repeats=3
profile_opts=""
