"""emseg: weakly- and semi-supervised semantic segmentation with hard EM.

Importing the package loads the native extension ``emseg._C``, which registers the operators as
``torch.ops.emseg.*``; :mod:`emseg.ops` holds typed wrappers with documentation.
"""

import torch

from . import (
    _C,  # noqa: F401  (loading the module runs the operator registrations)
    ops,
)

__version__ = "0.1.0"


def op_names() -> list[str]:
    """Names of all operators in the ``torch.ops.emseg`` namespace."""
    return sorted(
        name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names() if name.startswith("emseg::")
    )


def has_kernel(op: str, backend: str) -> bool:
    """Whether ``torch.ops.emseg.<op>`` has a kernel for ``backend`` ("CPU", "CUDA", "Meta")."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"emseg::{op}", backend)


def built_with_cuda() -> bool:
    """Whether the extension was compiled with its CUDA kernels (a GPU need not be present)."""
    return all(has_kernel(op, "CUDA") for op in op_names())


def cuda_available() -> bool:
    """Whether the CUDA kernels can run here: compiled in and a GPU visible to torch."""
    return built_with_cuda() and torch.cuda.is_available()


__all__ = ["ops", "op_names", "has_kernel", "built_with_cuda", "cuda_available", "__version__"]
