#!/usr/bin/env bash
# Mini Europarl, S2T (OWSM-style ASR + ST): context-aware dynamic pruning end to end, offline,
# on CPUs. Synthesises the corpus, fine-tunes the pre-trained mini OWSM that ships in
# pretrained/mini_owsm fully (baseline) and with gates (lang/task context; bench and tiny
# also + speaker, + event), decodes, scores and writes RESULTS.md.
#
# Usage:
#   ./run.sh --preset demo                      # everything (< 20 min on a 2-core machine)
#   ./run.sh --preset demo --stage 7 --stop_stage 8
#   ./run.sh --preset demo --stage 8 --stop_stage 9 --wer_norm raw   # WER as ESPnet's s2t.sh
#   ./run.sh --preset demo --base scratch       # pre-train the base model too (stage 6a)
#   ./run.sh --preset whisper                   # the same on Whisper base (PyPI wheels, offline)
#   ./run.sh --preset base --datadir base/data --dumpdir base/dump --expdir base/exp
#                                               # re-make pretrained/mini_owsm (see README.md)
#   ./run.sh --preset tiny --datadir /tmp/x/data --dumpdir /tmp/x/dump --expdir /tmp/x/exp
#
# Stages: 1 data prep, 2 audio format, 3 context embeddings, 4 token list (from the base
#   model, or a new BPE with --base scratch), 5 stats,
#   6 training (6a base (--base scratch), 6b full fine-tune, 6c gated, 6d gated+spk,
#   6e gated+event), 7 decoding, 8 scoring, 9 efficiency + RESULTS.md,
#   10 (--preset base) pack the base model in the OWSM hub layout into --base_out.
# Every unit of work leaves a .done file; a rerun skips what is finished, and training
# resumes from its last checkpoint (--resume true).
set -euo pipefail

# Options (--name value).
stage=1
stop_stage=10
preset=demo          # tiny | demo | bench | base | whisper: conf/<preset>/{preset.sh,train_*.yaml}
base=                # pre-trained model dir (OWSM hub layout) | scratch | whisper:<name|.pt|CT2 dir>; empty: the preset's
base_out=pretrained/mini_owsm  # stage 10 of --preset base writes the packed base model here
base_init=           # --base scratch: start 6a from these weights, e.g. --preset base
                     # --base_init pretrained/mini_owsm/exp/s2t_train_mini_owsm/valid.acc.ave.pth
                     # (same pretrain data, so the same BPE and stats: more steps for the base)
nj=2                 # parallel jobs: corpus synthesis, fine-tunes and decodes side by side
ngpu=0               # passed to ESPnet (0: CPU)
datadir=data         # Kaldi dirs from stage 1, token list
dumpdir=dump         # formatted data, embeddings
expdir=exp           # models, decoding, scores, RESULTS.md inputs
results=RESULTS.md
baselines=auto       # static pruning baselines l0 + layerprune (6f-6h): true | false | auto (bench)
skip_bad_utts=false  # stage 2: leave bad utterances out (listed in dump/raw/<set>/bad_utts)
gated_models=        # gate contexts to fine-tune (6c-6e) from gated gated_spk gated_event; empty: the preset's
zeroshot=            # a Whisper base: also decode it as it is (true | false; empty: the preset's)
wer_norm=ours        # WER/CER text: ours (lower case, no punctuation) | raw (ESPnet's s2t.sh:
                     # as is) | whisper_basic | whisper_english (Whisper's normalisers; non-English
                     # sets: basic); named beside every WER in RESULTS.md
__options="stage stop_stage preset base base_out base_init nj ngpu datadir dumpdir expdir results baselines skip_bad_utts gated_models zeroshot wer_norm"

caller=$(pwd); cli_args=("$@")  # exp/commands.sh records the invocation
cd "$(dirname "$0")"
. ./path.sh
. "${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh"  # + the pipeline's options (--s2t_args, --decode_config, ...)
. scripts/parse_options.sh
pipeline_init

