"""Data: PASCAL VOC / SBD, COCO-style boxes, the synthetic set, paired transforms, strong/weak batches.

Masks use 255 for "ignore"; class 0 is background. Boxes are rows ``(x1, y1, x2, y2, class)`` in
pixel corners with exclusive x2/y2, the convention of :mod:`emseg.ops`.
"""

from .coco import CocoBoxes
from .io import IGNORE_INDEX, VOC_CLASSES, DataError, MissingDataError
from .sampler import StrongWeakBatchSampler, select_strong, strong_per_batch
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_voc
from .transforms import EvalTransform, TrainTransform
from .voc import VOCSegmentation, check_split, collate

__all__ = [
    "VOC_CLASSES",
    "SYNTHETIC_CLASSES",
    "IGNORE_INDEX",
    "DataError",
    "MissingDataError",
    "VOCSegmentation",
    "check_split",
    "collate",
    "CocoBoxes",
    "TrainTransform",
    "EvalTransform",
    "make_synthetic_voc",
    "select_strong",
    "strong_per_batch",
    "StrongWeakBatchSampler",
]
