#!/usr/bin/env bash
# The end-to-end GPU check (issue 21): every path a GPU user takes, then the timing table. Exits non-zero when
# any step fails. Budget: at most 5 minutes on one H200 (hard limits: e2e 210 s, timings 75 s).
#
#  1. benchmarks/gpu_check_e2e.py: the README default run (2 epochs, with its test); recommend and --resume
#     from that GPU checkpoint with CUDA hidden; run_compare with BPR, LightGCN, LATTICE and MICRO for 2 epochs
#     each through the final test and the per-user files; a 2-trial tuning; deterministic reruns bit-equal;
#  2. benchmarks/gpu_check.py: seconds per Baby epoch of MICRO (contrastive_mode full / sampled x fp32 / bf16),
#     peak GPU memory, and the contrastive loss alone.
#
# On a machine with network:  pip install -e . into a CUDA environment, then  benchmarks/gpu_check.sh
# On a GPU machine without network, where only torch with CUDA (and numpy, pandas, scipy) is installed:
#   here:  benchmarks/gpu_wheels.sh            # the other packages as wheel files, into .whl/ (4 MB)
#          cp -r ../shared/data/baby .baby      # Baby's source (17 MB), beside the checkout that travels
#   there: benchmarks/gpu_check.sh .baby        # installs .whl/*.whl and the checkout (--no-index --no-deps)
#
#   benchmarks/gpu_check.sh [BABY_SOURCE_DIR]   # PYTHON=... chooses the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/baby}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ -d .whl ]; then  # offline: the carried wheels, then the checkout itself (properties/ inside the package)
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir .whl/*.whl -e .
fi
if ! "$PY" -c "import torch, recbole_micro, recbole; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "error: $PY needs torch with CUDA, recbole 1.2.1 and this plugin (pip install -e . in a CUDA environment," \
       "or benchmarks/gpu_wheels.sh here and .whl/ carried there)" >&2
  exit 2
fi
WORK="${GPU_CHECK_WORK:-$(mktemp -d)}"
export PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1
"$PY" -c "import torch; print(torch.cuda.get_device_name(0), 'torch', torch.__version__)"
start=$(date +%s)
"$PY" -m recbole_micro.data lattice "$SRC" --name baby --out "$WORK/atomic_data" >/dev/null
echo "Baby converted in $(( $(date +%s) - start )) s"
status=0
timeout 210 "$PY" benchmarks/gpu_check_e2e.py --data_path "$WORK/atomic_data" --dataset baby --work "$WORK/e2e" || status=$?
timeout 75 "$PY" benchmarks/gpu_check.py --data_path "$WORK/atomic_data" --json "$WORK/gpu_check.json" || status=$?
echo "gpu_check: $(( $(date +%s) - start )) s in all, exit $status; outputs in $WORK"
exit "$status"
