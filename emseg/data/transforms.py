"""Paired transforms: image, mask and boxes move together.

A transform takes the raw sample a data set reads (``image`` RGB uint8 ``[H, W, 3]``, ``mask`` uint8
``[H, W]``, ``boxes`` float32 ``[B, 5]`` rows ``(x1, y1, x2, y2, class)``, ``labels`` bool ``[C]``,
plus pass-through keys) and returns tensors: ``image`` float32 ``[3, H, W]`` normalised,
``image_uint8`` uint8 ``[3, H, W]`` with the same geometry, ``mask`` int64 ``[H, W]``, ``valid`` bool
``[H, W]`` (the pixels that show the image, not padding), ``boxes`` float32 ``[B, 5]``, ``labels``
bool ``[C]``.

Geometry conventions (shared with :mod:`emseg.ops`): a box covers pixel ``(y, x)`` when
``x1 <= x + 0.5 < x2`` and ``y1 <= y + 0.5 < y2``. Scaling multiplies box corners by the exact
per-axis factor ``new_size / old_size``, and the mask is resized by sampling the source pixel under
each target pixel's centre, ``src = floor((dst + 0.5) * old / new)``: with integer box corners a
pixel of the scaled mask lies inside a scaled box exactly when its source pixel lay inside the
original box, so masks and boxes stay aligned to the pixel.

Randomness comes from torch's global generator (or the ``generator`` passed to ``__call__``), which
``DataLoader`` seeds per worker, so runs repeat with ``torch.manual_seed``.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
import torch

from .io import IGNORE_INDEX

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TrainTransform",
    "EvalTransform",
    "resize_nearest",
    "to_tensors",
]

#: Normalisation defaults (RGB, images scaled to [0, 1] first), as torchvision's pretrained models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize that samples at pixel centres (see the module docstring).

    Done with index arrays rather than ``cv2.INTER_NEAREST``, whose fixed-point source coordinates
    can land one pixel off the centre rule and break mask/box alignment at object edges.
    """
    h, w = mask.shape[:2]
    # floor((dst + 0.5) * old / new) in integers, so ties at pixel centres are resolved exactly
    ys = (2 * np.arange(height, dtype=np.int64) + 1) * h // (2 * height)
    xs = (2 * np.arange(width, dtype=np.int64) + 1) * w // (2 * width)
    return mask[ys[:, None], xs[None, :]]


def to_tensors(
    sample: dict[str, Any],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> dict[str, Any]:
    """Turn a (geometrically final) numpy sample into the tensors the trainer consumes."""
    out = dict(sample)
    image = np.ascontiguousarray(sample["image"])
    uint8 = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    out["image"] = (uint8.float() / 255.0 - mean_t) / std_t
    out["image_uint8"] = uint8
    out["mask"] = torch.from_numpy(np.ascontiguousarray(sample["mask"]).astype(np.int64))
    valid = sample.get("valid")
    out["valid"] = (
        torch.ones(image.shape[:2], dtype=torch.bool)
        if valid is None
        else torch.from_numpy(np.ascontiguousarray(valid, dtype=bool))
    )
    out["boxes"] = torch.from_numpy(np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 5).copy())
    out["labels"] = torch.from_numpy(np.asarray(sample["labels"], dtype=bool).copy())
    return out


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(high, (), generator=generator).item())


class TrainTransform:
    """Random scale, pad, random crop and horizontal flip, then normalise.

    Steps, in order:

    1. Scale by ``s ~ U(scale_range)``: bilinear for the image, centre sampling for the mask, box
       corners times the exact per-axis factor.
    2. Pad at the bottom/right up to ``crop_size``: the image with the mean colour (so it
       normalises to ~0), the mask with ``ignore_index``; ``valid`` is False there, and the
       E-step neither labels padding nor counts it in its shares (:func:`emseg.estep.make_targets`).
    3. Crop a uniformly placed ``crop_size`` window. Boxes are shifted and clipped to the window; a
       box left narrower or shorter than ``min_box_size`` pixels is dropped.
    4. Flip left-right with probability 0.5 (``x1, x2 -> W - x2, W - x1``).

    Labels of the crop: where the sample has boxes (the box modes), a class keeps its label only
    while one of its boxes keeps at least ``min_visible`` of its (scaled) area inside the crop, so
    that the E-step does not hand a class out of view a share of the crop. Classes without any box
    keep their label: the image-label modes read no box (``VOCSegmentation(boxes=False)``), so
    their crops keep every image label, as the paper's do. Boxes themselves are kept while at
    least ``min_box_size`` pixels wide and high: the part in view is still inside the object's box.
    """

    def __init__(
        self,
        crop_size: int | tuple[int, int],
        scale_range: tuple[float, float] = (0.5, 1.5),
        flip: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = IGNORE_INDEX,
        min_box_size: float = 2.0,
        min_visible: float = 0.5,
    ) -> None:
        self.crop_h, self.crop_w = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
        if self.crop_h < 1 or self.crop_w < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range = tuple(scale_range)
        self.flip = flip
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.ignore_index = ignore_index
        self.min_box_size = min_box_size
        if not 0.0 <= min_visible <= 1.0:
            raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")
        self.min_visible = min_visible
        self.pad_color = tuple(int(round(255 * m)) for m in self.mean)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        image, mask = sample["image"], sample["mask"]
        boxes = np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 5).copy()
        labels = np.asarray(sample["labels"], dtype=bool).copy()
        h, w = image.shape[:2]

        scale = _uniform(*self.scale_range, generator)
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        if (nh, nw) != (h, w):
            image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            mask = resize_nearest(mask, nh, nw)
            boxes[:, [0, 2]] *= nw / w
            boxes[:, [1, 3]] *= nh / h

        ph, pw = max(self.crop_h - nh, 0), max(self.crop_w - nw, 0)
        valid = np.ones((nh, nw), dtype=bool)
        if ph or pw:
            image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=self.pad_color)
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=self.ignore_index)
            valid = np.pad(valid, ((0, ph), (0, pw)), constant_values=False)

        y0 = _randint(image.shape[0] - self.crop_h + 1, generator)
        x0 = _randint(image.shape[1] - self.crop_w + 1, generator)
        image = image[y0 : y0 + self.crop_h, x0 : x0 + self.crop_w]
        mask = mask[y0 : y0 + self.crop_h, x0 : x0 + self.crop_w]
        valid = valid[y0 : y0 + self.crop_h, x0 : x0 + self.crop_w]
        full_area = _box_area(boxes)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] - x0, 0, self.crop_w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] - y0, 0, self.crop_h)
        in_view = _box_area(boxes) >= self.min_visible * full_area

        if self.flip and torch.rand((), generator=generator).item() < 0.5:
            image = image[:, ::-1]
            mask = mask[:, ::-1]
            valid = valid[:, ::-1]
            boxes[:, [0, 2]] = self.crop_w - boxes[:, [2, 0]]

        keep = (boxes[:, 2] - boxes[:, 0] >= self.min_box_size) & (boxes[:, 3] - boxes[:, 1] >= self.min_box_size)
        had = np.unique(boxes[:, 4].astype(np.int64))
        left = np.unique(boxes[keep & in_view, 4].astype(np.int64))
        for cls in had:
            if cls > 0 and cls not in left and cls < labels.size:
                labels[cls] = False
        boxes = boxes[keep]

        out = dict(sample, image=image, mask=mask, valid=valid, boxes=boxes, labels=labels)
        return to_tensors(out, self.mean, self.std)


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


class EvalTransform:
    """No geometric change: convert to tensors and normalise (evaluation runs at full resolution)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        return to_tensors(sample, self.mean, self.std)
