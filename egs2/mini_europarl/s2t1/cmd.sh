# How jobs are launched. This recipe runs everything locally, in the current shell: the
# corpus is small and CPU-only machines are the target, so there is no queue (Slurm/SGE)
# and no `run.pl`. Parallelism is --nj (corpus synthesis, context extraction) and torch
# threads (OMP_NUM_THREADS, path.sh). --ngpu is passed unchanged to ESPnet's trainer and
# decoder (0: CPU).
