"""The permutohedral filter and the dense CRF (csrc/lattice, csrc/crf)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import (
    _check_dim,
    _check_dtype,
    _check_size,
    _expect,
    _interruptible,
    _register_no_backward,
)

#: Dense-CRF parameters of DeepLab-CRF-LargeFOV on PASCAL VOC (the model of Papandreou et al.):
#: Potts weights and standard deviations in pixels / intensity levels, 10 mean-field iterations.
CRF_DEFAULTS = {
    "pos_w": 3.0,
    "pos_xy_std": 3.0,
    "bi_w": 4.0,
    "bi_xy_std": 121.0,
    "bi_rgb_std": 5.0,
    "iterations": 10,
}


def permutohedral_filter(values: Tensor, features: Tensor, normalize: bool = True) -> Tensor:
    """Gaussian filtering of ``values`` over positions ``features`` with the permutohedral lattice.

    ``values``: float32 ``[P, V]`` or ``[N, P, V]``; ``features``: float32 ``[P, D]`` or
    ``[N, P, D]`` with ``1 <= D <= 16``, already divided by the Gaussian's standard deviations (the
    kernel is ``exp(-|f_i - f_j|^2 / 2)``). Each of the N point sets gets its own lattice.

    Normalisation: the lattice's splat-blur-slice response ``R(v)_i ~ c * sum_j k(i, j) v_j``
    carries a gain ``c`` that depends on D and on how densely the points cover the lattice (the
    gain convention is Krähenbühl's dense-CRF code: a lone point's self-weight is about 1).
    With ``normalize=True`` (default) the result is ``R(v) / R(1)``, a weighted mean that
    approximates ``sum_j k(i, j) v_j / sum_j k(i, j)`` and does not depend on ``c``. With
    ``normalize=False`` the raw ``R(v)`` is returned (what the dense CRF's symmetric normalisation
    ``R(v * n) * n`` with ``n = R(1)^-1/2`` is built from).

    Accuracy: the lattice is an approximation; measured against exact O(P^2) filtering on random
    point sets, the normalised output's error grows with D (tests/test_lattice.py states and asserts
    the bounds). Returns a float32 tensor shaped like ``values``.

    Determinism: on the CPU the output has the same bits for any number of threads (on a given
    machine: AVX2 + FMA hosts round differently from hosts without); CUDA agrees with the CPU
    within the tolerances of tests/test_lattice.py, not bit for bit.

    Gradient: with respect to ``values``, the filter's transpose (``R^T(g)``, or ``R^T(g / R(1))``
    normalised; the blur runs its lattice axes in reverse order), itself differentiable. With
    respect to ``features`` there is none: a backward that needs it raises ``NotImplementedError``.
    """
    return torch.ops.emseg.permutohedral_filter(values, features, normalize)


# Largest feature dimension D of the lattice (csrc/lattice/lattice.h, kMaxDim).
_MAX_FEATURE_DIM = 16


@torch.library.register_fake("emseg::permutohedral_filter")
def _permutohedral_filter_fake(values, features, normalize=True):
    _expect(
        values.dim() in (2, 3),
        f"values must be a 2-D [P, V] or 3-D [N, P, V] tensor, got shape {list(values.shape)}",
    )
    _expect(
        features.dim() == values.dim(),
        "features must have the same number of dimensions as values ([P, D] for [P, V] values, "
        f"[N, P, D] for [N, P, V]), got shape {list(features.shape)} for values of shape "
        f"{list(values.shape)}",
    )
    _check_dtype(values, "values", torch.float32)
    _check_dtype(features, "features", torch.float32)
    _expect(
        features.device == values.device,
        f"features must be on the same device as values ({values.device}), got {features.device}",
    )
    for i in range(values.dim() - 1):
        _expect(
            features.shape[i] == values.shape[i],
            f"features.shape[{i}] must equal values.shape[{i}] ({values.shape[i]}), got features "
            f"of shape {list(features.shape)}",
        )
    d, points = features.shape[-1], values.shape[-2]
    _expect(
        1 <= d <= _MAX_FEATURE_DIM,
        f"features.shape[-1] (the feature dimension D) must be between 1 and {_MAX_FEATURE_DIM}, got {d}",
    )
    _expect(
        points * (d + 1) < 2**30,
        f"too many points for one lattice: P * (D + 1) must be below 2^30, got P = {points}, D = {d}",
    )
    return values.new_empty(values.shape)


@torch.library.register_fake("emseg::permutohedral_filter_backward")
def _permutohedral_filter_backward_fake(grad, features, normalize=True):
    return _permutohedral_filter_fake(grad, features, normalize)


def _refuse_grad(ctx, index: int, op: str, name: str, why: str):
    # Torch's convention for a derivative that is not implemented: the backward raises, naming it
    # (a silent None would train as if the input had no influence).
    if ctx.needs_input_grad[index]:
        raise NotImplementedError(
            f"emseg.{op}: the gradient with respect to {name} is not implemented ({why}); "
            f"detach {name} (or set requires_grad=False) to differentiate the other inputs"
        )


def _filter_setup_context(ctx, inputs, output):
    _, features, normalize = inputs
    ctx.save_for_backward(features)
    ctx.normalize = normalize


def _linear_filter_backward(transpose):
    """Backward of a filter that is linear in its values, given the op applying its transpose:
    permutohedral_filter's is permutohedral_filter_backward, and the other way round."""

    def backward(ctx, grad):
        (features,) = ctx.saved_tensors
        _refuse_grad(
            ctx,
            1,
            "permutohedral_filter",
            "features",
            "the lattice's vertices and barycentric weights are piecewise functions of them",
        )
        grad_values = None
        if ctx.needs_input_grad[0]:
            grad_values = transpose(grad.contiguous(), features, ctx.normalize)
        return grad_values, None, None

    return backward


