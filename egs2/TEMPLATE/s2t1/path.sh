# Environment of the recipe; sourced by run.sh (and handy in an interactive shell:
# `. ./path.sh` from this directory).
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export MAIN_ROOT
# The repository's virtual environment (make install); otherwise the current python must
# have espnet_ext installed. No PYTHONPATH: espnet_ext is an installed package.
if [ -f "${MAIN_ROOT}/.venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${MAIN_ROOT}/.venv/bin/activate"
fi
# torch threads per process (CPU runs). 1 by default: the recipe runs --nj processes side by side
# instead, and on a busy 2-core machine a 2-thread process of these small models ran up to
# 50x slower than a 1-thread one (OpenMP threads spinning against other processes).
# Set it before running to change it.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-${OMP_NUM_THREADS}}
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1

