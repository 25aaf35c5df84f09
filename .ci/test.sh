#!/usr/bin/env bash
# Build emseg in place and run the tests and the benchmarks' output checks, in the active Python
# environment (torch already installed). The command the README gives for running the tests.
#
#   pip install torch            # CI pins torch==2.13.0 (CPU)
#   bash .ci/test.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python}
# --no-build-isolation builds against the torch installed here, so the build tools come first.
"$PYTHON" -m pip install -q scikit-build-core cmake ninja
# pydensecrf2 (a test reference) ships as source and needs Cython to build: build it in pip's
# isolated environment before the --no-build-isolation install below finds it satisfied.
"$PYTHON" -m pip install -q "pydensecrf2>=1.1"
"$PYTHON" -m pip install -q --no-build-isolation -e ".[test]"
set +e
"$PYTHON" -m pytest tests benchmarks --benchmark-disable -q "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests (exit 5)" >&2
fi
exit "$rc"
