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
#   ./run.sh --preset demo --s2t_args "--seed 1" --inference_batch_size 4   # pipeline options
#
# Stages (egs2/TEMPLATE/pipeline.sh): 1 data prep (local/data.sh), 2 audio format, 3 context
#   embeddings, 4 token list (from the base model, or a new BPE with --base scratch), 5 stats,
#   6 training (6a base (--base scratch), 6b full fine-tune, 6c gated, 6d gated+spk,
#   6e gated+event), 7 decoding, 8 scoring, 9 efficiency + RESULTS.md,
#   10 (--preset base) pack the base model in the OWSM hub layout into --base_out.
# Every unit of work leaves a .done file; a rerun skips what is finished, and training
# resumes from its last checkpoint (--resume true). The pipeline's options given here
# (--s2t_args, --inference_batch_size, ...) win over what the preset sets.
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
datadir=data         # Kaldi dirs from stage 1, token list
dumpdir=dump         # formatted data, embeddings
expdir=exp           # models, decoding, scores, RESULTS.md inputs
baselines=auto       # static pruning baselines l0 + layerprune (6f-6h): true | false | auto (bench)
gated_models=        # gate contexts to fine-tune (6c-6e) from gated gated_spk gated_event; empty: the preset's
zeroshot=            # a Whisper base: also decode it as it is (true | false; empty: the preset's)
__options="stage stop_stage preset base base_out base_init nj datadir dumpdir expdir baselines gated_models zeroshot"

invocation="cd $(printf %q "${PWD}") &&$(printf ' %q' "$0" "$@")"  # exp/commands.sh records it
cd "$(dirname "$0")"
. ./path.sh
pipeline_args=()  # the options this file does not declare: the pipeline's
. scripts/parse_options.sh
die() { echo "$0: $*" >&2; exit 1; }

[ -f "conf/${preset}/preset.sh" ] || die "unknown --preset ${preset} (tiny, demo, bench, base, whisper)"
inference_batch_size=1
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
for m in ${gated_models}; do
    [[ " gated gated_spk gated_event " = *" ${m} "* ]] || die "--gated_models: unknown ${m} (gated gated_spk gated_event)"
done
[[ " ${gated_models} " = *" gated "* ]] || die "--gated_models must include gated (the baselines' budget, the gate plots)"
models="full ${gated_models}"
# A Whisper base can be decoded as it is too (zero-shot, 30 s padding as Whisper was trained:
# ~10 s an utterance on 2 cores, 4x the fine-tuned models' 7 s inputs).
zeroshot=${zeroshot:-${preset_zeroshot:-false}}
case ${zeroshot} in true) ${whisper} || die "--zeroshot true needs a Whisper base (--base whisper:...)";
    models="zeroshot ${models}" ;; false) ;; *) die "--zeroshot ${zeroshot}: true or false" ;; esac
[ "${baselines}" = auto ] && { baselines=false; [ "${preset}" = bench ] && baselines=true; }
[ "${preset}" = base ] && { models=base; baselines=false; }
conf=conf/${preset}
# The base model's config (stage 6a, and the audio length limits of stage 2): the preset's
# own (tiny), else the one that made pretrained/mini_owsm.
base_config=${conf}/train_base.yaml; [ -f "${base_config}" ] || base_config=conf/base/train_base.yaml
for d in datadir dumpdir expdir; do  # absolute: the paths below are made of them
    [[ ${!d} = /* ]] || printf -v "${d}" '%s' "${PWD}/${!d}"
    printf -v "${d}" '%s' "$(realpath -m -s "${!d}")"
done
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
sizes=${corpus_sizes}  # stage 1: the corpus (no pretrain split without --base scratch)
[ "${base}" = scratch ] || sizes=$(echo "${sizes}" | sed -E 's/pretrain=[0-9]+/pretrain=0/')
# An exp dir holds one preset's models, fine-tuned from one base model (the pipeline adds
# its files' md5).
made_with="--preset ${preset} --base ${base}${base_init:+ --base_init ${base_init}}"
report_args=(--preset "${preset}" --title "mini Europarl S2T, preset \`${preset}\`"
             --stage_names "1=data preparation (corpus synthesis)" "4=token list")
[ "${base}" = scratch ] || report_args+=(--base_scores "${token_dir}/scores.json" --base_name "$(basename "${base}")")
pretrain=(); [ "${preset}" = base ] && pretrain=(--stat_sets pretrain --base_out "${base_out}")  # + stage 10

# Stages 1-10 (egs2/TEMPLATE/pipeline.sh): 1 the corpus (espeak-ng), 2 a 16 kHz check, 3 speaker
# (resemblyzer) and event (a small tagger trained here) embeddings, 4 the base model's token list
# (scratch: a new BPE), 5 stats, 6 training (6a the base model with --base scratch, 6b full,
# 6c-6e gated, 6f-6h baselines), 7 decoding, 8 scoring, 9 efficiency + RESULTS.md, 10 packing.
# --nj jobs side by side (fine-tunes, decodes), OMP_NUM_THREADS/nj torch threads each: on 2
# cores two 1-thread jobs beat one 2-thread job for these small models.
"${MAIN_ROOT}/egs2/TEMPLATE/pipeline.sh" --invocation "${invocation}" --stage "${stage}" --stop_stage "${stop_stage}" \
    --datadir "${datadir}" --dumpdir "${dumpdir}" --expdir "${expdir}" --nj "${nj}" \
    --train_nj "${nj}" --decode_parallel "${nj}" --made_with "${made_with}" \
    --local_data_opts "--sizes ${sizes} --nj ${nj} --voices_per_lang ${voices_per_lang}" \
    --langs eng,deu,fra,ita --tasks asr,st_eng --audio_format 16k --length_config "${base_config}" \
    --format_opts "--langs eng,deu,fra,ita --tasks asr,st_eng" --sets "train dev test" \
    --train_sets "${train_sets}" \
    --owsm_model "${base}" --models "${models}" --baselines "${baselines}" \
    --config_prefix "${conf}/train_" --base_config "${base_config}" --base_init "${base_init}" \
    --base_dir "${base_dir}" --base_model "${base_model}" --token_dir "${token_dir}" --stats_dir "${stats_dir}" \
    --nbpe "${nbpe}" --specials "<eng> <deu> <fra> <ita> <asr> <st_eng>" \
    --train_opts "${train_opts}" --norm_opts "${norm_opts}" --first_label b \
    --spk_model resemblyzer --event_tagger_dir "${expdir}/event_tagger" --event_model "${expdir}/event_tagger/tagger.pth" \
    --tagger_clips_per_event "${tagger_clips_per_event}" --tagger_opts "${tagger_opts}" \
    --test_sets "test_eng_asr test_deu_asr test_fra_asr test_ita_asr test_deu_st_eng test_fra_st_eng test_ita_st_eng" \
    --inference_batch_size "${inference_batch_size}" --profile_num_utts "${profile_num_utts}" \
    --profile_repeats "${profile_repeats}" --profile_opts "${profile_opts}" --tradeoff_plot true \
    --report_args "$(printf '%s\n' "${report_args[@]}")" \
    "${pretrain[@]}" "${pipeline_args[@]}"