torch.library.register_autograd(
    "emseg::permutohedral_filter",
    _linear_filter_backward(lambda *a: torch.ops.emseg.permutohedral_filter_backward(*a)),
    setup_context=_filter_setup_context,
)
torch.library.register_autograd(
    "emseg::permutohedral_filter_backward",
    _linear_filter_backward(lambda *a: torch.ops.emseg.permutohedral_filter(*a)),
    setup_context=_filter_setup_context,
)


def _pair(x, n: int, name: str) -> list[float]:
    if isinstance(x, (int, float)):
        return [float(x)] * n
    out = [float(v) for v in x]
    if len(out) != n:
        raise ValueError(f"{name} must be a number or {n} numbers, got {x!r}")
    return out


def _crf_compat(num_labels: int, weight: float, compat: Tensor | None, device: torch.device) -> Tensor:
    """One kernel's [L, L] compatibility energy: Potts as -w * I (see dense_crf), else w * compat."""
    if compat is None:
        return -float(weight) * torch.eye(num_labels, dtype=torch.float32, device=device)
    if compat.shape != (num_labels, num_labels):
        raise ValueError(f"compat must have shape [L, L] = [{num_labels}, {num_labels}], got {list(compat.shape)}")
    return float(weight) * compat.to(device=device, dtype=torch.float32)


