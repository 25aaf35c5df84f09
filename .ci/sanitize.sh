#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer: builds emseg's CPU kernels
# instrumented (its own build dir, build/sanitize) into the active Python environment, editable,
# and runs tests/ with the sanitizer runtime preloaded. Use a separate environment from .ci/test.sh:
# the install replaces the uninstrumented one.
#
#   python3 -m venv /tmp/venv-san && . /tmp/venv-san/bin/activate && pip install torch==2.13.0
#   bash .ci/sanitize.sh [PYTEST_ARGS...]
#
# Choices:
# - python and torch are not instrumented, so libasan is LD_PRELOADed (it must come first) and
#   only emseg's code is checked: out-of-bounds and use-after-free in its kernels, and (UBSan)
#   overflow, bad shifts, misaligned or null pointers, float-to-int conversions out of range.
# - detect_leaks=0: CPython and torch keep allocations alive until exit by design; leak reports
#   would all be theirs.
# - UBSan findings abort (-fno-sanitize-recover), so any one fails the run instead of scrolling by.
# - vptr is left out of UBSan: it checks dynamic types across torch's uninstrumented libraries,
#   whose type info it cannot see.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python}
CXX=${CXX:-c++}
SANITIZE="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize=vptr"
"$PYTHON" -m pip install -q scikit-build-core cmake ninja
"$PYTHON" -m pip install -q "pydensecrf2>=1.1"
EMSEG_CUDA=OFF "$PYTHON" -m pip install -q --no-build-isolation -e ".[test]" \
  -Cbuild-dir=build/sanitize \
  "-Ccmake.define.CMAKE_CXX_COMPILER=$CXX" \
  "-Ccmake.define.CMAKE_CXX_FLAGS=$SANITIZE -fno-sanitize-recover=all -fno-omit-frame-pointer -g" \
  "-Ccmake.define.CMAKE_MODULE_LINKER_FLAGS=$SANITIZE"
LIBASAN=$("$CXX" -print-file-name=libasan.so)
# libstdc++ too: python does not link it, and ASan's __cxa_throw interceptor must find it at start
# (without it the first C++ exception, i.e. every input check, aborts).
LIBSTDCXX=$("$CXX" -print-file-name=libstdc++.so)
for lib in "$LIBASAN" "$LIBSTDCXX"; do
  [[ -f $lib ]] || { echo "$lib not found for $CXX" >&2; exit 1; }
done
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
LD_PRELOAD="$LIBASAN $LIBSTDCXX" "$PYTHON" -m pytest tests -q -p no:cacheprovider "$@"
