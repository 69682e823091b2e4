#!/usr/bin/env bash
# Builds and runs the GPU kit written by `npm run gpu:kit` (needs nvcc, cmake >= 3.24 and a GPU; no Node).
# Usage: run.sh [kit-dir]   (default: the directory of this script if it holds CMakeLists.txt, else out/gpu-kit)
# CUDA_ARCH=90a run.sh      builds for that arch instead of the GPU's native one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -ge 1 ]]; then kit="$1"; elif [[ -f "$here/CMakeLists.txt" ]]; then kit="$here"; else kit="$here/../../out/gpu-kit"; fi
[[ -f "$kit/CMakeLists.txt" ]] || { echo "no kit at $kit: run 'npm run gpu:kit' first" >&2; exit 2; }
build="$kit/build"
cmake -S "$kit" -B "$build" -DCMAKE_BUILD_TYPE=Release ${CUDA_ARCH:+-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH}
cmake --build "$build" -j "$(nproc)"
failed=0
total=0
while read -r m; do
  [[ -n "$m" ]] || continue
  total=$((total + 1))
  echo "== $m"
  if ! "$build/$m"; then failed=$((failed + 1)); fi
done < "$kit/modules.txt"
echo "GPU kit: $((total - failed))/$total modules passed"
[[ $failed -eq 0 ]]
