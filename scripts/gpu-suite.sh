#!/usr/bin/env bash
# The GPU suite, run from the folder `npm run gpu:pack` writes (out/gpu-pack/, copied to the GPU machine):
#   bash gpu-suite.sh OUTDIR             build (CMake + ninja, every core) and run everything, ~8 minutes
#   bash gpu-suite.sh --dry-run OUTDIR   no GPU: the drivers built for the SIMT emulator (g++ -DMD_SIMT_EMU)
#                                        on a small subset, run short, and the same reporting (also
#                                        MD_SUITE_DRY_RUN=1)
# OUTDIR receives three files: suite.json (every step and its full results), suite.log (every step's
# output), summary.txt (the table printed last). Work files (build, per-step logs) go to MD_SUITE_WORK
# (default: work/ beside this script). Exit 1, with a line naming them, when any check failed or timed out.
# Environment: MD_SUITE_SEED (inputs; default fresh, printed), MD_SUITE_MODULES (kit modules to run;
# default all, or the dry run's subset), MD_KIT_TOL (overrides the drivers' tolerances: a wrong one must
# fail), CUDA_ARCH (CMake CUDA architectures; default each module's), MD_SUITE_STRICT_TARGETS=1 (a missed
# performance target fails the suite), MD_SUITE_BUDGET (seconds for the whole run, default 540: each step's
# bound is cut to what is left, and a step that would start with under 20 s left is skipped, saying so).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dry="${MD_SUITE_DRY_RUN:-0}"
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; shift; fi
if [[ $# -ne 1 ]]; then
  echo "usage: bash gpu-suite.sh [--dry-run] OUTDIR" >&2
  exit 2
fi
[[ -f "$here/suite.env" ]] || { echo "gpu-suite.sh: $here/suite.env missing: run it from the folder npm run gpu:pack writes" >&2; exit 2; }
# shellcheck source=/dev/null
source "$here/suite.env"
mkdir -p "$1" || exit 2
out="$(cd "$1" && pwd)"
work="${MD_SUITE_WORK:-$here/work}"
rm -rf "$work/logs" "$work/results"
mkdir -p "$work/logs" "$work/results"
: >"$work/steps.tsv"
seed="${MD_SUITE_SEED:-$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')}"
jobs="$(nproc)"
t0=$(date +%s)
budget="${MD_SUITE_BUDGET:-540}"
left() { echo $((budget - ($(date +%s) - t0))); }
echo "[suite] $( ((dry)) && echo 'dry run, ')seed $seed, $jobs cores, work $work, results $out"

# record NAME STATUS SECONDS RESULT_JSON DETAIL: one line of steps.tsv (status pass|fail|timeout|notrun|na|skip:
# notrun, a check that should have run and did not, fails the suite; skip is only the dry run's GPU steps).
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5//$'\t'/ }" >>"$work/steps.tsv"; }
# step NAME TIMEOUT_S RESULT_JSON CMD...: runs CMD under a time bound; rc 0 pass, 3 not available, 124/137 timeout.
step() {
  local name="$1" limit="$2" result="$3"
  shift 3
  local log="$work/logs/$(echo "$name" | tr -c 'A-Za-z0-9_.-' '_').log" s=$(date +%s%N) rc status detail ms rest
  rest=$(($(left) - 10))
  if ((rest < 20)); then
    notrun "$name" "the suite's ${budget}s budget is spent"
    return
  fi
  ((limit > rest)) && limit=$rest
  echo "[suite] $name ..."
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  case $rc in
    0) status=pass ;;
    3) status=na ;;
    124 | 137) status=timeout ;;
    *) status=fail ;;
  esac
  detail="$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-200)"
  [[ $status == timeout ]] && detail="timed out after ${limit}s; last line: $detail"
  [[ $status == fail ]] && detail="exit $rc: $(grep -m1 -E 'FAIL|FATAL|ERROR|error' "$log" | cut -c1-160 || true) | $detail"
  ms=$((($(date +%s%N) - s) / 1000000))
  record "$name" "$status" "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))" "$result" "$detail"
  echo "[suite] $name: $status"
}
skip() { record "$1" skip 0 "" "$2"; echo "[suite] $1: skipped ($2)"; }
notrun() { record "$1" notrun 0 "" "not run: $2"; echo "[suite] $1: NOT RUN ($2)"; }  # counts as a failure

