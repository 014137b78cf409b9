# How jobs are launched: locally, in the current shell (no queue, no run.pl). --ngpu is passed
# unchanged to ESPnet's trainer and decoder (0: CPU); parallel decoding is --nj processes.
