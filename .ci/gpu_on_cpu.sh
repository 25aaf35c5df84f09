#!/usr/bin/env bash
# The device code, checked on a machine without a GPU, in three parts (each prints what it ran):
#   (a) every csrc/*/*_cuda.cu and *_cuda.cpp built for the CPU against HIP-CPU (launches rewritten,
#       CUDA headers stood in for: tests/gpu_on_cpu/), and the suite's CUDA parity tests run through
#       those bindings against the CPU ops: bit-exact for the E-step and box ops, the tests' stated
#       tolerances for the lattice (float contraction) and the CRF (device expf);
#   (b) every team algorithm on a host ThreadTeam of 1 to 512 threads against SerialTeam, plain and
#       under ThreadSanitizer;
#   (c) the lattice and CRF tests on a build with the host SIMD branches off, so g++ compiles the
#       scalar bodies nvcc compiles.
# Runs in the active Python environment (CPU torch); builds emseg in place first if it is not built.
# HIP-CPU: HIPCPU_ROOT, else ../shared/vendor/hip-cpu beside the clone. Where it is absent, part (a)
# is skipped and says so; under CI=true that is a failure. Needs libtbb (installed when missing and
# apt-get is usable). Every part runs even when an earlier one failed; exit status 1 if any failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python}
BUILD=${GPU_ON_CPU_BUILD:-$ROOT/build/gpu_on_cpu}
HIPCPU_ROOT=${HIPCPU_ROOT:-$ROOT/../shared/vendor/hip-cpu}
export PYTHONUNBUFFERED=1
mkdir -p "$BUILD"

PARTS=() RESULTS=()
part() {
  local name=$1 start=$SECONDS rc
  shift
  echo
  echo "--- ${name}"
  "$@"
  rc=$?
  local took=$((SECONDS - start)) result
  case $rc in
    0) result=pass ;;
    77) result=SKIPPED ;;
    *) result="FAIL (exit $rc)" ;;
  esac
  echo "--- ${name}: ${result} in ${took} s"
  PARTS+=("$name") RESULTS+=("${result} ${took} s")
}

ensure_emseg() {
  "$PYTHON" -c "import emseg._C" 2>/dev/null && return 0
  echo "emseg is not built here: building it in place (bash .ci/test.sh --collect-only)"
  bash "$ROOT/.ci/test.sh" --collect-only -q >/dev/null
}

have_tbb() { [[ -e /usr/include/tbb/tbb.h || -e /usr/include/oneapi/tbb.h ]]; }

ensure_tbb() {
  have_tbb && return 0
  if command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
    echo "installing libtbb-dev (HIP-CPU's parallel algorithms)"
    apt-get install -y -q libtbb-dev >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get install -y -q libtbb-dev >/dev/null; }
  fi
  have_tbb || { echo "libtbb-dev is missing and could not be installed"; return 1; }
}

# pytest over the CUDA parity tests of one op family through the HIP-CPU bindings.
parity() {
  local family=$1
  shift
  echo "csrc/${family}/${family}_cuda.cu + csrc/${family}/${family}_cuda.cpp: $*"
  EMSEG_HIPCPU_LIB="$BUILD/hipcpu/libemseg_hipcpu.so" "$PYTHON" -m pytest -p no:cacheprovider -q \
    -k hipcpu "$@" | tail -n 3
  return "${PIPESTATUS[0]}"
}

part_a() (
  set -e
  if [[ ! -e $HIPCPU_ROOT/include/hip/hip_runtime.h ]]; then
    echo "HIP-CPU not found at $HIPCPU_ROOT (set HIPCPU_ROOT): part (a) skipped"
    [[ ${CI:-} == true ]] && { echo "CI must run part (a)"; return 1; }
    return 77
  fi
  ensure_tbb
  echo "HIP-CPU $(cat "$HIPCPU_ROOT/VERSION" 2>/dev/null) at $HIPCPU_ROOT"
  bash tests/gpu_on_cpu/build.sh hipcpu "$BUILD/hipcpu" "$HIPCPU_ROOT"
  parity estep tests/test_estep.py
  parity boxes tests/test_boxes.py
  parity lattice tests/test_lattice.py
  parity crf tests/test_crf.py tests/test_crf_grad.py
)

part_b() (
  set -e
  local flags=(-std=c++20 -pthread -I csrc -I tests/gpu_on_cpu tests/gpu_on_cpu/thread_team_test.cpp)
  g++ -O2 "${flags[@]}" -o "$BUILD/thread_team_test"
  echo "plain build:"
  "$BUILD/thread_team_test"
  g++ -O1 -g -fsanitize=thread "${flags[@]}" -o "$BUILD/thread_team_test_tsan"
  echo "-fsanitize=thread build:"
  TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}" "$BUILD/thread_team_test_tsan"
)

part_c() (
  set -e
  bash tests/gpu_on_cpu/build.sh scalar "$BUILD/scalar"
  # Left out: opcheck and the autograd tests (the fake kernels and the autograd registrations are
  # torch.ops.emseg's own; the gradient tests that call the ops directly run), and the
  # thread-count cases of the E-step and box ops (this build holds the lattice and CRF kernels only).
  local keep="not opcheck and not autograd and not em_fixed and not em_adapt and not boxes_to_labels"
  local files=(tests/test_lattice.py tests/test_crf.py tests/test_crf_grad.py)
  echo "${files[*]} -k '$keep' on torch.ops.emseg_scalar:"
  EMSEG_OPS_LIB="$BUILD/scalar/libemseg_scalar.so" EMSEG_OPS_NAMESPACE=emseg_scalar \
    PYTHONPATH="$ROOT/tests${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pytest -p no:cacheprovider \
    -p gpu_on_cpu.route_ops -q "${files[@]}" -k "$keep" | tail -n 3
  return "${PIPESTATUS[0]}"
)

total_start=$SECONDS
part "emseg built in this environment" ensure_emseg
part "(a) CUDA kernels and bindings on HIP-CPU vs the CPU ops" part_a
part "(b) team algorithms on a ThreadTeam of 1-512 threads, plain and ThreadSanitizer" part_b
part "(c) lattice and CRF tests with the host SIMD branches off" part_c

echo
echo "--- gpu_on_cpu summary ($((SECONDS - total_start)) s)"
failed=0
for i in "${!PARTS[@]}"; do
  printf '  %-80s %s\n' "${PARTS[$i]}" "${RESULTS[$i]}"
  [[ ${RESULTS[$i]} == pass* || ${RESULTS[$i]} == SKIPPED* ]] || failed=1
done
exit "$failed"
