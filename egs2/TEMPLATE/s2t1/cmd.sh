# The job backend: how the pipeline's jobs run (run.sh --cmd_backend, or cmd_backend in the
# environment). Every stage that needs a compute node goes through one of these commands,
# with run.pl's calling convention `<cmd> [--gpu N] [--mem M] [--num_threads N] [JOB=1:N] LOG CMD...`:
#   ${train_cmd}   check_init (CPU: builds the model, loads the pre-trained weights)
#   ${cuda_cmd}    training (--gpu ${ngpu}; > 1 process: espnet2.bin.launch --cmd "${cuda_cmd}"),
#                  decoding with --ngpu > 0 (--gpu 1 per job), profiling with --ngpu > 0 (--gpu 1)
#   ${decode_cmd}  decoding and profiling on CPUs (--gpu 0)
# Decoding: --inference_nj 1: one job per model running scripts/decode.py; --inference_nj N
# under Slurm: decode.py splits each set here and submits its N jobs (each one GPU) itself.
#
# Backends:
#   local  local/run.pl: runs the job on this machine, its output in LOG; --gpu, --mem are not
#          enforced. A single training process (CPU, or one GPU) runs in this shell (its epochs
#          shown as they finish). --num_nodes > 1 is refused.
#   slurm  local/slurm.pl: each job submitted with `sbatch --wait`, options mapped to sbatch
#          flags by conf/slurm.conf (edit its partitions); needs only sbatch (and srun for
#          --num_nodes > 1, which espnet2.bin.launch runs inside the job). The --mem below
#          are per job: set them for your model (OWSM v3.1 ebf: about 40G to train).
cmd_backend=${cmd_backend:-local}

case ${cmd_backend} in
    local)
        export train_cmd="local/run.pl"
        export cuda_cmd="local/run.pl"
        export decode_cmd="local/run.pl" ;;
    slurm)
        export train_cmd="local/slurm.pl --config conf/slurm.conf --mem 16G"
        export cuda_cmd="local/slurm.pl --config conf/slurm.conf --mem 64G"
        export decode_cmd="local/slurm.pl --config conf/slurm.conf --mem 16G" ;;
    *) echo "cmd.sh: unknown cmd_backend=${cmd_backend} (local, slurm)" >&2; exit 1 ;;
esac
export cmd_backend
