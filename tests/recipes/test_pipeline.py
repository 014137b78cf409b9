"""egs2/TEMPLATE/pipeline.sh, function by function, in bash (fast): what every recipe's
stages are built from. The end-to-end runs are the recipe tests."""

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "egs2" / "TEMPLATE" / "pipeline.sh"
EP_CONF = ROOT / "egs2" / "europarl_st" / "s2t1" / "conf"  # a conf set (links to conf/, conf/tuning/)
CONF_SETS = {  # every recipe conf set: its prefix
    **{d: "train_s2t_ebf_" for d in (EP_CONF, EP_CONF / "tiny", ROOT / "conf", ROOT / "egs2/TEMPLATE/s2t1/conf")},
    **{ROOT / "egs2/mini_europarl/s2t1/conf" / p: "train_" for p in ("tiny", "demo", "bench", "whisper")}}
VARIANTS = ("gated_lang", "gated_frame", "gated_spk", "gated_event")


def bash(script: str, tmp: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``script`` after sourcing the pipeline, as run.sh does (set -euo pipefail)."""
    prelude = (f"set -euo pipefail; MAIN_ROOT={ROOT}; expdir={tmp}; raw={tmp}/raw; python={sys.executable}; "
               f"config_prefix={EP_CONF}/train_s2t_ebf_; stage=1; stop_stage=9; . {PIPELINE}\n")
    proc = subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, cwd=tmp)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def embeddings(raw: Path, **dims) -> None:
    """Stage 3's output in <raw>/train: <kind>_embed.scp (one npy) of each size given."""
    (raw / "train").mkdir(parents=True, exist_ok=True)
    for kind, dim in dims.items():
        np.save(raw / "train" / f"{kind}.npy", np.zeros(dim, dtype=np.float32))
        (raw / "train" / f"{kind}_embed.scp").write_text(f"utt1 {raw}/train/{kind}.npy\n")


def test_models_are_checked_with_one_line_errors(tmp_path):
    # the known models: those with a YAML in the conf set (${config_prefix}<model>.yaml)
    assert bash('models="full gated_spk l0"; check_models; echo ok', tmp_path).stdout == "ok\n"
    assert bash('models="full zeroshot"; check_models zeroshot full; echo ok', tmp_path).stdout == "ok\n"
    assert bash('models="base gated"; reference=base; check_models base gated; echo ok', tmp_path).stdout == "ok\n"
    for models, allowed, error in (
            ("full gated_nope", "", f"--models: unknown gated_nope (no {EP_CONF}/train_s2t_ebf_gated_nope.yaml)"),
            ("full gated_spk", "full gated", "--models: unknown gated_spk (full gated)"),
            ("gated", "", "--models must include full (--reference: the model the others are compared with)")):
        proc = bash(f'models="{models}"; check_models {allowed}', tmp_path, check=False)
        assert proc.returncode == 1 and proc.stderr.strip().endswith(error), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    out = bash('models="full gated"; baselines=true; add_baselines; echo "$models"', tmp_path).stdout
    assert out == "full gated l0 layerprune\n"
    for models, baselines, error in (("full gated_spk", "true", "--baselines true needs gated in --models"),
                                     ("full gated", "yes", "--baselines must be true or false, got yes")):
        proc = bash(f'models="{models}"; baselines={baselines}; add_baselines', tmp_path, check=False)
        assert proc.returncode == 1 and error in proc.stderr


def test_gate_context_overrides_and_configs_per_model(tmp_path):
    # every model trains from its YAML in the conf set: a full config (--config), or a variant
    # of gated (--config: the gated YAML, its keys as overrides); the npy inputs follow from
    # the gate context, a null embedding size from stage 3's embeddings
    embeddings(tmp_path / "raw", spk=256, event=48)
    (tmp_path / "base.yaml").write_text("model: espnet\n")
    out = bash('base_model=b.pth; base_config=base.yaml; for m in base full gated gated_lang gated_frame '
               'gated_spk gated_event l0_train layerprune; do echo "$m|$(model_config $m)|'
               '$(context_opts $m | tr "\\n" " ")|$(context_names $m | tr "\\n" " ")|$(model_init $m)"; done',
               tmp_path).stdout.splitlines()
    c, init = f"{EP_CONF}/train_s2t_ebf_", "--init_param b.pth"
    spk = "--encoder_conf gate_context=[lang,task,spk] --encoder_conf spk_embed_dim=256 "
    event = "--encoder_conf gate_context=[lang,task,event] --encoder_conf event_embed_dim=48 "
    assert out == [
        "base|base.yaml|||",  # no --base_init: random
        f"full|{c}full.yaml|||{init}", f"gated|{c}gated.yaml|||{init}",
        f"gated_lang|{c}gated.yaml|--encoder_conf gate_context=[lang] --decoder_conf gate_context=[lang] ||{init}",
        f"gated_frame|{c}gated.yaml|--encoder_conf gate_pooling=attention "
        f"--decoder_conf gate_pooling=attention ||{init}",
        f"gated_spk|{c}gated.yaml|{spk}{spk.replace('encoder', 'decoder')}|spk_embed |{init}",
        f"gated_event|{c}gated.yaml|{event}{event.replace('encoder', 'decoder')}|event_embed |{init}",
        f"l0_train|{c}l0.yaml|||{init}", f"layerprune|{c}layerprune.yaml|||{init}"]
    assert bash("base_init=w.pth; base_model=b.pth; model_init base; model_init gated_spk",
                tmp_path).stdout == "--init_param w.pth\n--init_param b.pth\n"
    # each conf set has the variants, one file each (conf/tuning/), of its own gated YAML
    for d, prefix in CONF_SETS.items():
        for m in VARIANTS:
            y = d / f"{prefix}{m}.yaml"
            assert y.resolve() == ROOT / "conf" / "tuning" / f"train_{m}.yaml", y
        assert (d / f"{prefix}gated.yaml").is_file() and (d / f"{prefix}full.yaml").is_file(), d
    # europarl_st's --gated_config: the gated model's YAML, so its variants' too
    (tmp_path / "paper.yaml").write_text("encoder: e_branchformer_token_condition\n")
    out = bash("gated_config=paper.yaml; models='full gated gated_spk'; check_options; "
               "for m in gated gated_spk full; do model_config $m; done", tmp_path).stdout.splitlines()
    assert out == ["paper.yaml", "paper.yaml", f"{c}full.yaml"]


def test_a_new_variant_yaml_is_picked_up_and_its_errors_are_one_line(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    for m in ("full", "gated"):
        (conf / f"train_{m}.yaml").symlink_to(EP_CONF / "tiny" / f"train_s2t_ebf_{m}.yaml")
    wide = conf / "train_gated_wide.yaml"
    wide.write_text("variant_of: gated\nencoder_conf:\n    context_dim: 16\n    gate_context: [lang, spk]\n"
                    "    spk_embed_dim: 256\nsparsity_end: 0.5\ngate_lr: 1.0e-5\n")
    embeddings(tmp_path / "raw", spk=256)
    fake = tmp_path / "python"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    (tmp_path / "gated_wide").mkdir()
    (tmp_path / "gated_wide" / "valid.acc.ave.pth").write_text("")  # what the fake training leaves
    setup = f"config_prefix={conf}/train_; ngpu=0; base_model=b.pth; stats_dir=s; split_options; "
    out = bash(setup + 'models="full gated gated_wide"; check_models; need_context speaker && echo spk; '
               f"need_context event || echo no_event; python={fake}; train_model gated_wide 6d 1", tmp_path).stdout
    assert out.startswith("spk\nno_event\n")
    train = [c for c in (tmp_path / "commands.sh").read_text().splitlines() if "espnet_ext.bin.s2t_train" in c]
    assert len(train) == 1
    train = " ".join(shlex.split(train[0]))  # as recorded: quoted
    assert (f"--config {conf}/train_gated.yaml --init_param b.pth --encoder_conf context_dim=16 "
            "--encoder_conf gate_context=[lang,spk] --encoder_conf spk_embed_dim=256 --sparsity_end 0.5 "
            "--gate_lr 1.0e-05 --allow_variable_data_keys true") in train  # 1e-05: a YAML string
    assert "--decoder_conf" not in train  # it reads [lang, task]: no speaker size
    assert f"--train_data_path_and_name_and_type {tmp_path}/raw/train/spk_embed.scp,spk_embed,npy" in train
    # one line each: a size that is not the embeddings', a variant of a model with no YAML, a
    # model with no YAML
    wide.write_text("variant_of: gated\nencoder_conf:\n    gate_context: [lang, spk]\n    spk_embed_dim: 192\n")
    broken = conf / "train_gated_typo.yaml"
    broken.write_text("variant_of: gatd\n")
    (conf / "train_gated_loop.yaml").write_text("variant_of: gated_loop\n")
    (conf / "train_gated_wider.yaml").write_text("variant_of: gated_wide\nsparsity_end: 0.6\n")
    for script, error in (
            ("context_opts gated_wide", f"model_yaml: error: {wide}: encoder_conf.spk_embed_dim is 192, but the "
             f"spk embeddings in {tmp_path}/raw/train have 256 (stage 3): set it to 256, or null"),
            ("train_model gated_wide 6d 1", "set it to 256, or null"),
            ('models="full gated_typo"; check_models', f"no {conf}/train_gatd.yaml: the YAML of model gatd"),
            ('models="full gated_loop"; check_models', f"{conf}/train_gated_loop.yaml: variant_of gated_loop, "
             "itself a variant: name the model gated_loop varies"),
            ('models="full gated_wider"; check_models', f"{conf}/train_gated_wider.yaml: variant_of gated_wide, "
             "itself a variant: name the model gated_wide varies"),
            ('models="full gated_nope"; check_models',
             f"--models: unknown gated_nope (no {conf}/train_gated_nope.yaml)")):
        proc = bash(setup + script + "; echo unreachable", tmp_path, check=False)
        assert proc.returncode == 1 and "unreachable" not in proc.stdout, script
        assert len(proc.stderr.strip().splitlines()) == 1 and error in proc.stderr, proc.stderr


def test_data_opts_are_the_s2t_tables_shapes_and_npy_inputs(tmp_path):
    out = bash("data_opts train /d/train /s/train spk_embed", tmp_path).stdout.split("\n")
    assert out[:4] == [f"--train_data_path_and_name_and_type /d/train/{f}" for f in
                       ("wav.scp,speech,sound", "text.prev,text_prev,text", "text.ctc,text_ctc,text",
                        "text,text,text")]
    assert out[4:8] == [f"--train_shape_file /s/train/{f}" for f in
                        ("speech_shape", "text_shape.bpe", "text_prev_shape.bpe", "text_ctc_shape.bpe")]
    assert out[8] == "--train_data_path_and_name_and_type /d/train/spk_embed.scp,spk_embed,npy"
    # collect_stats: no shape dir yet, the key list is the data dir's speech_shape
    assert bash("data_opts valid /d/dev", tmp_path).stdout.split("\n")[4] == "--valid_shape_file /d/dev/speech_shape"
    # --task asr (asr_train, as asr.sh): wav.scp and text; collect_stats keys on wav.scp
    assert bash("task=asr; data_opts train /d/train /s/train", tmp_path).stdout.split("\n")[:4] == [
        "--train_data_path_and_name_and_type /d/train/wav.scp,speech,sound",
        "--train_data_path_and_name_and_type /d/train/text,text,text",
        "--train_shape_file /s/train/speech_shape", "--train_shape_file /s/train/text_shape.bpe"]
    assert bash("task=asr; data_opts valid /d/dev", tmp_path).stdout.split("\n")[2] == "--valid_shape_file /d/dev/wav.scp"


def test_input_hashes_redo_a_unit_when_an_input_changes(tmp_path):
    (tmp_path / "in.txt").write_text("a\n")
    script = ('h=$(inputs_hash opt=1 in.txt); is_done .done "$h" && echo skip || { echo work; echo "$h" > .done; }')
    assert bash(script, tmp_path).stdout == "work\n"
    assert bash(script, tmp_path).stdout == "skip\n"
    (tmp_path / "in.txt").write_text("b\n")
    assert bash(script, tmp_path).stdout == "work\n"
    assert bash(script.replace("opt=1", "opt=2"), tmp_path).stdout == "work\n"


def test_stages_run_in_range_record_their_commands_and_times(tmp_path):
    out = bash('stage=7; stop_stage=8; run_stage 6 "six" run echo 6; run_stage 7 "seven" run echo 7; '
               'run_stage 8 "eight" true; echo "$(next_letter a)$(next_letter f)"', tmp_path).stdout
    assert "Stage 6" not in out and "Stage 7: seven" in out and "\n7\n" in out
    assert "Stage 7 done in" in out and "Stage 8: nothing to do (finished before)" in out
    assert out.endswith("bg\n")
    assert (tmp_path / "commands.sh").read_text() == "echo 7\n"
    assert (tmp_path / "stage_times" / "7").is_file() and not (tmp_path / "stage_times" / "8").exists()
    # a failing background job fails the stage
    proc = bash("(exit 3) & spawned; wait_all; echo unreachable", tmp_path, check=False)
    assert proc.returncode == 1 and "a background job failed" in proc.stderr
    assert "unreachable" not in proc.stdout


def test_commands_sh_has_one_block_per_invocation_the_last_marked(tmp_path):
    (tmp_path / "commands.sh").write_text("echo old\n")  # recorded before invocations had blocks
    bash(r"begin_commands 'cd /a && ./run.sh --stage 7 --data_root my\ dir'; run echo one; exit 3", tmp_path, check=False)
    bash("begin_commands 'cd /b && ./run.sh'; run echo two", tmp_path)
    lines = (tmp_path / "commands.sh").read_text().splitlines()
    assert lines[:2] == ["# ===== earlier runs (before run.sh recorded its invocations)", "echo old"]
    assert lines[2].startswith("# ===== run.sh invocation 1, ")
    assert lines[2].endswith(r": cd /a && ./run.sh --stage 7 --data_root my\ dir")
    assert lines[3:5] == ["echo one", "# ===== end of invocation 1: failed (exit status 3)"]
    assert lines[5].startswith("# ===== run.sh invocation 2 (last run), ") and lines[5].endswith("cd /b && ./run.sh")
    assert lines[6:] == ["echo two", "# ===== end of invocation 2: finished"]


def test_command_line_paths_are_the_callers(tmp_path):
    """scripts/parse_options.sh with __caller: path options made absolute against the caller's
    dir, a name that is no path there (hub tag, auto) kept."""
    (tmp_path / "m").mkdir()
    parse = ROOT / "scripts" / "parse_options.sh"
    out = bash("data_root=''; expdir=''; owsm_model=''; conf_dir=''; spk_model=''; event_model=beats:x.pt; "
               "set -- --data_root d --expdir=../e --owsm_model m --conf_dir auto --spk_model ecapa:m --stage 2; "
               "__caller=/c/w; __paths='data_root expdir'; __maybe_paths='owsm_model conf_dir spk_model event_model'; "
               f". {parse}; echo $data_root $expdir $owsm_model $conf_dir $spk_model $event_model $stage; "
               f"set -- --owsm_model m --spk_model ecapa:m; __caller={tmp_path}; . {parse}; "
               "echo $owsm_model $spk_model", tmp_path).stdout.splitlines()
    # a name that is no path here stays (hub tag, auto); --event_model was not given
    assert out[0] == "/c/w/d /c/e m auto ecapa:m beats:x.pt 2"
    assert out[1] == f"{tmp_path}/m ecapa:{tmp_path}/m"


def test_undeclared_options_go_to_the_pipeline_the_pipeline_rejects_unknown_ones(tmp_path):
    """A run.sh that declares pipeline_args passes the options it does not declare on, in
    their order (the last of an option wins in the pipeline); without it they are errors."""
    parse = ROOT / "scripts" / "parse_options.sh"
    out = bash("stage=1; __options=stage; pipeline_args=(); "
               "set -- --stage 3 --s2t_args '--seed 1' --inference-batch-size=4; "
               f". {parse}; echo $stage; printf '[%s]' \"${{pipeline_args[@]}}\"", tmp_path).stdout
    assert out == "3\n[--s2t_args][--seed 1][--inference_batch_size][4]"
    proc = bash(f"unset s2t_args; __options=stage; set -- --s2t_args x; . {parse}", tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().endswith("unknown option --s2t_args")
    (tmp_path / "path.sh").write_text(f"MAIN_ROOT={ROOT}\n")
    proc = subprocess.run([str(PIPELINE), "--stage", "9", "--bogus", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr == f"{PIPELINE}: unknown option --bogus\n"
    assert not (tmp_path / "exp").exists()
    proc = subprocess.run([str(PIPELINE), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "  --inference_batch_size 1  # utterances per decoding pass\n" in proc.stdout


def test_wait_all_waits_on_the_pids_it_started(tmp_path):
    # a job that failed and was reaped before wait_all: `jobs -p` no longer lists it
    # (this returned 0 when wait_all waited on $(jobs -p)); its recorded PID still fails
    proc = bash('(exit 3) & spawned; sleep 0.5; echo "listed: [$(jobs -p)]"; wait_all; echo unreachable',
                tmp_path, check=False)
    assert "listed: []" in proc.stdout  # the race, made certain
    assert proc.returncode == 1 and "a background job failed" in proc.stderr
    assert "unreachable" not in proc.stdout
    # finished and running jobs, recorded or not, are all waited for; the record is cleared
    out = bash("(exit 0) & spawned; sleep 0.3; (sleep 0.5; touch a) & spawned; (sleep 0.5; touch b) & "
               'wait_all; ls a b; echo "left: ${#bg_pids[@]}"; wait_all; echo ok', tmp_path).stdout
    assert out == "a\nb\nleft: 0\nok\n"
    # several failures among successes: still one failure
    proc = bash("for i in 1 2 3; do (exit $(( i % 2 ))) & spawned; done; sleep 0.3; wait_all",
                tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.count("a background job failed") == 1


def test_dirs_made_absolute_and_threads_shared(tmp_path):
    out = bash("d=x/y; e=z; make_dirs d e; echo \"$d $e\"; "
               "OMP_NUM_THREADS=4; share_threads 2; echo $threads; share_threads 8; echo $threads",
               tmp_path).stdout.split("\n")
    assert out[0] == f"{tmp_path}/x/y {tmp_path}/z" and (tmp_path / "x" / "y").is_dir()
    assert out[1:3] == ["2", "1"]
    proc = bash('models="full gated_event"; event_model=""; check_event_model', tmp_path, check=False)
    assert proc.returncode == 1 and "gated_event needs --event_model" in proc.stderr
    assert bash('models="full gated_event"; event_model=tagger:t.pt; check_event_model; echo ok',
                tmp_path).stdout == "ok\n"


def test_one_up_to_date_check_bare_or_with_the_inputs_hash(tmp_path):
    out = bash("is_done a/.done || echo todo; mkdir a; mark_done a/.done; is_done a/.done && echo done; "
               "is_done a/.done h1 || echo 'todo h1'; mark_done a/.done h1; is_done a/.done h1 && echo 'done h1'; "
               "is_done a/.done h2 || echo 'todo h2'", tmp_path).stdout
    assert out == "todo\ndone\ntodo h1\ndone h1\ntodo h2\n"


def test_a_failing_command_substitution_stops_training(tmp_path):
    # gated_spk's embedding size comes from stage 3's embeddings: none, so train_model fails
    # before running anything (the failure inside $(context_opts) used to be dropped)
    proc = bash("ngpu=0; base_model=b.pth; stats_dir=s; "
                "train_model gated_spk 6c 1; echo unreachable", tmp_path, check=False)
    assert proc.returncode != 0 and "unreachable" not in proc.stdout
    assert "no spk embeddings in" in proc.stderr
    assert not (tmp_path / "commands.sh").exists()


def test_baselines_train_with_what_the_run_computed(tmp_path):
    # l0: the gated model's measured FLOPs target; layerprune: the layers kept and their weights
    # (its init instead of the pre-trained model's); both after their YAMLs' options
    fake = tmp_path / "python"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    (tmp_path / "baseline_target").write_text("0.84\n")
    init = tmp_path / "layerprune_init"
    init.mkdir()
    (init / ".done").write_text("")
    (tmp_path / "l0").mkdir()
    (tmp_path / "l0" / ".done").write_text("")
    script = (f"python={fake}; ngpu=0; base_model=b.pth; stats_dir=s; threads=1; split_options; "
              "train_baselines f; echo finished")
    proc = bash(script, tmp_path, check=False)  # no train_opts: nothing trains
    assert proc.returncode == 1 and "finished" not in proc.stdout and not (tmp_path / "commands.sh").exists()
    (init / "train_opts").write_text("--encoder_conf num_blocks=1 --decoder_conf num_blocks=2\n")
    for m in ("l0_train", "layerprune"):
        (tmp_path / m).mkdir()
        (tmp_path / m / "valid.acc.ave.pth").write_text("")
    assert bash(script, tmp_path).stdout.endswith("finished\n")
    train = [" ".join(shlex.split(c)) for c in (tmp_path / "commands.sh").read_text().splitlines()
             if "espnet_ext.bin.s2t_train" in c]
    train = {c.split("--output_dir ")[1].split()[0]: c for c in train}
    c = f"--config {EP_CONF}/train_s2t_ebf_"
    assert f"{c}l0.yaml --init_param b.pth --model_conf target_flops=0.84 --output_dir" in train[f"{tmp_path}/l0_train"]
    assert (f"{c}layerprune.yaml --init_param {init}/model.pth --encoder_conf num_blocks=1 --decoder_conf "
            "num_blocks=2 --output_dir") in train[f"{tmp_path}/layerprune"]


FAKE = f"""#!/usr/bin/env bash
case "$1" in *model_yaml.py) exec {sys.executable} "$@" ;; esac  # what a model's YAML says
echo "$*" >> "$(dirname "$0")/py.rec"
echo "INFO: (check_init) ok"; echo "decoded 1 utterances"
"""


def test_s2t_args_and_inference_args_come_last_and_every_command_is_recorded(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "valid.acc.ave.pth").write_text("")
    (tmp_path / "full" / "config.yaml").write_text(yaml.safe_dump({"encoder": "e_branchformer"}))
    bash(f"python={fake}; ngpu=0; base_model=b.pth; stats_dir=s; "
         "s2t_args='--seed 7 --max_epoch 2'; inference_args='--beam_size 10'; split_options; "
         'models=full; test_sets=test_deu_asr; train_model full 6a 1; decode_models', tmp_path)
    rec = (tmp_path / "commands.sh").read_text().splitlines()
    train = [c for c in rec if "espnet_ext.bin.s2t_train" in c]
    assert len(train) == 1 and train[0].endswith("--ngpu 0 --seed 7 --max_epoch 2")
    assert [c for c in rec if "check_init.py" in c][0].endswith("--seed 7 --max_epoch 2")
    assert [c for c in rec if "train_seconds.py" in c]  # recorded too
    decode = [c for c in rec if "decode.py" in c]
    assert len(decode) == 1 and decode[0].endswith("--src_kv_cache false --beam_size 10")


def test_run_sh_passes_pipeline_options_on_and_the_users_win_over_the_presets(tmp_path):
    """egs2/mini_europarl/s2t1/run.sh --preset whisper (its preset.sh: inference_batch_size=8),
    stage 7 with the commands faked: the pipeline decodes with the preset's batch size, with the
    one given on run.sh's command line instead, and --inference_args last; an option neither
    run.sh nor the pipeline knows is a one-line error before anything is written."""
    recipe = ROOT / "egs2" / "mini_europarl" / "s2t1"
    fake = tmp_path / "python"
    fake.write_text(FAKE)
    fake.chmod(0o755)

    def decode(*extra: str) -> list[str]:
        exp = tmp_path / f"exp{len(extra)}"
        for m in ("zeroshot", "full", "gated"):  # trained (stage 6): config.yaml names the npy inputs
            (exp / m).mkdir(parents=True)
            (exp / m / "config.yaml").write_text(f"config: conf/whisper/train_{m}.yaml\n"
                                                 "encoder: whisper_token_condition\n")
        proc = subprocess.run(["./run.sh", "--preset", "whisper", "--stage", "7", "--stop_stage", "7",
                               "--expdir", str(exp), "--dumpdir", str(tmp_path / "dump"),
                               "--python", str(fake), *extra], cwd=recipe, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return [c for c in (exp / "commands.sh").read_text().splitlines() if "decode.py" in c]

    cmds = decode()
    assert len(cmds) == 3 and all("--batch_size 8 " in c for c in cmds)  # zeroshot, full, gated
    cmds = decode("--inference_batch_size", "4", "--inference_args", "--beam_size 3")
    assert len(cmds) == 3 and all("--batch_size 4 " in c and c.endswith("--src_kv_cache false --beam_size 3")
                                  for c in cmds)
    proc = subprocess.run(["./run.sh", "--preset", "tiny", "--expdir", str(tmp_path / "nothing"), "--bogus", "1"],
                          cwd=recipe, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == f"{ROOT}/egs2/TEMPLATE/pipeline.sh: unknown option --bogus\n"
    assert not (tmp_path / "nothing").exists()


def test_task_asr_runs_the_asr_tools_from_the_same_stages(tmp_path):
    """--task asr (LibriSpeech): the same train_model/decode_models/score_models with ESPnet's
    ASR task: asr_train, check_init --task asr for the models from the base weights (gated and its
    variant gated_local, by their YAML's model class; not base), the ASR decoder with the search of
    the decoding YAML (no S2T beam 5), every set scored as ASR."""
    ls_conf = ROOT / "egs2/librispeech_100/asr1/conf/tiny"
    fake = tmp_path / "python"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    for m in ("base", "gated", "gated_local"):
        (tmp_path / m).mkdir()
        (tmp_path / m / "valid.acc.ave.pth").write_text("")
        (tmp_path / m / "config.yaml").write_text(yaml.safe_dump({"model": "espnet"}))
    bash(f"python={fake}; ngpu=0; task=asr; base_model={tmp_path}/base/valid.acc.ave.pth; stats_dir=s; "
         f"config_prefix={ls_conf}/train_asr_transformer_; base_config={ls_conf}/train_asr_transformer.yaml; "
         "reference=base; finetune_set=train_clean_100; split_options; "
         'models="base gated gated_local"; check_models; test_sets="test_clean test_other"; '
         "train_model base 6a 1 train_clean_100; train_model gated 6b 1; train_model gated_local 6c 1; "
         "decode_models; score_models", tmp_path)
    rec = [" ".join(shlex.split(c)) for c in (tmp_path / "commands.sh").read_text().splitlines()]
    train = {c.split("--output_dir ")[1].split()[0]: c for c in rec if "-m espnet_ext.bin.asr_train" in c}
    assert sorted(train) == [str(tmp_path / m) for m in ("base", "gated", "gated_local")]
    assert not [c for c in rec if "s2t_train" in c]
    assert (f"--config {ls_conf}/train_asr_transformer_gated.yaml --init_param {tmp_path}/base/valid.acc.ave.pth "
            "--encoder_conf gate_predictor=local") in train[str(tmp_path / "gated_local")]
    assert f"--train_data_path_and_name_and_type {tmp_path}/raw/train_clean_100/text,text,text" in train[str(tmp_path / "gated")]
    checks = [c for c in rec if "check_init.py" in c]
    assert len(checks) == 2 and all(" --task asr --init " in c for c in checks)
    assert [c.split("--output_dir ")[1].split()[0] for c in checks] == [str(tmp_path / m) for m in ("gated", "gated_local")]
    decode = [c for c in rec if "decode.py" in c]
    assert len(decode) == 3 and all(" --task asr " in c for c in decode)
    assert decode[0].endswith("test_clean test_other -- --config conf/decode_s2t.yaml --ngpu 0")  # the YAML's search
    score = [c for c in rec if "score.py" in c]
    assert len(score) == 3 and all(" --task asr " in c and c.endswith(" test_clean test_other") for c in score)
