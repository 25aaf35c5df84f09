#!/usr/bin/env bash
# The whole GPU check in one command, for a lent GPU machine with no internet (torch with CUDA,
# nvcc, CMake, ninja and scikit-build-core already installed), in at most 8 minutes:
#
#   bash benchmarks/gpu_suite.sh OUT_DIR
#
# Steps, each under its own timeout (seconds, in brackets; 480 in all, none near the 10 minutes a
# lent machine allows one command): record the machine [30]; build and install the CUDA extension
# for the visible GPU's architecture [150]; require emseg.cuda_available() [30]; the CUDA tests
# (tests/ -k cuda: parity with the CPU ops, opcheck, devices; they must run, not skip) [90];
# compute-sanitizer memcheck [45], racecheck [45], synccheck [30] and initcheck [30] on a short
# subset that calls every op on small inputs (tests/ -k 'cuda and opcheck'); the CUDA benchmarks
# into OUT_DIR/bench.json [30]. A failing or timed-out step does not stop the others; the exit
# status is non-zero when any failed. OUT_DIR/summary.txt holds every step's result, time and the
# last lines of its log (summary.json the same as data); the logs are env.txt, build.log,
# tests.log, sanitizer.log and bench.log.
#
# Environment: PYTHON (default python3), SANITIZER_K / BENCH_K pytest -k expressions of the
# sanitizer runs (default "cuda and opcheck") and the benchmarks (default "cuda"),
# TIMEOUT_SCALE multiplies every timeout (default 1).
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
SANITIZER_K=${SANITIZER_K:-cuda and opcheck}
BENCH_K=${BENCH_K:-cuda}
TIMEOUT_SCALE=${TIMEOUT_SCALE:-1}
export PYTHONUNBUFFERED=1 PYTHON
# -P: never import the source tree's emseg/ (it has no compiled _C) instead of the installed one.
PYTEST=("$PYTHON" -P -m pytest -p no:cacheprovider)

NAMES=() STATUS=() SECONDS_TAKEN=() LOGS=()

# run_step NAME LOG TIMEOUT COMMAND...: runs COMMAND (a program, or a function of this script that
# needs no variable but the exported PYTHON) with
# its output appended to OUT/LOG, killed after TIMEOUT * TIMEOUT_SCALE seconds; records the result.
run_step() {
  local name=$1 log=$2 limit
  limit=$(( $3 * TIMEOUT_SCALE ))
  shift 3
  echo "==> ${name} (timeout ${limit} s)"
  {
    echo "==> ${name}: $*"
    echo "    started $(date -u +%FT%TZ)"
  } >>"${OUT}/${log}"
  local start=$SECONDS rc
  if declare -F "$1" >/dev/null; then
    timeout -k 10 "${limit}" bash -c "$(declare -f "$1"); $(printf '%q ' "$@")" >>"${OUT}/${log}" 2>&1
  else
    timeout -k 10 "${limit}" "$@" >>"${OUT}/${log}" 2>&1
  fi
  rc=$?
  local took=$((SECONDS - start))
  local status=pass
  [[ $rc -eq 0 ]] || status="fail (exit ${rc}$([[ $rc -eq 124 || $rc -eq 137 ]] && echo ", timed out after ${limit} s"))"
  echo "    ${status} in ${took} s" | tee -a "${OUT}/${log}"
  NAMES+=("$name") STATUS+=("$status") SECONDS_TAKEN+=("$took") LOGS+=("$log")
}

record_env() {
  date -u +%FT%TZ
  echo "--- git"; git rev-parse HEAD 2>/dev/null; git status --short 2>/dev/null | head -20
  echo "--- nvidia-smi"; nvidia-smi
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv
  echo "--- nvcc"; nvcc --version
  echo "--- compute-sanitizer"; compute-sanitizer --version | head -3
  echo "--- cmake / ninja"; cmake --version | head -1; ninja --version
  echo "--- python"; "$PYTHON" -c "import sys, torch, numpy; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available() and torch.cuda.get_device_name()); print('numpy', numpy.__version__)"
  "$PYTHON" -m pip list 2>/dev/null | grep -iE "^(torch|numpy|pytest|pytest-benchmark|hypothesis|scikit-build-core|cmake|ninja) "
  echo "--- cpu"; nproc; grep -m1 "model name" /proc/cpuinfo
}

