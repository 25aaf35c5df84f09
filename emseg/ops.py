"""Typed wrappers over ``torch.ops.emseg.*`` and their fake (meta) kernels.

Every operator validates its inputs in the native binding and raises ``RuntimeError`` with a message
naming the argument. Each wrapper is followed by its op's fake (meta) kernel, which describes the
output shapes so ``torch.compile`` and ``torch.library.opcheck`` can trace the op without running it.

Conventions shared by all ops:

* ``scores``: float ``[N, C, H, W]`` network scores (logits or log-probabilities), class 0 is
  background.
* ``present``: bool ``[N, C]`` image-level labels; background counts as present whatever it says.
* ``boxes``: float ``[N, B, 5]`` rows ``(x1, y1, x2, y2, class)`` in pixel coordinates of the label
  map; padding rows have class -1. A box covers pixel ``(y, x)`` when its centre lies inside the
  half-open box: ``x1 <= x + 0.5 < x2`` and ``y1 <= y + 0.5 < y2``. With integer corners this is
  ``x1 <= x < x2``: x2/y2 are exclusive. Boxes may reach outside the image (the part inside counts);
  empty or inverted boxes (``x2 <= x1`` or ``y2 <= y1``) cover nothing.
* Labels are int64 ``[N, H, W]``; argmax ties go to the lower class index.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "em_fixed",
    "em_adapt",
    "boxes_to_labels",
    "bbox_em_fixed",
    "center_prior",
    "CENTER_PORTION",
    "permutohedral_filter",
    "dense_crf",
    "CRF_DEFAULTS",
]

#: Share of a box's pixels that Bbox-Seg fixes as foreground around the box centre (paper: 20%).
CENTER_PORTION = 0.2

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
        lambda: f"{op}: {name} must be on the same device as {ref_name} "
        f"({reference.device}), got {tensor.device}",
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
        f"{name} must be a floating-point tensor (float32, float64, float16 or bfloat16), "
        f"got {scores.dtype}",
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
        f"{name} must have shape [N, C] = {list(scores.shape[:2])} to match scores, "
        f"got {list(present.shape)}",
    )


def _check_portion(value: float, op: str, arg: str):
    _expect(0.0 <= value <= 1.0, f"{op}: {arg} must be in [0, 1], got {value}")


def em_fixed(
    scores: Tensor,
    present: Tensor,
    fg_bias: float = 5.0,
    bg_bias: float = 3.0,
    suppress_absent: bool = False,
) -> Tensor:
    """EM-Fixed E-step: ``argmax_l scores[:, l] + phi_l`` per pixel.

    ``phi_0 = bg_bias``, ``phi_l = fg_bias`` for a present foreground class and 0 for an absent one
    (the paper's ``phi(y_m, z)`` with ``b_fg = 5``, ``b_bg = 3``). With ``suppress_absent`` the
    absent classes are left out of the argmax altogether. Sums are formed in the scores' precision
    (float32 for float16/bfloat16 inputs).

    Returns int64 labels ``[N, H, W]``.
    """
    return torch.ops.emseg.em_fixed(scores, present, fg_bias, bg_bias, suppress_absent)


def _label_map_fake(op: str, name: str, tensor: Tensor, scores: Tensor) -> Tensor:
    """Fake result of an E-step on ``scores`` that also reads ``tensor``: labels ``[N, H, W]``."""
    _check_same_device(op, name, tensor, scores, "scores")
    n, _, h, w = scores.shape
    return scores.new_empty((n, h, w), dtype=torch.int64)


@torch.library.register_fake("emseg::em_fixed")
def _em_fixed_fake(scores, present, fg_bias=5.0, bg_bias=3.0, suppress_absent=False):
    _check_scores_fake("em_fixed", scores)
    _check_present_fake("em_fixed", present, scores)
    _check_finite_number(fg_bias, "em_fixed: fg_bias")
    _check_finite_number(bg_bias, "em_fixed: bg_bias")
    return _label_map_fake("em_fixed", "present", present, scores)


def em_adapt(
    scores: Tensor,
    present: Tensor,
    fg_portion: float = 0.2,
    bg_portion: float = 0.4,
    max_iter: int = 100000,
) -> tuple[Tensor, Tensor]:
    """EM-Adapt E-step: per-image biases giving every present class a minimum share of pixels.

    Per image with ``M = H * W`` pixels, background must take at least ``k_0 = ceil(bg_portion * M)``
    pixels and every present foreground class at least ``k_l = ceil(fg_portion * M)``; absent classes
    take none (the argmax runs over the present classes only).

    The biases are solved as in DeepLab's adaptive-bias layer, made exact and run to completion:
    biases start at 0 and only grow. In a sweep each present class in turn (background first, then
    foreground in ascending order) gets the smallest bias at which it wins at least ``k_l`` pixels
    against the others' current biases: the k-th smallest per-pixel threshold, found exactly (radix
    select over float64, not a step search). Sweeps alone can crawl when classes at their quota
    trade boundary pixels in ever smaller steps; once a sweep no longer shrinks the total shortfall,
    pixels move along augmenting chains as in the Hungarian method: the lowest short class is raised
    by the smallest amount that wins it one more pixel, a class at its quota that loses that pixel
    joins the raised set, and so on until the pixel comes from a class with pixels to spare.

    When the required counts do not fit in the image (``bg_portion + n_fg * fg_portion > 1``, or
    rounding on tiny images) no biases can meet them all; each present class's count is then
    ``floor(M * portion / max(total, 1))`` with ``total = bg_portion + n_fg * fg_portion``, which
    always fits. Counts ignore float rounding of ``M * portion`` below a relative 1e-12.

    Biased scores are formed in float64 and ties go to the lower class. Every share is met when the
    pixels can be split as asked, which holds for scores in general position, with one known
    limitation: when the required counts use up every pixel of the image (no pixel to spare), the
    chains can end a few pixels short of a share (seen in about 1 % of such random images, by 2 to 4
    pixels). Pixels whose score
    differences tie move together (all-equal scores, heavily quantised scores); such an image may
    have no solution, and the solver stops, deterministically, once its chains stop lowering the
    shortfall (64 chain steps per present class without a new lowest) or after ``max_iter`` sweeps
    and chain steps in all.

    On the CPU, Ctrl-C stops a batch after the images in flight (``KeyboardInterrupt``); on CUDA
    the batch is one kernel, and the interrupt is seen when the caller next synchronises.

    Returns ``(labels, biases)``: int64 ``[N, H, W]`` and float64 ``[N, C]`` with ``-inf`` for absent
    classes, so that ``labels == argmax(scores.double() + biases[..., None, None], dim=1)``.
    """
    return _interruptible(torch.ops.emseg.em_adapt, scores, present, fg_portion, bg_portion, max_iter)


@torch.library.register_fake("emseg::em_adapt")
def _em_adapt_fake(scores, present, fg_portion=0.2, bg_portion=0.4, max_iter=100000):
    _check_scores_fake("em_adapt", scores)
    _check_present_fake("em_adapt", present, scores)
    _check_portion(fg_portion, "em_adapt", "fg_portion")
    _check_portion(bg_portion, "em_adapt", "bg_portion")
    _expect(max_iter >= 1, f"em_adapt: max_iter must be >= 1, got {max_iter}")
    n, c, h, w = scores.shape
    return (
        scores.new_empty((n, h, w), dtype=torch.int64),
        scores.new_empty((n, c), dtype=torch.float64),
    )


_register_no_backward("em_adapt")


def boxes_to_labels(boxes: Tensor, height: int, width: int, fill: int = 0) -> Tensor:
    """Bbox-Rect labels: every pixel in a box takes its class; overlaps go to the smallest box.

    Box area is the geometric ``(x2 - x1) * (y2 - y1)`` of the whole box (also the part outside the
    image); equal areas go to the box listed first. Pixels in no box get ``fill`` (0 = background).
    Returns int64 ``[N, height, width]``.
    """
    return torch.ops.emseg.boxes_to_labels(boxes, height, width, fill)


def _check_boxes_fake(op: str, boxes: Tensor):
    name = f"{op}: boxes"
    _check_dim(boxes, name, 3, "[N, B, 5] of (x1, y1, x2, y2, class)")
    _expect(
        boxes.shape[2] == 5,
        f"{name} must have shape [N, B, 5] of (x1, y1, x2, y2, class), got {list(boxes.shape)}",
    )
    _expect(
        boxes.dtype in (torch.float32, torch.float64),
        f"{name} must be float32 or float64, got {boxes.dtype}",
    )


@torch.library.register_fake("emseg::boxes_to_labels")
def _boxes_to_labels_fake(boxes, height, width, fill=0):
    _check_boxes_fake("boxes_to_labels", boxes)
    _expect(
        height >= 0 and width >= 0,
        f"boxes_to_labels: height and width must be >= 0, got height={height}, width={width}",
    )
    return boxes.new_empty((boxes.shape[0], height, width), dtype=torch.int64)


def bbox_em_fixed(
    scores: Tensor,
    boxes: Tensor,
    fg_bias: float = 5.0,
    bg_bias: float = 3.0,
    suppress_absent: bool = False,
) -> Tensor:
    """Bbox-EM-Fixed E-step: EM-Fixed where a class is boosted only inside its own boxes.

    At a pixel inside at least one box: background gets ``bg_bias``, each class with a box covering
    the pixel gets ``fg_bias``, every other class 0 (or, with ``suppress_absent``, is left out of
    the argmax). Pixels outside every box are background. Returns int64 ``[N, H, W]``.
    """
    return torch.ops.emseg.bbox_em_fixed(scores, boxes, fg_bias, bg_bias, suppress_absent)


@torch.library.register_fake("emseg::bbox_em_fixed")
def _bbox_em_fixed_fake(scores, boxes, fg_bias=5.0, bg_bias=3.0, suppress_absent=False):
    _check_scores_fake("bbox_em_fixed", scores)
    _check_same_device("bbox_em_fixed", "boxes", boxes, scores, "scores")
    _check_boxes_fake("bbox_em_fixed", boxes)
    _expect(
        boxes.shape[0] == scores.shape[0],
        f"bbox_em_fixed: boxes.shape[0] must equal N = {scores.shape[0]} (the batch size of "
        f"scores), got shape {list(boxes.shape)}",
    )
    _check_finite_number(fg_bias, "bbox_em_fixed: fg_bias")
    _check_finite_number(bg_bias, "bbox_em_fixed: bg_bias")
    return _label_map_fake("bbox_em_fixed", "boxes", boxes, scores)


def center_prior(
    boxes: Tensor, height: int, width: int, portion: float = CENTER_PORTION
) -> Tensor:
    """Bbox-Seg's fixed foreground: the centre area of each box covering ``portion`` of its pixels.

    Each box is shrunk about its centre by ``sqrt(portion)`` per side, so the kept rectangle holds
    ``portion`` of the box's area. Returns int64 ``[N, height, width]``: the class of the smallest box
    whose centre area covers the pixel, -1 where no centre area does.
    """
    if not (0.0 < portion <= 1.0):
        raise ValueError(f"portion must be in (0, 1], got {portion}")
    if boxes.dim() != 3 or boxes.size(-1) != 5:
        raise ValueError(f"boxes must have shape [N, B, 5], got {list(boxes.shape)}")
    if boxes.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"boxes must be float32 or float64, got {boxes.dtype}")
    scale = math.sqrt(portion)
    cx = (boxes[..., 0] + boxes[..., 2]) * 0.5
    cy = (boxes[..., 1] + boxes[..., 3]) * 0.5
    half_w = (boxes[..., 2] - boxes[..., 0]) * (0.5 * scale)
    half_h = (boxes[..., 3] - boxes[..., 1]) * (0.5 * scale)
    centre = torch.stack(
        [cx - half_w, cy - half_h, cx + half_w, cy + half_h, boxes[..., 4]], dim=-1
    )
    return boxes_to_labels(centre.contiguous(), height, width, fill=-1)


# ---------------------------------------------------------------------------------------------
# Permutohedral lattice and dense CRF (csrc/lattice, csrc/crf).


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
        "features.shape[-1] (the feature dimension D) must be between 1 and "
        f"{_MAX_FEATURE_DIM}, got {d}",
    )
    _expect(
        points * (d + 1) < 2**30,
        f"too many points for one lattice: P * (D + 1) must be below 2^30, got P = {points}, D = {d}",
    )
    return values.new_empty(values.shape)


_register_no_backward("permutohedral_filter")


def _pair(x, n: int, name: str) -> list[float]:
    if isinstance(x, (int, float)):
        return [float(x)] * n
    out = [float(v) for v in x]
    if len(out) != n:
        raise ValueError(f"{name} must be a number or {n} numbers, got {x!r}")
    return out


def _crf_compat(
    num_labels: int, weight: float, compat: Tensor | None, device: torch.device
) -> Tensor:
    """One kernel's [L, L] compatibility energy: Potts as -w * I (see dense_crf), else w * compat."""
    if compat is None:
        return -float(weight) * torch.eye(num_labels, dtype=torch.float32, device=device)
    if compat.shape != (num_labels, num_labels):
        raise ValueError(
            f"compat must have shape [L, L] = [{num_labels}, {num_labels}], got {list(compat.shape)}"
        )
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
        unary, image, compat_k, pos_std, bi_std, iterations, sizes, unary_kind == "logits",
    )


def _check_stds(stds, name: str, expected: int, layout: str):
    _expect(
        len(stds) == expected, f"{name} must have {expected} entries {layout}, got {len(stds)}"
    )
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
        "unary must have at least one label (unary.shape[1] = L >= 1), got shape "
        f"{list(unary.shape)}",
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
        span / min(pos_std) * 6 < limit
        and span / min(bi_std[:2]) * 6 < limit
        and 255.0 / min(bi_std[2:]) * 6 < limit,
        "standard deviations too small for the image size: pixel coordinates divided by them "
        f"must stay below {limit // 6}",
    )
    if sizes is not None:
        _check_dim(sizes, "sizes", 2, "[N, 2] (valid height, width per image)")
        _check_dtype(sizes, "sizes", torch.int64)
        _check_size(sizes, "sizes", 0, n, "unary.shape[0] (N)")
        _check_size(sizes, "sizes", 1, 2, "2 (height, width)")
    return unary.new_empty(unary.shape)


_register_no_backward("dense_crf")


