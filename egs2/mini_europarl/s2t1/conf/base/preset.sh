# Preset "base": pre-trains the mini OWSM (the base model every other preset fine-tunes, as
# the real recipe fine-tunes OWSM v3.1) from scratch on a larger `pretrain` split, scores it
# on the test sets and packs it in the OWSM hub layout into ${base_out} (what ships in git).
# Split sizes: dev/test/train as large as bench's, so that the fine-tuning presets' dev, test
# and train sentences are never in this pretrain split (sentence ids are cut in the order
# test, dev, train, pretrain).
corpus_sizes=pretrain=2000,train=300,dev=20,test=100   # sentences per language per split
voices_per_lang=8
nbpe=500
preset_base=scratch       # pre-trains (stage 6a); the other presets fine-tune pretrained/mini_owsm
tagger_clips_per_event=0
tagger_opts=""
profile_num_utts=0
profile_repeats=0
profile_opts=""
