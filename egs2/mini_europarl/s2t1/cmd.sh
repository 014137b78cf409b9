# How jobs are launched. This recipe runs everything on this machine: the corpus is small and
# CPU-only machines are the target, so there is no queue (Slurm/SGE) and run.sh does not source
# this file. The shared pipeline's jobs (check_init, decoding, profiling) go through
# egs2/TEMPLATE/s2t1/local/run.pl (run here, output in the job's log); training runs in this
# shell. Parallelism is --nj (corpus synthesis, context extraction) and torch threads
# (OMP_NUM_THREADS, path.sh). --ngpu is passed unchanged to ESPnet's trainer and decoder (0: CPU).
# A cluster: egs2/TEMPLATE/s2t1 (--cmd_backend slurm).
