"""Typed wrappers over ``torch.ops.emseg.*`` and their fake (meta) kernels.

Every native operator validates its inputs in its binding and raises ``RuntimeError`` with a
message naming the argument; :func:`center_prior`, written in torch, raises ``ValueError``. Each
wrapper is followed by its op's fake (meta) kernel, which describes the output shapes so
``torch.compile`` and ``torch.library.opcheck`` can trace the op without running it.

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

from .boxes import CENTER_PORTION, bbox_em_fixed, boxes_to_labels, center_prior
from .crf import CRF_DEFAULTS, dense_crf, permutohedral_filter
from .estep import em_adapt, em_fixed

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