device="md-simt-emu (host emulation, no GPU)"
if ((dry)); then
  modules="${MD_SUITE_MODULES:-$DRY_MODULES}"
  build="$work/build-emu"
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  step "build (host, SIMT emulator)" 600 "" bash -c "cmake -S '$here' -B '$build' ${gen[*]} -DMD_EMU=ON -DMD_MODULES='${modules// /;}' && cmake --build '$build' -j $jobs"
else
  modules="${MD_SUITE_MODULES:-$MODULES}"
  build="$work/build"
  device="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
  step "build (nvcc, CMake + ninja)" 420 "" bash -c "cmake -S '$here' -B '$build' -G Ninja -DCMAKE_BUILD_TYPE=Release ${CUDA_ARCH:+-DMD_CUDA_ARCH=$CUDA_ARCH} && cmake --build '$build' -j $jobs"
fi
built=$(tail -n 1 "$work/steps.tsv" | cut -f2)

run_checks() {  # every module's driver at once (the float64 references use the host's cores)
  local m
  for m in $modules; do
    step "check: $m" "$1" "$work/results/check_$m.json" "$build/kit_$m" --seed "$seed" --json "$work/results/check_$m.json" $2 &
  done
  wait
}

if [[ $built != pass ]]; then
  for m in $modules; do notrun "check: $m" "the build did not pass"; done
elif ((dry)); then
  run_checks 300 --short
  if command -v python3 >/dev/null; then
    step "pytorch script (syntax only)" 60 "" python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])" "$here/torch_bench.py"
  else
    skip "pytorch script (syntax only)" "no python3"
  fi
  step "e2e: spec == AR (C API)" 240 "$work/results/e2e.json" "$build/e2e" "$here/e2e/model" "$build/libe2e_module.so" "$E2E_VOCAB" \
    "$work/results/e2e.json" --emulated --requests 2 --max-tokens 10
  for s in "sanitizer: memcheck" "sanitizer: racecheck" "bandwidth: kernels" "bandwidth: pytorch"; do
    skip "$s" "dry run: needs a GPU"
  done
else
  run_checks 240 ""
  if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do  # one wave: both tools on every module's short run at once
      for m in $modules; do
        step "sanitizer: $tool $m" 180 "$work/results/${tool}_$m.json" compute-sanitizer --tool "$tool" --error-exitcode 99 \
          "$build/kit_$m" --short --seed "$seed" --json "$work/results/${tool}_$m.json" &
      done
    done
    wait
  else
    record "sanitizer" fail 0 "" "compute-sanitizer not on PATH"
  fi
  step "e2e: spec == AR (C API)" 120 "$work/results/e2e.json" "$build/e2e" "$here/e2e/model" "$build/libe2e_module.so" "$E2E_VOCAB" "$work/results/e2e.json"
  step "bandwidth: kernels" 180 "$work/results/bench.json" "$build/bench" --json "$work/results/bench.json"
  step "bandwidth: pytorch" 200 "$work/results/torch.json" env PYTHONUNBUFFERED=1 python3 "$here/torch_bench.py" --json "$work/results/torch.json" \
    --budget "$(($(left) - 60 < 150 ? $(left) - 60 : 150))" --gemms "$GEMMS" --sink "$SINK" --window "$WINDOW"
fi

seconds=$(($(date +%s) - t0))
nvcc_v="$(nvcc --version 2>/dev/null | tail -n 1)"
printf '{"dry_run": %s, "seed": %s, "device": "%s", "nvcc": "%s", "seconds": %s, "modules": "%s", "pack": %s}\n' \
  "$( ((dry)) && echo true || echo false)" "$seed" "${device//\"/}" "${nvcc_v//\"/}" "$seconds" "$modules" "$(cat "$here/pack.json")" >"$work/meta.json"
for f in "$work"/logs/*.log; do
  echo "===== $(basename "$f")"
  cat "$f"
done >"$out/suite.log"
python3 "$here/report.py" "$work" "$out"
rc=$?
if [[ $rc -ne 0 ]]; then echo "gpu-suite: FAILED (see the table above; logs in $out/suite.log)" >&2; fi
exit $rc
