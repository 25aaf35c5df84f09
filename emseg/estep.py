"""One E-step per training mode, built from the native ops, and the table that maps a mode to it.

Modes are data: :data:`MODES` says, for each mode, which annotation it reads and how its training
targets are made. There are two kinds:

* online (``em-fixed``, ``em-adapt``, ``bbox-em-fixed``): hard EM. At every iteration the E-step
  runs on the current network's final class scores (output stride 8, detached, float32, no grad)
  and returns latent labels at score resolution; the loss is the cross-entropy of the *unbiased*
  scores against them.
* fixed (``bbox-rect``, ``bbox-seg``): the labels are estimated once before training at image
  resolution (:func:`build_fixed_labels`) and then used like ground-truth masks.

``full`` trains on the masks of every image. In every mode, the strong images of a semi-supervised
batch (``batch["strong"]``) use their masks.

Resolution: targets live at score resolution. Masks are downsampled by picking the pixel each score
cell is centred on (``mask[:, ::stride, ::stride]``, DeepLab v1 also downsampled labels rather than
upsampling scores). Boxes are mapped into the same grid by :func:`boxes_to_score_coords`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import ops

#: The label of pixels that neither the loss nor the metrics count (VOC's object borders, padding,
#: score cells outside the image).
IGNORE_INDEX = 255


@dataclass
class EStepConfig:
    """E-step parameters; defaults are the paper's."""

    fg_bias: float = 5.0  #: EM-Fixed b_fg
    bg_bias: float = 3.0  #: EM-Fixed b_bg
    suppress_absent: bool = False  #: EM-Fixed: leave absent classes out of the argmax
    fg_portion: float = 0.2  #: EM-Adapt rho_fg
    bg_portion: float = 0.4  #: EM-Adapt rho_bg
    max_iter: int = 100000  #: EM-Adapt bound on solver iterations (sweeps and chain steps)
    center_portion: float = ops.CENTER_PORTION  #: Bbox-Seg: share of a box fixed as foreground
    seg_box_prob: float = 0.6  #: Bbox-Seg prior: probability of the box's class inside the box


# ---------------------------------------------------------------------------------------------
# Geometry between image and score grids


