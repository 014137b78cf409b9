# Preset "tiny" (CI): the whole recipe in ~3 minutes on 2 cores (measured 2.9 min). Numbers are meaningless.
corpus_sizes=pretrain=2,train=2,dev=2,test=2   # sentences per language per split
voices_per_lang=8
nbpe=100                   # sentencepiece vocabulary (special symbols included)
preset_base=scratch        # pre-trains its own tiny base (stage 6a)
tagger_clips_per_event=0   # event tagger training clips per label (0: all)
tagger_opts="--epochs 2 --channels 8 16 --embed_dim 32 --crop_seconds 2"
profile_num_utts=2         # utterances of test_deu_st_eng profiled in stage 9
profile_repeats=1
profile_opts="--no_memory"   # skip the per-model peak-memory processes (~15 s each)