[ -f "conf/${preset}/preset.sh" ] || die "unknown --preset ${preset} (tiny, demo, bench, base, whisper)"
. "conf/${preset}/preset.sh"
base=${base:-${preset_base:-scratch}}
gated_models=${gated_models:-${preset_gated_models:-gated gated_spk gated_event}}
[ "${preset}" = base ] && [ "${base}" != scratch ] && die "--preset base pre-trains: --base scratch"
whisper=false; [[ "${base}" = whisper:* ]] && whisper=true  # whisper:base, whisper:<.pt|CT2 dir>
if [ "${base}" != scratch ]; then
    ${whisper} || [ -d "${base}" ] || die "--base ${base}: no such model directory (or: --base scratch, whisper:base)"
    [ -z "${base_init}" ] || die "--base_init starts a pre-training: use it with --base scratch"
    ${whisper} || base=$(cd "${base}" && pwd)
fi
# Models fine-tuned in stage 6 and evaluated in stages 7-9; --preset base trains and
# evaluates the base model alone. Options are checked before anything is written.
models="full ${gated_models}"
# A Whisper base can be decoded as it is too (zero-shot, 30 s padding as Whisper was trained:
# ~10 s an utterance on 2 cores, 4x the fine-tuned models' 7 s inputs).
zeroshot=${zeroshot:-${preset_zeroshot:-false}}
case ${zeroshot} in true) ${whisper} || die "--zeroshot true needs a Whisper base (--base whisper:...)";
    models="zeroshot ${models}" ;; false) ;; *) die "--zeroshot ${zeroshot}: true or false" ;; esac
check_models zeroshot full gated gated_spk gated_event
check_wer_norm
score_opts="--wer_norm ${wer_norm}${score_opts:+ ${score_opts}}"
[[ " ${models} " = *" gated "* ]] || die "--gated_models must include gated (the baselines' budget, the gate plots)"
[ "${baselines}" = auto ] && { baselines=false; [ "${preset}" = bench ] && baselines=true; }
add_baselines
[ "${preset}" = base ] && { models=base; baselines=false; }
conf=conf/${preset}
# The base model's config (stage 6a, and the audio length limits of stage 2): the preset's
# own (tiny), else the one that made pretrained/mini_owsm.
base_config=${conf}/train_base.yaml; [ -f "${base_config}" ] || base_config=conf/base/train_base.yaml
make_dirs datadir dumpdir expdir
begin_commands "${caller}" "$0" ${cli_args[@]+"${cli_args[@]}"}  # a block of exp/commands.sh per invocation
raw=${dumpdir}/raw
# An exp dir holds one preset's models, fine-tuned from one base model (its files' md5).
made_with="--preset ${preset} --base ${base}"
if [ "${base}" = scratch ]; then
    made_with="${made_with}${base_init:+ --base_init ${base_init}}"
elif ! ${whisper}; then
    base_md5=$(dir_md5 "${base}"); made_with="${made_with} (${base_md5:0:8})"
fi
check_expdir "${made_with}"
# The base model: pre-trained here (6a: its own BPE and stats), or a pre-trained model whose
# BPE, token list and feature statistics every fine-tune reuses (as the Europarl recipe
# does with OWSM v3.1).
if [ "${base}" = scratch ]; then
    token_dir=${datadir}/token_list/bpe_unigram${nbpe}; stats_dir=${expdir}/s2t_stats_bpe${nbpe}
    base_dir=${expdir}/base; base_model=${base_dir}/valid.acc.ave.pth
    stats_file=${stats_dir}/pretrain/train/feats_stats.npz; train_sets="pretrain train"
else
    token_dir=${expdir}/base; stats_dir=${expdir}/s2t_stats_base
    base_dir=${token_dir}; base_model=${token_dir}/model.pth
    stats_file=${token_dir}/feats_stats.npz; train_sets=train  # what the tagger and stage 5 see
fi
train_opts="--use_preprocessor true --token_type bpe --bpemodel ${token_dir}/bpe.model
    --token_list ${token_dir}/tokens.txt --use_tensorboard false --use_matplotlib false"
