#!/usr/bin/env bash
# Wheels for a GPU machine without network (run here, where pip reaches the registry): what the plugin
# needs beyond a CUDA torch, numpy, pandas and scipy, for CPython 3.12 on x86-64, into .whl/ (git-ignored).
# Then carry .whl/ and the checkout to the GPU machine and run benchmarks/gpu_check.sh there, which installs
# them (--no-index) and the checkout itself (--no-deps --no-build-isolation: properties/ inside the package).
#
#   benchmarks/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-3.12}"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
# RecBole 1.2.1 without its dependencies (no Ray: optional), and the ones it imports at run time that such an
# image lacks; hyperopt with its own.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
  "${platforms[@]}" -d .whl \
  recbole==1.2.1 colorlog==4.7.2 texttable==1.7.0 thop==0.1.1.post2209072238 \
  hyperopt==0.2.7 future==1.0.0 py4j==0.10.9.9
ls -1 .whl
du -sh .whl
