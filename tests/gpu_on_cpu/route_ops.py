"""pytest plugin: for the whole session, ``torch.ops.emseg`` is the namespace of another build of
emseg's sources (tests/gpu_on_cpu/build.sh), so the test suite's CPU tests run that build.

    EMSEG_OPS_LIB=lib.so EMSEG_OPS_NAMESPACE=emseg_scalar PYTHONPATH=tests \\
        python -m pytest -p gpu_on_cpu.route_ops tests/test_lattice.py
"""

import os

import torch

import emseg  # noqa: F401  (loads the real extension first, so its fake kernels stay registered)

LIB = os.environ["EMSEG_OPS_LIB"]
NAMESPACE = os.environ["EMSEG_OPS_NAMESPACE"]
torch.ops.load_library(LIB)
setattr(torch.ops, "emseg", getattr(torch.ops, NAMESPACE))


def pytest_report_header(config):
    return f"torch.ops.emseg routed to torch.ops.{NAMESPACE} from {LIB}"
