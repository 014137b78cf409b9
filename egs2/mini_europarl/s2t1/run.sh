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
. scripts/parse_options.sh
. "${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh"

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
score_opts="--wer_norm ${wer_norm}"
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
if [ "${base}" = scratch ]; then
    check_expdir "--preset ${preset} --base scratch${base_init:+ --base_init ${base_init}}"
else
    check_expdir "--preset ${preset} --base ${base}$(${whisper} || echo " ($(dir_md5 "${base}" | cut -c1-8))")"
fi
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
        echo "${hash}" > "${datadir}/.done"
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

# Stage 3 serves the models with speaker or event context only.
if stage_in 3 && { need_context speaker || need_context event; }; then
    stage_start 3 "Context embeddings: speaker (resemblyzer), event (small tagger)"
    # shellcheck disable=SC2046
    need_context event && train_tagger "${expdir}/event_tagger" "${tagger_clips_per_event}" \
        "${tagger_opts}" $(for d in ${train_sets}; do echo "${raw}/${d}"; done)
    # only the fine-tuned models need context: train, dev and test (+ its subsets)
    for kind in speaker event; do
        model=resemblyzer; [ ${kind} = event ] && model=${expdir}/event_tagger/tagger.pth
        # shellcheck disable=SC2046
        need_context ${kind} && extract_context ${kind} "${model}" "${raw}"/{train,dev,test} \
            -- $(for t in ${test_sets}; do echo "${raw}/${t}"; done)
    done
    stage_end 3
fi

if stage_in 4; then
    if [ "${base}" = scratch ]; then
        stage_start 4 "Token list: unigram BPE (${nbpe}) with OWSM special tokens -> ${token_dir}"
        make_token_list "${token_dir}" "${nbpe}" "${raw}/pretrain" "${raw}/train"
    else
        stage_start 4 "Pre-trained base ${base}: BPE, token list, stats, weights -> ${token_dir}"
        prepare_base "${base}" "${token_dir}" "${conf}/train_gated.yaml" "<eng> <deu> <fra> <ita> <asr> <st_eng>"
    fi
    stage_end 4
fi

if stage_in 5; then
    stage_start 5 "Collect stats (shapes, feats_stats.npz for global_mvn)"
    stat_sets=${train_sets}; [ "${preset}" = base ] && stat_sets=pretrain
    for dset in ${stat_sets}; do  # side by side
        config=${conf}/train_full.yaml; [ ${dset} = pretrain ] && config=${base_config}
        [ -f "${stats_dir}/${dset}/.done" ] || stage_did_work=true
        collect_stats "${config}" "${raw}/${dset}" "${raw}/dev" "${stats_dir}/${dset}" "${token_dir}/tokens.txt" & spawned
    done
    wait_all
    stage_end 5
fi

if stage_in 6; then
    stage_start 6 "Training: 6a base (pretrain), 6b full fine-tune, 6c-6e gated fine-tunes (train), 6f-6h baselines"
    if [ "${base}" = scratch ] && [ ! -f "${expdir}/base/.done" ]; then
        stage_did_work=true
        train_model base 6a $(( threads * nj )) pretrain  # alone on the machine: all threads
    fi
    if ${zeroshot} && [ ! -f "${expdir}/zeroshot/valid.acc.ave.pth" ]; then  # 6a: Whisper as it is
        mkdir -p "${expdir}/zeroshot"
        cp "${base_dir}/config.yaml" "${expdir}/zeroshot/config.yaml"
        ln -sf "$(cd "${base_dir}" && pwd)/model.pth" "${expdir}/zeroshot/valid.acc.ave.pth"
    fi
    [ "${preset}" = base ] || train_models b
    ${baselines} && train_baselines f
    stage_end 6
fi

run_stage 7 "Decoding: beam 5, maxlenratio 0.0, every model x every test subset" decode_models
run_stage 8 "Scoring: BLEU/chrF (sacrebleu) for ST, WER/CER (jiwer) for ASR" score_models

if stage_in 9 && [ "${preset}" != base ]; then
    stage_start 9 "Efficiency (GFLOPs, wall-clock; pruned vs full) and ${results}"
    profile_models test_deu_st_eng deu st_eng "${expdir}/efficiency/test_deu_st_eng.json"
    stage_end 9
    # Plots (PNG, ${expdir}/plots): quality vs measured GFLOPs of every model, and the gated
    # models' gate patterns per language, task, speaker and event (RESULTS.md shows them).
    # shellcheck disable=SC2086
    ${python} scripts/plot_tradeoff.py --exp "${expdir}" --models ${models} \
        --test_sets ${test_sets} --out "${expdir}/plots/tradeoff.png"
    plot_gate_patterns
    # shellcheck disable=SC2046,SC2086
    ${python} scripts/report.py --exp "${expdir}" --dump "${raw}" --preset "${preset}" --title "mini Europarl S2T, preset \`${preset}\`" \
        --stage_names "1=data preparation (corpus synthesis)" "4=token list" \
        --models ${models} --test_sets ${test_sets} --out "${results}" \
        $([ "${base}" = scratch ] || echo --base_scores "${token_dir}/scores.json" --base_name "$(basename "${base}")")
    log "Wrote ${results}"
fi

[ "${preset}" = base ] && run_stage 10 "Pack the base model (OWSM hub layout) -> ${base_out}" \
    run ${python} local/pack_base.py --exp "${expdir}/base" --stats "${stats_file}" --out "${base_out}"
log "Finished stages ${stage}-${stop_stage} (preset ${preset})"
