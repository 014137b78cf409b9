"""--cmd_backend slurm without a cluster: fake `sbatch`/`srun` on PATH record their arguments
and run the job here. The recipe's own Slurm backend (egs2/TEMPLATE/s2t1/local/slurm.pl,
conf/slurm.conf, cmd.sh) must submit every stage that needs a compute node (check_init,
training, each decoding job, profiling) with its GPU count, memory and log, and the recipe
must finish. Needs nothing from an ESPnet checkout."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import europarl_fixture as F

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "TEMPLATE" / "s2t1"
PIPELINE = ROOT / "egs2" / "TEMPLATE" / "pipeline.sh"
SLURM = f"{RECIPE}/local/slurm.pl --config {RECIPE}/conf/slurm.conf"

FAKE_SBATCH = r"""#!/usr/bin/env bash
# fake sbatch: records its arguments, runs the job script here (only --wait), exits with its status
# one write per record: jobs of an array run side by side and append at once
record=$(printf sbatch; printf ' %q' "$@"); echo "${record}" >> "${FAKE_SLURM_LOG:?}"
out=/dev/null wait=false
while [ $# -gt 1 ]; do
    case $1 in --wait) wait=true ;; --output) out=$2; shift ;; esac
    shift
done
${wait} || { echo "fake sbatch: only --wait is supported" >&2; exit 1; }
echo "Submitted batch job $$"
SLURM_JOB_ID=$$ bash "$1" > "${out}" 2>&1
"""
FAKE_SRUN = r"""#!/usr/bin/env bash
# fake srun: records its arguments, runs the command after its options here (one task)
# one write per record: jobs of an array run side by side and append at once
record=$(printf srun; printf ' %q' "$@"); echo "${record}" >> "${FAKE_SLURM_LOG:?}"
while [ $# -gt 0 ] && [[ $1 = -* ]]; do shift; done
exec "$@"
"""


def fake_slurm(tmp: Path) -> dict:
    """An environment with the fake sbatch and srun first on PATH; they record to tmp/slurm.rec."""
    bindir = tmp / "fakebin"
    bindir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    return dict(os.environ, OMP_NUM_THREADS="1", FAKE_SLURM_LOG=str(tmp / "slurm.rec"),
                PATH=os.pathsep.join([str(bindir), str(Path(sys.executable).parent), os.environ["PATH"]]))


def submissions(tmp: Path) -> dict:
    """{log path: sbatch flags} of every job, the log read from the job's script."""
    jobs = {}
    for line in (tmp / "slurm.rec").read_text().splitlines():
        words = shlex.split(line)
        if words[0] != "sbatch":
            continue
        script = tmp / words[-1]  # relative: to the directory the test ran the command in
        started = next(s for s in script.read_text().splitlines() if s.startswith('echo "# Started at'))
        log = shlex.split(started)[-1]
        assert log not in jobs, f"{log} submitted twice"
        jobs[log] = words[1:-1]
    return jobs


def flags(job: list) -> dict:
    """sbatch's '--opt value' / '-p value' / '--opt=value' flags as a dict."""
    out, i = {}, 0
    while i < len(job):
        if "=" in job[i]:
            k, v = job[i].split("=", 1); out[k] = v; i += 1
        elif i + 1 < len(job) and not job[i + 1].startswith("-"):
            out[job[i]] = job[i + 1]; i += 2
        else:
            out[job[i]] = True; i += 1
    return out


def test_slurm_pl_maps_options_runs_arrays_and_fails_with_a_job(tmp_path):
    env = fake_slurm(tmp_path)
    proc = subprocess.run(["bash", "-c", f"{SLURM} --mem 8G --gpu 2 --num_threads 3 JOB=1:3 out/x.JOB.log "
                           "bash -c 'echo job JOB; [ JOB != 2 ]'"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"{RECIPE}/local/slurm.pl: job failed, see out/x.2.log "
                                   "(sbatch's output: out/q/x.2.submit)")
    jobs = submissions(tmp_path)
    assert sorted(jobs) == ["out/x.1.log", "out/x.2.log", "out/x.3.log"]
    for j in (1, 2, 3):
        f = flags(jobs[f"out/x.{j}.log"])
        assert (f["-p"], f["--gres"], f["--mem"], f["--cpus-per-task"], f["--job-name"]) == ("gpu", "gpu:2", "8G", "3", f"x.{j}")
        assert f["--export"] == "ALL" and f["--wait"] is True
        lines = (tmp_path / f"out/x.{j}.log").read_text().splitlines()
        assert lines[2] == f"job {j}" and lines[-1].startswith(f"# Ended (code {int(j == 2)})")
    proc = subprocess.run(["bash", "-c", f"{SLURM} --bogus 1 out/y.log true"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "--bogus 1: " in proc.stderr and "has no 'option bogus=' line" in proc.stderr


FAKE_PYTHON = r"""#!/usr/bin/env bash
# stands in for python in the pipeline's commands: records them; ESPnet's launcher runs for real
{ printf python; printf ' %q' "$@"; echo; } >> "${FAKE_PY_LOG:?}"
case " $* " in *" -m espnet2.bin.launch "*|*/model_yaml.py\ *) exec "${REAL_PYTHON:?}" "$@" ;; esac
case " $* " in *check_init.py*) echo "INFO: (check_init) ok" ;; *decode.py*) echo "decoded x" ;; esac
args=("$@")
for (( i = 0; i < ${#args[@]}; i++ )); do
    if [ "${args[i]}" = --output_dir ]; then mkdir -p "${args[i+1]}"; touch "${args[i+1]}/"{valid.acc.ave.pth,config.yaml}; fi
done
"""


def test_gpu_stages_submit_their_gpus_memory_and_logs(tmp_path):
    """The pipeline with --ngpu > 0 under the Slurm backend (commands faked, jobs submitted for
    real through local/slurm.pl): 2 nodes x 2 GPUs through ESPnet's launcher and srun, 1 node x
    2 GPUs through the launcher, one GPU
    per training, decoding and profiling job, decode.py submitting its jobs itself with
    --inference_nj 2; with the local backend --num_nodes 2 is a one-line error."""
    env = fake_slurm(tmp_path)
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env.update(FAKE_PY_LOG=str(tmp_path / "py.rec"), REAL_PYTHON=sys.executable)
    exp = tmp_path / "exp"
    script = (f"set -euo pipefail; MAIN_ROOT={ROOT}; expdir={exp}; raw={tmp_path}/raw; stage=1; stop_stage=9\n"
              f'cmd_backend=slurm; train_cmd="{SLURM} --mem 16G"; cuda_cmd="{SLURM} --mem 64G"; '
              f'decode_cmd="{SLURM} --mem 16G"; python={fake}; ngpu=2; num_nodes=2\n'
              f". {PIPELINE}\n"
              f"base_model={tmp_path}/base.pth; stats_dir={tmp_path}/stats; config_prefix={ROOT}/conf/train_s2t_ebf_; train_opts=''; split_options\n"
              "profile_num_utts=2; profile_repeats=1\n"
              "train_model gated 6b 1\n"
              "num_nodes=1; train_model gated_lang 6c 1\n"
              "ngpu=1; train_model full 6a 1\n"
              'models="full gated"; test_sets="test_deu_asr"; decode_models\n'
              "inference_nj=2; decode_models\n"
              f"profile_models test_deu_st_eng deu st_eng {exp}/efficiency/test_deu_st_eng.json\n")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = {k: flags(v) for k, v in submissions(tmp_path).items()}
    want = {  # log: (partition, gres, memory, nodes)
        f"{exp}/gated/check_init.log": ("cpu", None, "16G", None),
        f"{exp}/full/check_init.log": ("cpu", None, "16G", None),
        f"{exp}/gated/train.log": ("gpu", "gpu:2", "64G", "2"),
        f"{exp}/gated_lang/check_init.log": ("cpu", None, "16G", None),
        f"{exp}/gated_lang/train.log": ("gpu", "gpu:2", "64G", None),
        f"{exp}/full/train.log": ("gpu", "gpu:1", "64G", None),
        f"{exp}/full/decode.log": ("gpu", "gpu:1", "64G", None),
        f"{exp}/gated/decode.log": ("gpu", "gpu:1", "64G", None),
        f"{exp}/efficiency/test_deu_st_eng.log": ("gpu", "gpu:1", "64G", None),
    }
    assert {k: (f["-p"], f.get("--gres"), f["--mem"], f.get("--nodes")) for k, f in jobs.items()} == want
    rec = (tmp_path / "slurm.rec").read_text()
    # ESPnet's launcher ran the 2-node training with srun inside the job
    srun = [shlex.split(s) for s in rec.splitlines() if s.startswith("srun ")]
    assert len(srun) == 1 and srun[0][1] == "--export=ALL"
    assert "--dist_launcher" in srun[0] and srun[0][srun[0].index("--ngpu") + 1] == "2"
    py = (tmp_path / "py.rec").read_text().splitlines()
    train = [c for c in py if "espnet_ext.bin.s2t_train" in c and "espnet2.bin.launch" not in c]
    assert len(train) == 3 and "--ngpu 1" in train[2]
    assert train[1].endswith("--ngpu 2 --multiprocessing_distributed True")  # 1 node x 2 GPUs: one job, DDP inside
    # --inference_nj 2: decode.py runs here and submits its jobs through ${cuda_cmd} (one GPU each)
    dec = [shlex.split(c) for c in py if "decode.py" in c]
    assert len(dec) == 4
    for c in dec[:2]:
        assert "--cmd" not in c and c[c.index("--ngpu") + 1] == "1"
    for c in dec[2:]:
        assert c[c.index("--cmd") + 1] == f"{SLURM} --mem 64G --num_threads 1"
        assert c[c.index("--nj") + 1] == "2" and c[c.index("--ngpu") + 1] == "1"
    prof = [c for c in py if "espnet_ext.bin.profile" in c]
    assert len(prof) == 1 and "--device cuda" in prof[0]

    proc = subprocess.run(["bash", "-c", f"set -euo pipefail; MAIN_ROOT={ROOT}; num_nodes=2; . {PIPELINE}; pipeline_init"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == "--num_nodes 2 needs a cluster: --cmd_backend slurm (cmd.sh); local runs one node\n"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_recipe_runs_every_stage_through_slurm(tmp_path):
    """egs2/TEMPLATE/s2t1/run.sh --cmd_backend slurm (CPU, conf/tiny, --inference_nj 2) on the
    template recipe's fixture corpus: every job submitted with its memory and log, RESULTS.md written."""
    from test_template_recipe import SETS, make_corpus

    texts = make_corpus(tmp_path / "corpus", {"train": 3, "dev": 1, "test": 1})
    F.make_owsm_dir(tmp_path / "owsm", texts, vocab_size=80)
    env = fake_slurm(tmp_path)
    exp = tmp_path / "exp"
    cmd = ["./run.sh", "--data_root", str(tmp_path / "corpus"), "--owsm_model", str(tmp_path / "owsm"),
           "--conf_dir", "conf/tiny", "--datadir", str(tmp_path / "data"), "--dumpdir", str(tmp_path / "dump"),
           "--expdir", str(exp), "--results", str(tmp_path / "RESULTS.md"), "--nj", "2",
           "--train_nj", "2", "--profile_num_utts", "2", "--profile_repeats", "1",
           "--profile_opts", "--no_memory", "--cmd_backend", "slurm", "--inference_nj", "2"]
    proc = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "# RESULTS: TEMPLATE S2T" in (tmp_path / "RESULTS.md").read_text()
    jobs = {k: flags(v) for k, v in submissions(tmp_path).items()}
    want = {}
    for m in ("full", "gated"):
        want[f"{exp}/{m}/check_init.log"] = ("cpu", "16G")
        want[f"{exp}/{m}/train.log"] = ("cpu", "64G")
        for s in SETS:  # test_eng_asr has one utterance: one job
            for j in ((1,) if s == "test_eng_asr" else (1, 2)):
                want[f"{exp}/{m}/decode_{s}/logdir/decode.{j}.log"] = ("cpu", "16G")
    want[f"{exp}/efficiency/test_deu_st_eng.log"] = ("cpu", "16G")
    assert {k: (f["-p"], f["--mem"]) for k, f in jobs.items()} == want
    assert all("--gres" not in f for f in jobs.values())  # --ngpu 0: no GPU asked for
    for log in want:  # each job wrote its log, started from the fake sbatch (a Slurm job id)
        text = Path(log).read_text()
        assert "Slurm job " in text and "# Ended (code 0)" in text, log
    assert "epoch results" in (exp / "gated" / "train.log").read_text()
    assert "tensors loaded" in proc.stdout and "  gated 1epoch results" in proc.stdout
