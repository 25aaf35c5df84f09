"""The E-step ops (csrc/estep): EM-Fixed and EM-Adapt."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import (
    _check_finite_number,
    _check_portion,
    _check_present_fake,
    _check_scores_fake,
    _expect,
    _interruptible,
    _label_map_fake,
    _register_no_backward,
)


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
