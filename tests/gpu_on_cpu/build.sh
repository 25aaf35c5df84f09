#!/usr/bin/env bash
# Builds emseg's sources a second way, for checks on the CPU, into a library that registers its
# ops beside the real extension (under another torch.ops namespace, see csrc/common/library.h):
#
#   bash tests/gpu_on_cpu/build.sh hipcpu OUT_DIR HIPCPU_ROOT  # -> OUT_DIR/libemseg_hipcpu.so
#   bash tests/gpu_on_cpu/build.sh scalar OUT_DIR              # -> OUT_DIR/libemseg_scalar.so
#
# hipcpu: every csrc/*/*_cuda.cu (launches rewritten by rewrite_launches.py, compiled as device code
#   against HIP-CPU and the stand-ins in shim/) and every csrc/*/*_cuda.cpp binding, linked with the
#   CPU libtorch: the CUDA bindings as torch.ops.emseg_hipcpu's CPU kernels.
# scalar: the lattice and CRF CPU kernels with the host SIMD branches off (EMSEG_NO_HOST_SIMD), so
#   g++ compiles the scalar bodies nvcc compiles: torch.ops.emseg_scalar.
#
# Environment: PYTHON (default python), JOBS parallel compiles (default 2), CXX (default g++).
set -euo pipefail
VARIANT=$1
mkdir -p "$2"
OUT=$(cd "$2" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-2}
CXX=${CXX:-g++}
cd "$ROOT"

read -r TORCH_INC TORCH_API_INC TORCH_LIB PY_INC ABI < <("$PYTHON" -c "
import sysconfig, torch, torch.utils.cpp_extension as e
i = e.include_paths()
print(i[0], i[1], e.library_paths()[0], sysconfig.get_paths()['include'], int(torch._C._GLIBCXX_USE_CXX11_ABI))")

COMMON=(-std=c++20 -O2 -fPIC -pthread -D_GLIBCXX_USE_CXX11_ABI="$ABI" -Wno-deprecated-declarations
        -I csrc)
TORCH_FLAGS=(-isystem "$TORCH_INC" -isystem "$TORCH_API_INC" -isystem "$PY_INC")
LIBS=(-L "$TORCH_LIB" -Wl,-rpath,"$TORCH_LIB" -ltorch -ltorch_cpu -lc10)

jobs_file="$OUT/compile_jobs.txt"
: >"$jobs_file"
objects=()
# compile SOURCE OBJECT FLAGS...: queues one compile.
compile() {
  local src=$1 obj=$2
  shift 2
  printf '%s\0' "$CXX ${COMMON[*]} $* -c $src -o $obj" >>"$jobs_file"
  objects+=("$obj")
}

case $VARIANT in
  hipcpu)
    HIPCPU=$(cd "$3" && pwd)
    COMMON+=(-DEMSEG_HIP_CPU -DEMSEG_LIBRARY=emseg_hipcpu -I "$HERE/shim" -I "$HIPCPU/include"
             -I "$HIPCPU/src/include" -I "$HIPCPU/external")
    LIBS+=(-ltbb)
    for cu in csrc/*/*_cuda.cu; do
      base=$(basename "$cu" .cu)
      "$PYTHON" "$HERE/rewrite_launches.py" "$cu" "$OUT/${base}_cu.cpp"
      # Device code: __CUDACC__ selects BlockTeam and the scalar (non-host-SIMD) bodies,
      # __CUDA_ARCH__ the device branches (CUDA atomics, expf), as nvcc's device pass does.
      compile "$OUT/${base}_cu.cpp" "$OUT/${base}_cu.o" -D__CUDACC__ -D__CUDA_ARCH__=900
      echo "kernels  $cu"
    done
    for cpp in csrc/ops.cpp csrc/common/*.cpp csrc/*/*_cuda.cpp; do
      compile "$cpp" "$OUT/$(basename "$cpp" .cpp).o" "${TORCH_FLAGS[@]}"
      echo "binding  $cpp"
    done
    ;;
  scalar)
    COMMON+=(-DEMSEG_NO_HOST_SIMD -DEMSEG_LIBRARY=emseg_scalar -fopenmp)
    LIBS+=(-fopenmp)
    for cpp in csrc/ops.cpp csrc/common/*.cpp csrc/lattice/lattice_cpu.cpp csrc/crf/crf_cpu.cpp; do
      compile "$cpp" "$OUT/$(basename "$cpp" .cpp).o" "${TORCH_FLAGS[@]}"
      echo "scalar   $cpp"
    done
    ;;
  *)
    echo "usage: $0 hipcpu|scalar OUT_DIR [HIPCPU_ROOT]" >&2
    exit 2
    ;;
esac

start=$SECONDS
xargs -0 -P "$JOBS" -I{} bash -c '{}' <"$jobs_file"
"$CXX" -shared -o "$OUT/libemseg_${VARIANT}.so" "${objects[@]}" "${LIBS[@]}" -pthread
echo "built $OUT/libemseg_${VARIANT}.so in $((SECONDS - start)) s"
