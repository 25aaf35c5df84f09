"""The kernel backends a parity test compares with the CPU ops.

- ``"cuda"``: the CUDA kernels on a GPU, where one is visible.
- ``"hipcpu"``: the same CUDA sources (every ``csrc/*/*_cuda.cu`` and ``*_cuda.cpp``) built for the
  CPU against HIP-CPU by ``bash .ci/gpu_on_cpu.sh``, which names the library in
  ``EMSEG_HIPCPU_LIB``. It registers the CUDA bindings as the CPU kernels of
  ``torch.ops.emseg_hipcpu``; inside :func:`backend` the ``torch.ops.emseg`` namespace is that one,
  so emseg's Python wrappers call the CUDA bindings on CPU tensors.

Both are skipped, visibly, where they are not available.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
from conftest import CUDA_SKIP_REASON

import emseg

HIPCPU_LIB = os.environ.get("EMSEG_HIPCPU_LIB", "")
HIPCPU_SKIP_REASON = "HIP-CPU build of the CUDA sources not loaded (bash .ci/gpu_on_cpu.sh sets EMSEG_HIPCPU_LIB)"
if HIPCPU_LIB:
    torch.ops.load_library(HIPCPU_LIB)

CUDA_PARAM = pytest.param("cuda", marks=pytest.mark.skipif(not emseg.cuda_available(), reason=CUDA_SKIP_REASON))
HIPCPU_PARAM = pytest.param("hipcpu", marks=pytest.mark.skipif(not HIPCPU_LIB, reason=HIPCPU_SKIP_REASON))
# Backends running the CUDA sources.
KERNEL_DEVICES = [CUDA_PARAM, HIPCPU_PARAM]
# Every backend, the CPU (against itself) included.
PARITY_DEVICES = ["cpu", *KERNEL_DEVICES]


@contextlib.contextmanager
def backend(device: str):
    """Yields the torch device to put the inputs on; for ``"hipcpu"`` routes ``torch.ops.emseg``
    to the HIP-CPU build meanwhile."""
    if device != "hipcpu":
        yield device
        return
    cpu_ops = torch.ops.emseg
    setattr(torch.ops, "emseg", torch.ops.emseg_hipcpu)
    try:
        yield "cpu"
    finally:
        setattr(torch.ops, "emseg", cpu_ops)


def run_on(device: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with its tensor arguments on ``device``'s backend; returns the result
    (a tensor or a tuple of them) moved to the CPU, after checking it came back on that device."""
    with backend(device) as torch_device:
        moved = [a.to(torch_device) if isinstance(a, torch.Tensor) else a for a in args]
        out = fn(*moved, **kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    for t in outs:
        assert t.device.type == torch.device(torch_device).type, f"{fn.__name__} returned a tensor on {t.device}"
    cpu = tuple(t.cpu() for t in outs)
    return cpu if isinstance(out, tuple) else cpu[0]
