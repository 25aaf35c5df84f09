"""Typed wrappers over ``torch.ops.emseg.*`` and their fake (meta) kernels.

Every operator validates its inputs in the native binding and raises ``RuntimeError`` with a message
naming the argument; the fake kernels below describe output shapes so ``torch.compile`` and
``torch.library.opcheck`` can trace the ops without running them.

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
]

#: Share of a box's pixels that Bbox-Seg fixes as foreground around the box centre (paper: 20%).
CENTER_PORTION = 0.2


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

    Returns ``(labels, biases)``: int64 ``[N, H, W]`` and float64 ``[N, C]`` with ``-inf`` for absent
    classes, so that ``labels == argmax(scores.double() + biases[..., None, None], dim=1)``.
    """
    return torch.ops.emseg.em_adapt(scores, present, fg_portion, bg_portion, max_iter)


def boxes_to_labels(boxes: Tensor, height: int, width: int, fill: int = 0) -> Tensor:
    """Bbox-Rect labels: every pixel in a box takes its class; overlaps go to the smallest box.

    Box area is the geometric ``(x2 - x1) * (y2 - y1)`` of the whole box (also the part outside the
    image); equal areas go to the box listed first. Pixels in no box get ``fill`` (0 = background).
    Returns int64 ``[N, height, width]``.
    """
    return torch.ops.emseg.boxes_to_labels(boxes, height, width, fill)


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
# Fake kernels: shapes and dtypes, plus the device check the native bindings make (a meta tensor
# mixed with a real one dispatches here, not to the native kernel).


def _check_same_device(op: str, name: str, tensor: Tensor, reference: Tensor, ref_name: str):
    torch._check(
        tensor.device == reference.device,
        lambda: f"{op}: {name} must be on the same device as {ref_name} "
        f"({reference.device}), got {tensor.device}",
    )


@torch.library.register_fake("emseg::em_fixed")
def _em_fixed_fake(scores, present, fg_bias=5.0, bg_bias=3.0, suppress_absent=False):
    _check_same_device("em_fixed", "present", present, scores, "scores")
    n, _, h, w = scores.shape
    return scores.new_empty((n, h, w), dtype=torch.int64)


@torch.library.register_fake("emseg::em_adapt")
def _em_adapt_fake(scores, present, fg_portion=0.2, bg_portion=0.4, max_iter=100000):
    _check_same_device("em_adapt", "present", present, scores, "scores")
    n, c, h, w = scores.shape
    return (
        scores.new_empty((n, h, w), dtype=torch.int64),
        scores.new_empty((n, c), dtype=torch.float64),
    )


@torch.library.register_fake("emseg::boxes_to_labels")
def _boxes_to_labels_fake(boxes, height, width, fill=0):
    return boxes.new_empty((boxes.shape[0], height, width), dtype=torch.int64)


def _check_same_device(op, name, tensor, ref, ref_name):
    # A meta tensor among the inputs dispatches here, not to the binding: repeat its device check.
    torch._check(
        tensor.device == ref.device,
        lambda: f"{op}: {name} must be on the same device as {ref_name} ({ref.device}), got {tensor.device}",
    )


@torch.library.register_fake("emseg::bbox_em_fixed")
def _bbox_em_fixed_fake(scores, boxes, fg_bias=5.0, bg_bias=3.0, suppress_absent=False):
    _check_same_device("bbox_em_fixed", "boxes", boxes, scores, "scores")
    _check_same_device("bbox_em_fixed", "boxes", boxes, scores, "scores")
    n, _, h, w = scores.shape
    return scores.new_empty((n, h, w), dtype=torch.int64)