def dense_crf(
    unary: Tensor,
    image: Tensor,
    *,
    pos_w: float = CRF_DEFAULTS["pos_w"],
    pos_xy_std=CRF_DEFAULTS["pos_xy_std"],
    bi_w: float = CRF_DEFAULTS["bi_w"],
    bi_xy_std=CRF_DEFAULTS["bi_xy_std"],
    bi_rgb_std=CRF_DEFAULTS["bi_rgb_std"],
    iterations: int = CRF_DEFAULTS["iterations"],
    compat: Tensor | None = None,
    sizes: Tensor | None = None,
    unary_kind: str = "neg_log_prob",
) -> Tensor:
    """Fully connected CRF with Gaussian edge potentials, mean-field inference (Krähenbühl 2011).

    ``unary``: float32 ``[N, L, H, W]``; ``unary_kind="neg_log_prob"`` (default) reads it as the
    energy ``-log p`` (pydensecrf's ``setUnaryEnergy``), ``unary_kind="logits"`` as class scores,
    i.e. the energy ``-unary`` (the same as ``-log_softmax(unary)``: per-pixel constants cancel).
    ``image``: uint8 ``[N, 3, H, W]``, the colours the bilateral kernel compares.

    Pairwise energy between every two pixels i, j:
    ``mu(x_i, x_j) * (pos_w * k_pos(i, j) + bi_w * k_bi(i, j))`` with
    ``k_pos = exp(-|p_i - p_j|^2 / (2 pos_xy_std^2))`` and
    ``k_bi = exp(-|p_i - p_j|^2 / (2 bi_xy_std^2) - |I_i - I_j|^2 / (2 bi_rgb_std^2))``, each
    kernel symmetrically normalised as in Krähenbühl's code (pydensecrf's default). Standard
    deviations are numbers or per-axis tuples ``(x, y)`` / ``(r, g, b)``. ``mu`` is Potts,
    ``[l != l']``, when ``compat`` is None, else the given ``[L, L]`` matrix (not symmetrised).
    A weight of 0 switches a kernel off. Defaults: :data:`CRF_DEFAULTS` (DeepLab on VOC).
    Any finite unary works (Q is computed from each pixel's energies less their minimum, exactly
    0 where that difference is beyond float32). Weights are refused (``RuntimeError`` naming
    ``compat``, i.e. ``pos_w``/``bi_w``) when the messages could overflow float32: when
    ``sum_k max |w_k compat_k| * sqrt(H * W)`` reaches 8.5e37.

    ``sizes``: optional int64 ``[N, 2]`` valid (height, width) per image, for padded batches:
    each image's CRF runs on its top-left ``height x width`` region only, and Q is 0 outside it.

    Ctrl-C stops it between mean-field iterations (``KeyboardInterrupt``, CPU and CUDA).

    Returns the marginals Q, float32 ``[N, L, H, W]`` (softmax of ``-unary`` when iterations = 0).

    Gradient: with respect to ``unary``, through the unrolled mean-field iterations (CRF-as-RNN).
    The backward runs the iterations again keeping each one's marginals ((iterations + 1) float32
    ``[L', H, W]`` per image, L' = L rounded up to 4 or 8), then runs them in reverse: about 1.3-2x
    the forward's time on CUDA, about 5x on the CPU, whose forward has a faster layout for Potts
    compatibilities (the backward's rerun sums in another order: its Q differs from the returned
    one by float rounding; both agree with a float64 mean field to 1e-5 in the tests).
    ``compat`` (the weights) gets none: a backward that needs it raises ``NotImplementedError``.
    """
    if unary_kind not in ("neg_log_prob", "logits"):
        raise ValueError(f'unary_kind must be "neg_log_prob" or "logits", got {unary_kind!r}')
    num_labels = unary.shape[1] if unary.dim() == 4 else 0
    compat_k = torch.stack(
        [
            _crf_compat(num_labels, pos_w, compat, unary.device),
            _crf_compat(num_labels, bi_w, compat, unary.device),
        ]
    )
    pos_std = _pair(pos_xy_std, 2, "pos_xy_std")
    bi_std = _pair(bi_xy_std, 2, "bi_xy_std") + _pair(bi_rgb_std, 3, "bi_rgb_std")
    return _interruptible(
        torch.ops.emseg.dense_crf,
        unary,
        image,
        compat_k,
        pos_std,
        bi_std,
        iterations,
        sizes,
        unary_kind == "logits",
    )


def _check_stds(stds, name: str, expected: int, layout: str):
    _expect(len(stds) == expected, f"{name} must have {expected} entries {layout}, got {len(stds)}")
    for i, std in enumerate(stds):
        _expect(
            math.isfinite(std) and std > 0,
            f"{name}[{i}] must be a positive finite standard deviation, got {std}",
        )


