#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with a GPU and no internet (torch with CUDA,
# nvcc, CMake, ninja and scikit-build-core already installed):
#
#   bash benchmarks/gpu_suite.sh OUT_DIR
#
# Steps: record the machine (nvidia-smi, versions); build and install the CUDA extension; require
# emseg.cuda_available(); run all of tests/ (the CUDA parity tests must run, not skip); run the CUDA
# tests under compute-sanitizer memcheck, and the E-step (and lattice/CRF, when present) CUDA tests
# under racecheck; run all of benchmarks/ into OUT_DIR/bench.json. A failing step does not stop the
# others; the exit status is non-zero when any step failed. OUT_DIR gets 8 files: env.txt,
# build.log, tests.log, sanitizer.log, bench.log, bench.json, summary.txt and summary.json.
#
# Environment: PYTHON (default python3), STEP_TIMEOUT seconds per step (default 1800),
# SANITIZER_K / RACECHECK_K pytest -k expressions of the sanitizer runs (default "cuda").
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-1800}
SANITIZER_K=${SANITIZER_K:-cuda}
RACECHECK_K=${RACECHECK_K:-cuda}
export PYTHONUNBUFFERED=1
# -P: never import the source tree's emseg/ (it has no compiled _C) instead of the installed one.
PYTEST=("$PYTHON" -P -m pytest -p no:cacheprovider)

NAMES=() STATUS=() SECONDS_TAKEN=() LOGS=()

# run_step NAME LOG COMMAND...: runs COMMAND with its output appended to OUT/LOG, records the result.
run_step() {
  local name=$1 log=$2
  shift 2
  echo "==> ${name}"
  {
    echo "==> ${name}: $*"
    echo "    started $(date -u +%FT%TZ)"
  } >>"${OUT}/${log}"
  local start=$SECONDS rc
  if declare -F "$1" >/dev/null; then
    "$@" >>"${OUT}/${log}" 2>&1
  else
    timeout "${STEP_TIMEOUT}" "$@" >>"${OUT}/${log}" 2>&1
  fi
  rc=$?
  local took=$((SECONDS - start))
  local status=pass
  [[ $rc -eq 0 ]] || status="fail (exit ${rc}$([[ $rc -eq 124 ]] && echo ", timed out after ${STEP_TIMEOUT} s"))"
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

racecheck_files() {
  local f files=()
  for f in tests/test_estep.py tests/test_lattice.py tests/test_crf.py; do
    [[ -f $f ]] && files+=("$f")
  done
  echo "${files[@]}"
}

run_step "environment" env.txt record_env
run_step "build (EMSEG_CUDA=ON pip install .)" build.log \
  env EMSEG_CUDA=ON "$PYTHON" -m pip install --no-build-isolation --no-deps -v .
run_step "CUDA kernels registered and a GPU visible" build.log check_cuda_kernels
run_step "pytest tests/" tests.log "${PYTEST[@]}" tests -ra
# The caching allocator would hide out-of-bounds accesses inside its blocks from memcheck.
run_step "compute-sanitizer memcheck (tests/ -k '${SANITIZER_K}')" sanitizer.log \
  env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
  --print-limit 20 "${PYTEST[@]}" tests -q -k "${SANITIZER_K}"
# shellcheck disable=SC2046
run_step "compute-sanitizer racecheck ($(racecheck_files) -k '${RACECHECK_K}')" sanitizer.log \
  compute-sanitizer --tool racecheck --error-exitcode 1 --print-limit 20 \
  "${PYTEST[@]}" $(racecheck_files) -q -k "${RACECHECK_K}"
run_step "pytest benchmarks/" bench.log \
  "${PYTEST[@]}" benchmarks -ra --benchmark-json "${OUT}/bench.json" --benchmark-columns=min,median,mean,rounds

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
  echo "overall: $([[ $failed -eq 0 ]] && echo pass || echo FAIL)"
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