def downsample_mask(mask: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """Mask ``[N, H, W]`` -> ``[N, h, w]`` on the score grid: score cell ``(i, j)`` takes
    ``mask[stride*i, stride*j]``; cells beyond the image (none for ``h = ceil(H/stride)``) are
    ignored."""
    h, w = size
    sub = mask[:, ::stride, ::stride][:, :h, :w]
    if sub.shape[-2:] == (h, w):
        return sub.contiguous()
    out = sub.new_full((mask.shape[0], h, w), IGNORE_INDEX)
    out[:, : sub.shape[1], : sub.shape[2]] = sub
    return out


def valid_cells(valid: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """``valid`` ``[N, H, W]`` (image, not padding) -> ``[N, h, w]`` on the score grid, sampled as
    :func:`downsample_mask` samples masks; cells beyond the image are not valid."""
    h, w = size
    sub = valid[:, ::stride, ::stride][:, :h, :w]
    out = valid.new_zeros((valid.shape[0], h, w))
    out[:, : sub.shape[1], : sub.shape[2]] = sub
    return out


def upsample_scores(scores: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """Bilinear upsampling of ``[N, C, h, w]`` scores to ``size`` that keeps score cell ``(i, j)``
    on image pixel ``(stride*i, stride*j)``; rows/columns past the last cell repeat the edge."""
    h, w = scores.shape[-2:]
    H, W = size
    up = F.interpolate(scores, size=(stride * (h - 1) + 1, stride * (w - 1) + 1), mode="bilinear", align_corners=True)
    up = up[..., :H, :W]
    pad_h, pad_w = H - up.shape[-2], W - up.shape[-1]
    if pad_h > 0 or pad_w > 0:
        up = F.pad(up, (0, pad_w, 0, pad_h), mode="replicate")
    return up


def boxes_to_score_coords(boxes: Tensor, stride: int) -> Tensor:
    """Box corners from image pixels to score-grid units.

    Score cell ``j`` is centred on image pixel ``stride*j``, whose centre is at ``stride*j + 0.5``;
    the map ``x' = (x - 0.5) / stride + 0.5`` sends that point to ``j + 0.5``, so a box covers a
    score cell exactly when it covers the image pixel the cell samples (the ops' half-open rule).
    This is "divide by the stride" up to a shift of less than half a cell. The class column is kept.
    """
    out = boxes.clone()
    out[..., :4] = (boxes[..., :4] - 0.5) / stride + 0.5
    return out


# ---------------------------------------------------------------------------------------------
# Online E-steps: (scores [N,C,h,w] float32, batch, cfg, stride) -> (labels int64 [N,h,w], biases)
#
# ``biases`` (broadcastable to the scores, DISALLOWED for a class that may not win) are what the
# E-step added: ``labels == argmax(scores + biases)``. The CRF-refined E-step
# (:func:`refine_with_crf`) refines the softmax of the biased scores.

#: The bias of a class that may not win a pixel: finite, so that softmax and the CRF stay finite.
DISALLOWED = -1e4


def _fixed_biases(present: Tensor, cfg: EStepConfig) -> Tensor:
    """EM-Fixed's biases ``[N, C]``: b_bg for background, b_fg for a present class, 0 (or, with
    suppress_absent, DISALLOWED) for an absent one."""
    absent = DISALLOWED if cfg.suppress_absent else 0.0
    out = torch.where(present, cfg.fg_bias, absent).float()
    out[:, 0] = cfg.bg_bias
    return out


def estep_em_fixed(scores: Tensor, batch: dict, cfg: EStepConfig, stride: int) -> tuple[Tensor, Tensor]:
    labels = ops.em_fixed(scores, batch["labels"], cfg.fg_bias, cfg.bg_bias, cfg.suppress_absent)
    return labels, _fixed_biases(batch["labels"], cfg)[..., None, None]


def estep_em_adapt(scores: Tensor, batch: dict, cfg: EStepConfig, stride: int) -> tuple[Tensor, Tensor]:
    """The shares are of each image's valid cells (``batch["valid"]``, padding left out): EM-Adapt
    looks at no pixel's position, so an image's valid cells are solved as one row."""
    valid = batch.get("valid")
    if valid is None or bool(valid.all()):
        labels, biases = ops.em_adapt(scores, batch["labels"], cfg.fg_portion, cfg.bg_portion, cfg.max_iter)
        return labels, biases.clamp(min=DISALLOWED).float()[..., None, None]
    labels = torch.full(valid.shape, IGNORE_INDEX, dtype=torch.int64, device=scores.device)
    biases = torch.zeros(scores.shape[:2], dtype=torch.float32, device=scores.device)
    for i in range(scores.shape[0]):
        cells = scores[i][:, valid[i]]
        if cells.shape[1]:
            row, bias = ops.em_adapt(
                cells[None, :, None].contiguous(),
                batch["labels"][i : i + 1],
                cfg.fg_portion,
                cfg.bg_portion,
                cfg.max_iter,
            )
            labels[i][valid[i]] = row.view(-1)
            biases[i] = bias[0].clamp(min=DISALLOWED)
    return labels, biases[..., None, None]


def estep_bbox_em_fixed(scores: Tensor, batch: dict, cfg: EStepConfig, stride: int) -> tuple[Tensor, Tensor]:
    boxes = boxes_to_score_coords(batch["boxes"].float(), stride).contiguous()
    labels = ops.bbox_em_fixed(scores, boxes, cfg.fg_bias, cfg.bg_bias, cfg.suppress_absent)
    n, c, h, w = scores.shape
    cover = box_coverage(boxes, c, h, w)
    in_any = cover[:, 1:].any(1, keepdim=True)
    inside = torch.where(cover, cfg.fg_bias, DISALLOWED if cfg.suppress_absent else 0.0)
    inside[:, :1] = cfg.bg_bias
    outside = torch.full_like(inside, DISALLOWED)
    outside[:, :1] = 0.0
    return labels, torch.where(in_any, inside, outside)


def box_coverage(boxes: Tensor, num_classes: int, height: int, width: int) -> Tensor:
    """bool ``[N, C, height, width]``: which pixels each class's boxes cover (the ops' half-open
    pixel rule; rows with class < 0 cover nothing)."""
    cover = torch.zeros(boxes.shape[0], num_classes, height, width, dtype=torch.bool, device=boxes.device)
    for b in range(boxes.shape[1]):
        one = boxes[:, b : b + 1].clone()
        cls = one[:, 0, 4].long()
        one[:, 0, 4] = torch.where(cls > 0, 1.0, -1.0)
        inside = ops.boxes_to_labels(one.contiguous(), height, width, 0) == 1
        rows = (cls > 0).nonzero().squeeze(1)
        cover[rows, cls[rows]] |= inside[rows]
    return cover


@torch.no_grad()
def refine_with_crf(scores: Tensor, biases: Tensor, image: Tensor, crf, stride: int) -> Tensor:
    """The CRF-refined E-step: the softmax of the biased scores, brought to image resolution,
    refined by the dense CRF on ``image`` (uint8 ``[N, 3, H, W]``); each score cell takes the label
    of the image pixel it is centred on. A class the E-step did not allow stays out."""
    biased = (scores + biases).float()
    up = upsample_scores(biased, tuple(image.shape[-2:]), stride)
    q = crf((-torch.log_softmax(up, 1)).contiguous(), image.contiguous())
    h, w = scores.shape[-2:]
    q = q[:, :, ::stride, ::stride][:, :, :h, :w]
    allowed = (biases > DISALLOWED / 2).expand_as(biased)
    return torch.where(allowed, q, -1.0).argmax(1)


# ---------------------------------------------------------------------------------------------
# Fixed-label builders: one image at full resolution -> labels int64 [H, W]


def fixed_bbox_rect(boxes: Tensor, image: Tensor, num_classes: int, cfg: EStepConfig, crf=None) -> Tensor:
    """Bbox-Rect: box interiors take their class (smallest box wins), the rest is background."""
    h, w = image.shape[-2:]
    return ops.boxes_to_labels(boxes[None].float().contiguous(), h, w, 0)[0]


def box_prior(boxes: Tensor, height: int, width: int, cfg: EStepConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Bbox-Seg's prior over the labels ``[0] + classes of the boxes``.

    Returns ``(prob [L, H, W], label_ids [L], centre [H, W])``: outside every box background has
    probability 1; inside, each covering box's class shares ``seg_box_prob`` and background gets
    the rest; the centre area (``center_portion`` of the box) is its class with probability 1.
    ``centre`` holds that class or -1.
    """
    valid = boxes[:, 4] >= 0
    boxes = boxes[valid].float()
    classes = sorted({int(c) for c in boxes[:, 4].tolist()} - {0})
    label_ids = torch.tensor([0] + classes, dtype=torch.int64)
    cover = box_coverage(boxes[None], int(label_ids.max()) + 1, height, width)[0][label_ids]
    n_cover = cover[1:].sum(0)
    prob = torch.zeros(len(label_ids), height, width)
    in_any = n_cover > 0
    prob[0] = torch.where(in_any, 1.0 - cfg.seg_box_prob, 1.0)
    share = cfg.seg_box_prob / n_cover.clamp(min=1)
    prob[1:] = cover[1:] * share
    centre = ops.center_prior(boxes[None].contiguous(), height, width, cfg.center_portion)[0]
    has_c = centre >= 0
    if bool(has_c.any()):
        cmap = torch.zeros(int(centre.max()) + 1, dtype=torch.int64)
        cmap[torch.tensor(classes)] = torch.arange(1, len(classes) + 1)
        ys, xs = has_c.nonzero(as_tuple=True)
        prob[:, ys, xs] = 0.0
        prob[cmap[centre[ys, xs]], ys, xs] = 1.0
    return prob, label_ids, centre


def fixed_bbox_seg(boxes: Tensor, image: Tensor, num_classes: int, cfg: EStepConfig, crf=None) -> Tensor:
    """Bbox-Seg: dense CRF over the box prior (:func:`box_prior`), then the hard constraints again:
    outside every box is background, the centre areas keep their class, and a pixel may only take
    background or the class of a box that covers it."""
    if crf is None:
        raise ValueError("bbox-seg needs a dense CRF to estimate its labels")
    h, w = image.shape[-2:]
    prob, label_ids, centre = box_prior(boxes, h, w, cfg)
    allowed = prob > 0
    unary = -torch.log(prob.clamp(min=1e-5))  # finite: the CRF may still move soft pixels
    q = crf(unary[None].float().contiguous(), image[None].contiguous())[0]
    q = torch.where(allowed, q, torch.tensor(-1.0))
    labels = label_ids[q.argmax(0)]
    return torch.where(centre >= 0, centre, labels)


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Mode:
    """A training mode: which annotation the weak images need and how targets are made."""

    name: str
    needs: str  #: "mask" (every image is strong), "labels" (image-level) or "boxes"
    online: Callable[[Tensor, dict, EStepConfig, int], tuple[Tensor, Tensor]] | None = None
    fixed: Callable[..., Tensor] | None = None
    needs_crf: bool = False
    #: the EStepConfig fields the fixed labels depend on (with the CRF's parameters when needs_crf)
    fixed_params: tuple[str, ...] = ()
    summary: str = ""

    @property
    def fully_supervised(self) -> bool:
        """Every image trains on its mask: there are no weak images and no strong subset."""
        return self.needs == "mask"


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("full", "mask", summary="pixel-level masks for every image (the upper bound)"),
        Mode("em-fixed", "labels", online=estep_em_fixed, summary="EM-Fixed: fixed bg/fg biases on present classes"),
        Mode(
            "em-adapt",
            "labels",
            online=estep_em_adapt,
            summary="EM-Adapt: adaptive biases, minimum share per present class",
        ),
        Mode(
            "bbox-rect",
            "boxes",
            fixed=fixed_bbox_rect,
            summary="Bbox-Rect: box interiors as labels, fixed before training",
        ),
        Mode(
            "bbox-seg",
            "boxes",
            fixed=fixed_bbox_seg,
            needs_crf=True,
            fixed_params=("center_portion", "seg_box_prob"),
            summary="Bbox-Seg: CRF segmentation of each box, fixed before training",
        ),
        Mode(
            "bbox-em-fixed",
            "boxes",
            online=estep_bbox_em_fixed,
            summary="Bbox-EM-Fixed: EM-Fixed boosting classes inside their boxes",
        ),
    )
}


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; choose from {', '.join(MODES)}") from None


@torch.no_grad()
def make_targets(mode: Mode, scores: Tensor, batch: dict, cfg: EStepConfig, stride: int, crf=None) -> Tensor:
    """Training targets ``[N, h, w]`` at score resolution for one batch.

    Masks (ground truth, or the fixed labels standing in for them) for strong images, for ``full``
    and for the fixed modes; the online E-step on the detached float32 scores for the weak images
    of an online mode. Padding (``batch["valid"]`` False) is never a target, and the E-step counts
    its shares over each image's valid cells only. With ``crf``, the E-step's labels are refined
    by the dense CRF on ``batch["image_uint8"]`` (:func:`refine_with_crf`).
    """
    target = downsample_mask(batch["mask"].to(scores.device), scores.shape[-2:], stride)
    if mode.online is None:
        return target
    weak = ~batch["strong"].to(scores.device)
    if bool(weak.any()):
        idx = weak.nonzero().squeeze(1)
        sub = {k: batch[k].to(scores.device)[idx] for k in ("labels", "boxes") if k in batch}
        if "valid" in batch:
            sub["valid"] = valid_cells(batch["valid"].to(scores.device)[idx], scores.shape[-2:], stride)
        weak_scores = scores.detach()[idx].float().contiguous()
        labels, biases = mode.online(weak_scores, sub, cfg, stride)
        if crf is not None:
            labels = refine_with_crf(weak_scores, biases, batch["image_uint8"].to(scores.device)[idx], crf, stride)
        if "valid" in sub:
            labels = labels.masked_fill(~sub["valid"], IGNORE_INDEX)
        target[idx] = labels
    return target