@torch.library.register_fake("emseg::dense_crf")
def _dense_crf_fake(unary, image, compat, pos_std, bi_std, iterations=10, sizes=None, logits=False):
    _check_dim(unary, "unary", 4, "[N, L, H, W]")
    _check_dtype(unary, "unary", torch.float32)
    n, labels, h, w = unary.shape
    _expect(
        labels >= 1,
        f"unary must have at least one label (unary.shape[1] = L >= 1), got shape {list(unary.shape)}",
    )
    _check_dim(image, "image", 4, "[N, 3, H, W]")
    _check_dtype(image, "image", torch.uint8)
    _expect(
        image.device == unary.device,
        f"image must be on the same device as unary ({unary.device}), got {image.device}",
    )
    _check_size(image, "image", 0, n, "unary.shape[0] (N)")
    _check_size(image, "image", 1, 3, "3 colour channels")
    _check_size(image, "image", 2, h, "unary.shape[2] (H)")
    _check_size(image, "image", 3, w, "unary.shape[3] (W)")
    _check_dim(compat, "compat", 3, "[2, L, L]")
    _check_dtype(compat, "compat", torch.float32)
    _check_size(compat, "compat", 0, 2, "2 (position kernel, bilateral kernel)")
    _check_size(compat, "compat", 1, labels, "the number of labels L")
    _check_size(compat, "compat", 2, labels, "the number of labels L")
    _check_stds(pos_std, "pos_std", 2, "(x, y)")
    _check_stds(bi_std, "bi_std", 5, "(x, y, r, g, b)")
    _expect(iterations >= 0, f"iterations must be >= 0, got {iterations}")
    _expect(
        h * w * 6 < 2**30,
        f"image too large for one lattice: H * W must be below {2**30 // 6}, got {h * w}",
    )
    span, limit = torch.sym_max(h, w), 2**22
    _expect(
        span / min(pos_std) * 6 < limit and span / min(bi_std[:2]) * 6 < limit and 255.0 / min(bi_std[2:]) * 6 < limit,
        "standard deviations too small for the image size: pixel coordinates divided by them "
        f"must stay below {limit // 6}",
    )
    if sizes is not None:
        _check_dim(sizes, "sizes", 2, "[N, 2] (valid height, width per image)")
        _check_dtype(sizes, "sizes", torch.int64)
        _check_size(sizes, "sizes", 0, n, "unary.shape[0] (N)")
        _check_size(sizes, "sizes", 1, 2, "2 (height, width)")
    return unary.new_empty(unary.shape)


@torch.library.register_fake("emseg::dense_crf_backward")
def _dense_crf_backward_fake(grad, unary, image, compat, pos_std, bi_std, iterations=10, sizes=None, logits=False):
    _check_dtype(grad, "grad", torch.float32)
    _expect(
        grad.device == unary.device,
        f"grad must be on the same device as unary ({unary.device}), got {grad.device}",
    )
    _expect(
        grad.shape == unary.shape,
        f"grad must have the shape of unary ({list(unary.shape)}), got {list(grad.shape)}",
    )
    return _dense_crf_fake(unary, image, compat, pos_std, bi_std, iterations, sizes, logits)


def _crf_setup_context(ctx, inputs, output):
    ctx.inputs = inputs[1:]  # everything but the unary: image, compat, stds, iterations, ...
    ctx.save_for_backward(inputs[0], inputs[2], inputs[6] if inputs[6] is not None else None)


def _crf_backward(ctx, grad):
    unary, compat, sizes = ctx.saved_tensors
    image, _, pos_std, bi_std, iterations, _, logits = ctx.inputs
    _refuse_grad(
        ctx,
        2,
        "dense_crf",
        "compat",
        "only the unary is differentiable; the kernel weights and compatibilities are constants",
    )
    grad_unary = None
    if ctx.needs_input_grad[0]:
        grad_unary = torch.ops.emseg.dense_crf_backward(
            grad.contiguous(), unary, image, compat, pos_std, bi_std, iterations, sizes, logits
        )
    return grad_unary, None, None, None, None, None, None, None


torch.library.register_autograd("emseg::dense_crf", _crf_backward, setup_context=_crf_setup_context)
_register_no_backward("dense_crf_backward")
