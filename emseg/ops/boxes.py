"""The box ops (csrc/boxes): Bbox-Rect labels, Bbox-EM-Fixed, Bbox-Seg's centre prior."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import (
    _check_dim,
    _check_finite_number,
    _check_same_device,
    _check_scores_fake,
    _expect,
    _label_map_fake,
)

#: Share of a box's pixels that Bbox-Seg fixes as foreground around the box centre (paper: 20%).
CENTER_PORTION = 0.2


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


def center_prior(boxes: Tensor, height: int, width: int, portion: float = CENTER_PORTION) -> Tensor:
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
    centre = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h, boxes[..., 4]], dim=-1)
    return boxes_to_labels(centre.contiguous(), height, width, fill=-1)
