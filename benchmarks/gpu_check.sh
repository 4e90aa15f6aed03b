#!/usr/bin/env bash
# GPU check of issue 13 (target 5): seconds per Amazon Baby epoch of MICRO, contrastive_mode full / sampled x
# contrastive_precision fp32 / bf16, peak GPU memory, and the contrastive loss alone; prints a table.
# Self-contained: converts Baby from ../shared/data/baby (or $1) into a temporary folder, runs, cleans up.
# Budget: < 5 minutes on one H200 (data ~20 s, 4 variants x (model init + warm-up + 1 epoch)); hard limit 290 s.
#
#   benchmarks/gpu_check.sh [BABY_SOURCE_DIR]        # PYTHON=... to choose the interpreter, DEVICE=cuda:1 the GPU
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/baby}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch, recbole; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "error: $PY needs torch with CUDA and recbole 1.2.1 (pip install -e . in a CUDA environment)" >&2
  exit 2
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONWARNINGS=ignore
"$PY" -m recbole_micro.data lattice "$SRC" --name baby --out "$WORK/atomic_data"
"$PY" -c "import torch; print(torch.cuda.get_device_name(0), 'torch', torch.__version__)"
timeout 290 "$PY" benchmarks/gpu_check.py --data_path "$WORK/atomic_data" --device "${DEVICE:-cuda:0}" --json "$WORK/gpu_check.json"
