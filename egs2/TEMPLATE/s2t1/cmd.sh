# How training jobs are launched when they need more than one process (--ngpu > 1 or
# --num_nodes > 1). run.sh then goes through ESPnet's own launcher,
#   python -m espnet2.bin.launch --cmd "${cuda_cmd} --name <job>" --ngpu N --num_nodes M ...
# which starts one DDP worker per GPU (single node) or submits one job spanning the nodes
# (slurm.pl: `srun`, one task per node, --dist_launcher slurm). A single process (CPU, or one
# GPU) runs directly in this shell.
#
# Backends (set cmd_backend here or in the environment):
#   local  local/run.pl: Kaldi's run.pl interface (--gpu N [--num_threads N] [--mem M]
#          [--name X] LOG CMD...) for one node; needs nothing but bash.
#   slurm  Kaldi's utils/slurm.pl and conf/slurm.conf (ESPnet's tools: `ln -s <espnet>/egs2/TEMPLATE/asr1/utils .`
#          in this directory); espnet2.bin.launch recognises it by its name "slurm.pl" for
#          --num_nodes > 1. Edit conf/slurm.conf for your partition names.
cmd_backend=${cmd_backend:-local}

case ${cmd_backend} in
    local)
        export train_cmd="local/run.pl"
        export cuda_cmd="local/run.pl"
        export decode_cmd="local/run.pl" ;;
    slurm)
        [ -x utils/slurm.pl ] || { echo "cmd.sh: utils/slurm.pl missing (link ESPnet's egs2/TEMPLATE/asr1/utils here)" >&2; exit 1; }
        export train_cmd="utils/slurm.pl --config conf/slurm.conf"
        export cuda_cmd="utils/slurm.pl --config conf/slurm.conf"
        export decode_cmd="utils/slurm.pl --config conf/slurm.conf" ;;
    *) echo "cmd.sh: unknown cmd_backend=${cmd_backend} (local, slurm)" >&2; exit 1 ;;
esac