norm_opts="--normalize global_mvn --normalize_conf stats_file=${stats_file}"
if ${whisper}; then  # Whisper's tokenizer (preprocessor s2t_whisper in the YAMLs), raw audio in
    train_opts="--use_preprocessor true --token_type word --token_list ${token_dir}/tokens.txt
        --use_tensorboard false --use_matplotlib false"
    norm_opts=""
fi
config_prefix=${conf}/train_
langs=eng,deu,fra,ita; tasks=asr,st_eng
test_sets="test_eng_asr test_deu_asr test_fra_asr test_ita_asr test_deu_st_eng test_fra_st_eng test_ita_st_eng"
# --nj jobs side by side (fine-tunes, decodes), OMP_NUM_THREADS/nj torch threads each: on 2
# cores two 1-thread jobs beat one 2-thread job for these small models.
share_threads "${nj}"
train_nj=${nj}; decode_parallel=${nj}

if stage_in 1; then
    sizes=${corpus_sizes}
    [ "${base}" = scratch ] || sizes=$(echo "${sizes}" | sed -E 's/pretrain=[0-9]+/pretrain=0/')
    stage_start 1 "Data preparation: synthesise mini Europarl (${sizes}) -> ${datadir}"
    hash=$(inputs_hash "sizes=${sizes}" "voices=${voices_per_lang}")
    if ! is_done "${datadir}/.done" "${hash}"; then
        run local/data.sh --out "${datadir}" --sizes "${sizes}" --nj "${nj}" \
            --voices_per_lang "${voices_per_lang}"
        # shellcheck disable=SC2046
        run ${python} scripts/validate_data_dir.py --langs ${langs} --tasks ${tasks} \
            $(for d in ${train_sets} dev test; do echo "${datadir}/${d}"; done)
        mark_done "${datadir}/.done" "${hash}"
    fi
    stage_end 1
fi

if stage_in 2; then
    stage_start 2 "Format audio: 16 kHz mono check, length filter, speech_shape -> ${raw}"
    for dset in ${train_sets} dev test; do
        # shellcheck disable=SC2046
        format_set "${datadir}/${dset}" ${dset} "${base_config}" --langs ${langs} --tasks ${tasks} \
            $([ ${dset} = test ] && echo --split_by_lang_task) $([ ${dset} = dev ] && echo --eval_set) \
            $(${skip_bad_utts} && echo --skip_bad_utts)
    done
    stage_end 2
fi

# Stages 3-9 as every recipe fine-tuning a pre-trained model (pipeline.sh): 3 speaker
# (resemblyzer) and event (a small tagger trained here) embeddings, 4 the base model's token
# list (scratch: a new BPE), 5 stats, 6 training (6a the base model with --base scratch,
# 6b full, 6c-6e gated, 6f-6h baselines), 7 decoding, 8 scoring, 9 efficiency + RESULTS.md.
owsm_model=${base}; sets="train dev test"; specials="<eng> <deu> <fra> <ita> <asr> <st_eng>"
spk_model=resemblyzer; event_tagger_dir=${expdir}/event_tagger; event_model=${event_tagger_dir}/tagger.pth
[ "${preset}" = base ] && stat_sets=pretrain
first_label=b; tradeoff_plot=true
report_args=(--preset "${preset}" --title "mini Europarl S2T, preset \`${preset}\`"
             --stage_names "1=data preparation (corpus synthesis)" "4=token list")
[ "${base}" = scratch ] || report_args+=(--base_scores "${token_dir}/scores.json" --base_name "$(basename "${base}")")
owsm_stages

[ "${preset}" = base ] && run_stage 10 "Pack the base model (OWSM hub layout) -> ${base_out}" \
    run ${python} local/pack_base.py --exp "${expdir}/base" --stats "${stats_file}" --out "${base_out}"
log "Finished stages ${stage}-${stop_stage} (preset ${preset})"