check_cuda_kernels() {
  "$PYTHON" -P -c "
import emseg, torch
print('emseg from', emseg.__file__)
for op in emseg.op_names():
    print(f'{op:24s} CPU={emseg.has_kernel(op, \"CPU\")} CUDA={emseg.has_kernel(op, \"CUDA\")}')
print('built_with_cuda', emseg.built_with_cuda(), 'torch.cuda.is_available', torch.cuda.is_available())
assert emseg.cuda_available(), 'emseg.cuda_available() is False: the CUDA tests would be skipped'
"
}

# The sanitizer runs: the short subset of the tests under one tool each.
SANITIZE=(compute-sanitizer --error-exitcode 1 --print-limit 20)
SUBSET=("${PYTEST[@]}" tests -q -k "${SANITIZER_K}")

run_step "environment" env.txt 30 record_env
run_step "build (EMSEG_CUDA=ON pip install .)" build.log 150 \
  env EMSEG_CUDA=ON "$PYTHON" -m pip install --no-build-isolation --no-deps -v .
run_step "CUDA kernels registered and a GPU visible" build.log 30 check_cuda_kernels
run_step "CUDA tests (tests/ -k cuda)" tests.log 90 "${PYTEST[@]}" tests -ra -k cuda
# The caching allocator would hide out-of-bounds accesses inside its blocks from memcheck and
# leave initcheck blind to reads of memory torch allocated earlier.
run_step "compute-sanitizer memcheck (-k '${SANITIZER_K}')" sanitizer.log 45 \
  env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${SANITIZE[@]}" --tool memcheck "${SUBSET[@]}"
run_step "compute-sanitizer racecheck (-k '${SANITIZER_K}')" sanitizer.log 45 \
  "${SANITIZE[@]}" --tool racecheck "${SUBSET[@]}"
run_step "compute-sanitizer synccheck (-k '${SANITIZER_K}')" sanitizer.log 30 \
  "${SANITIZE[@]}" --tool synccheck "${SUBSET[@]}"
run_step "compute-sanitizer initcheck (-k '${SANITIZER_K}')" sanitizer.log 30 \
  env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${SANITIZE[@]}" --tool initcheck "${SUBSET[@]}"
run_step "CUDA benchmarks (benchmarks/ -k '${BENCH_K}')" bench.log 30 \
  "${PYTEST[@]}" benchmarks -ra -k "${BENCH_K}" --benchmark-json "${OUT}/bench.json" \
  --benchmark-max-time=0.5 --benchmark-columns=min,median,mean,rounds

failed=0
for status in "${STATUS[@]}"; do
  [[ $status == pass ]] || failed=1
done
{
  echo "emseg GPU suite, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
  for i in "${!NAMES[@]}"; do
    printf '%-70s %-30s %6s s  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECONDS_TAKEN[$i]}" "${LOGS[$i]}"
  done
  echo "overall: $([[ $failed -eq 0 ]] && echo pass || echo FAIL) in ${SECONDS} s"
  for log in build.log tests.log sanitizer.log bench.log; do
    echo
    echo "--- last lines of ${log}"
    tail -n 8 "${OUT}/${log}" 2>/dev/null
  done
} | tee "${OUT}/summary.txt"

"$PYTHON" - "${OUT}/summary.json" "${#NAMES[@]}" "${NAMES[@]}" "${STATUS[@]}" "${SECONDS_TAKEN[@]}" "${LOGS[@]}" <<'EOF'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
rest = sys.argv[3:]
names, status, secs, logs = (rest[i * n:(i + 1) * n] for i in range(4))
steps = [dict(step=a, status=b, passed=b == "pass", seconds=int(c), log=d)
         for a, b, c, d in zip(names, status, secs, logs)]
json.dump(dict(passed=all(s["passed"] for s in steps), steps=steps), open(path, "w"), indent=2)
EOF
exit "$failed"
