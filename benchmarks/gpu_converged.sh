#!/usr/bin/env bash
# Converged runs on a lent GPU (one H200; a command runs at most 10 minutes): several benchmarks/converged.sh
# jobs side by side on the one GPU, continuing what this machine's ../runs holds, their results packed into
# $OUT/runs.tar.gz every 10 s and at the end (what the device tool brings back even when the command is
# cut off). A job that does not finish in time keeps its finished runs and trials; here, converged.sh
# continues it.
#
#   here:   benchmarks/gpu_wheels.sh                    # RecBole & co. as cp312 wheels, into .whl/
#           cp -r ../shared/data/baby .baby              # Baby's source (17 MB)
#           benchmarks/gpu_converged.sh --pack           # ../runs' comparisons and searches (no checkpoints) -> .runs/
#   there:  (device run, carry .whl .baby .runs)
#           benchmarks/gpu_converged.sh 540 baby:mmbaselines:LGMRec baby:baselines:LightGCN baby-cold:mmbaselines:FREEDOM:baby
#   here:   .venv/bin/python benchmarks/merge_runs.py <files_at>/runs.tar.gz   # into ../runs, then converged.sh publish
#
# A job spec is DATASET:JOB[:MODELS[:TUNED_ON]] (MODELS comma-separated); SECONDS bounds the whole call.
# WORK is /work/runs on both machines (the checkpoint paths the JSON files name must be where the jobs write).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/work/runs}
if [ "${1:-}" = --pack ]; then  # here: what the jobs there must see to continue, without checkpoints (GBs)
  rm -rf .runs && mkdir -p .runs
  for folder in compare tuning; do [ ! -d "$WORK/$folder" ] || cp -r "$WORK/$folder" .runs/; done
  rm -f .runs/compare/*.md .runs/compare/*.png
  du -sh .runs
  exit 0
fi
SECONDS_BUDGET=${1:?usage: benchmarks/gpu_converged.sh SECONDS DATASET:JOB[:MODELS[:TUNED_ON]]... | --pack}
shift
[ $# -gt 0 ] || { echo "error: name at least one job, e.g. baby:mmbaselines:LGMRec" >&2; exit 2; }
OUT=${OUT:?OUT (the folder the device tool brings back) is not set}
PY=${PY:-python3}
if [ -d .whl ]; then  # offline: the carried wheels, then the checkout itself (properties/ inside the package)
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir .whl/*.whl -e . 2>&1 | tail -2
fi
"$PY" -c "import torch, recbole_micro, recbole; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU: the CPU', 'torch', torch.__version__)"
mkdir -p "$WORK" "$OUT/logs"
[ ! -d .runs ] || cp -rn .runs/. "$WORK/"
export PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 PY WORK SHARED=${SHARED:-.baby}
pack() {  # the comparisons and searches, one file (the device tool brings back at most 8)
  tar -czf "$OUT/runs.tar.gz.tmp" -C "$WORK" --exclude='*.md' --exclude='*.png' compare tuning 2>/dev/null &&
    mv "$OUT/runs.tar.gz.tmp" "$OUT/runs.tar.gz"
}
pids=()
for spec in "$@"; do
  IFS=: read -r dataset job models tuned_on <<<"$spec"
  log="$OUT/logs/${dataset}-${job}-${models//,/_}.log"
  MODELS="${models//,/ }" TUNED_ON="${tuned_on:-$dataset}" \
    timeout --signal=INT "$SECONDS_BUDGET" bash benchmarks/converged.sh "$dataset" "$job" >"$log" 2>&1 &
  pids+=($!)
  sleep 5  # the first job converts the atoms under converged.sh's lock
done
alive() { for pid in "${pids[@]}"; do ! kill -0 "$pid" 2>/dev/null || return 0; done; return 1; }
while alive; do sleep 10; pack; done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
pack
tail -n 3 "$OUT"/logs/*.log
echo "gpu_converged: exit $status (124 = cut off at ${SECONDS_BUDGET} s; finished runs are in runs.tar.gz)"
