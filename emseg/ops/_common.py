"""What the op wrappers share: the fake kernels' input checks and the Ctrl-C and no-backward glue."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# The fake kernels run the native bindings' checks that need no tensor data (csrc/common/checks.h
# and each family's checks): shapes, dtypes, devices and scalar arguments, in the same order and
# naming the same argument. Checks of values (NaN, class ranges, sizes' entries) need the data and
# run only in the native kernels. tests/test_meta_checks.py holds both to the same cases.


def _expect(ok, message: str):
    torch._check(ok, lambda: message)


def _check_dim(t: Tensor, name: str, dim: int, layout: str):
    _expect(t.dim() == dim, f"{name} must be a {dim}-D tensor {layout}, got shape {list(t.shape)}")


def _check_dtype(t: Tensor, name: str, dtype: torch.dtype):
    _expect(t.dtype == dtype, f"{name} must have dtype {dtype}, got {t.dtype}")


def _check_size(t: Tensor, name: str, dim: int, expected, what: str):
    _expect(
        t.shape[dim] == expected,
        f"{name}.shape[{dim}] must equal {what} ({expected}), got shape {list(t.shape)}",
    )


def _check_finite_number(value: float, name: str):
    _expect(math.isfinite(value), f"{name} must be a finite number, got {value}")


# Start of the RuntimeError a native loop raises when a signal handler raised meanwhile
# (csrc/common/interrupt.h): the wrappers of the long-running ops raise KeyboardInterrupt instead.
_INTERRUPTED = "emseg: interrupted"


def _interruptible(op, *args):
    try:
        return op(*args)
    except RuntimeError as e:
        if str(e).startswith(_INTERRUPTED):
            raise KeyboardInterrupt from None
        raise


def _check_same_device(op: str, name: str, tensor: Tensor, reference: Tensor, ref_name: str):
    """The device check of the native bindings, for the fake kernels: a meta tensor mixed with a
    real one dispatches to the fake kernel, not to the native one."""
    torch._check(
        tensor.device == reference.device,
        lambda: f"{op}: {name} must be on the same device as {ref_name} ({reference.device}), got {tensor.device}",
    )


def _register_no_backward(op: str):
    """Outputs of ``op`` keep a ``grad_fn`` whose backward raises: without it autograd would return
    no gradient at all (``.grad`` None) and only warn. The op has no derivative yet."""

    def backward(ctx, *grads):
        raise NotImplementedError(
            f"emseg.{op} has no backward: no gradient is defined for it yet. Call it under "
            "torch.no_grad() or on detached inputs."
        )

    torch.library.register_autograd(f"emseg::{op}", backward, setup_context=lambda ctx, inputs, output: None)


def _check_scores_fake(op: str, scores: Tensor):
    name = f"{op}: scores"
    _check_dim(scores, name, 4, "[N, C, H, W]")
    _expect(
        scores.dtype.is_floating_point,
        f"{name} must be a floating-point tensor (float32, float64, float16 or bfloat16), got {scores.dtype}",
    )
    _expect(
        scores.shape[1] >= 1,
        f"{name} must have at least one class (C >= 1), got shape {list(scores.shape)}",
    )


def _check_present_fake(op: str, present: Tensor, scores: Tensor):
    name = f"{op}: present"
    _check_dim(present, name, 2, "[N, C]")
    _check_dtype(present, name, torch.bool)
    _check_same_device(op, "present", present, scores, "scores")
    _expect(
        present.shape == scores.shape[:2],
        f"{name} must have shape [N, C] = {list(scores.shape[:2])} to match scores, got {list(present.shape)}",
    )


def _check_portion(value: float, op: str, arg: str):
    _expect(0.0 <= value <= 1.0, f"{op}: {arg} must be in [0, 1], got {value}")


def _label_map_fake(op: str, name: str, tensor: Tensor, scores: Tensor) -> Tensor:
    """Fake result of an E-step on ``scores`` that also reads ``tensor``: labels ``[N, H, W]``."""
    _check_same_device(op, name, tensor, scores, "scores")
    n, _, h, w = scores.shape
    return scores.new_empty((n, h, w), dtype=torch.int64)
