"""Helpers shared by the benchmark suites; puts tests/ (the NumPy references) on sys.path.

Each benchmark times one implementation of one workload and then asserts its output equals the
reference output, so `pytest benchmarks --benchmark-disable` is a correctness run.

Not a conftest.py on purpose: pytest keeps a single module named `conftest` in sys.modules, so a
benchmarks/conftest.py would break the tests' `from conftest import DEVICES` whenever tests/ and
benchmarks/ run in one session (as CI does).
"""

import pathlib
import sys

import pytest
import torch

import emseg

TESTS = pathlib.Path(__file__).resolve().parent.parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

CUDA_SKIP_REASON = "CUDA kernels not built or no GPU visible (emseg.cuda_available() is False)"
requires_cuda = pytest.mark.skipif(not emseg.cuda_available(), reason=CUDA_SKIP_REASON)
DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]


def synchronized(fn, device):
    """`fn` followed by a device synchronisation, so a CUDA timing covers the kernels' work."""
    if device != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def describe(benchmark, op, impl, device, **shape):
    benchmark.extra_info.update(op=op, impl=impl, device=device, **shape)
    if device == "cuda":
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    elif device == "cpu":
        benchmark.extra_info["threads"] = torch.get_num_threads()
