"""Image-level labels only: the data a classification pretraining may see.

:class:`ImageLabelSet` reads a split's images and, from each ``Annotations/<id>.xml``, the names of
the classes it shows; it never reads a box (an XML whose objects have no ``<bndbox>`` reads the
same) and opens a mask only for an image without XML, for the classes in it, so what is trained
from it cannot depend on pixel or box labels.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import cv2
import numpy as np

from .io import files_digest, mask_labels, read_image, read_image_labels
from .voc import VOCSegmentation

__all__ = ["ImageLabelSet", "read_image_labels"]


class ImageLabelSet:
    """A split's images, each resized so its longer side is ``size`` and centred on a ``size`` x
    ``size`` canvas of the mean colour, with their image labels.

    Images are found as :class:`VOCSegmentation` finds them (``JPEGImages/<id>.jpg``, ``.jpeg``,
    ``.png``, SBD's ``img/``). Labels come from the XML; an image without one (a tree of masks and no
    ``Annotations/``) takes the classes present in its mask, which says no more than an XML would.
    ``labels`` bool ``[N, C]``; ``images`` uint8 ``[N, size, size, 3]``, decoded when first used (a
    cache hit needs only the digest); ``digest``: a hash of the image files' bytes and the labels
    (part of the pretraining cache key).
    """

    def __init__(self, root: str | Path, split: str, size: int, fill: tuple[int, int, int]) -> None:
        ds = VOCSegmentation(root, split, transform=None, boxes=False)  # image labels: no box is read
        self.class_names, self.num_classes, self.ids = ds.class_names, ds.num_classes, ds.ids
        index = {name.lower(): k for k, name in enumerate(self.class_names)}
        labels = np.zeros((len(self.ids), self.num_classes), dtype=bool)
        for n, (_, xml, mask) in enumerate(ds.files()):
            labels[n] = (
                read_image_labels(xml, index, self.num_classes)
                if xml is not None
                else mask_labels(ds.read_mask(mask), self.num_classes)
            )
        self._paths = [image for image, _, _ in ds.files()]
        digest = hashlib.blake2b(files_digest(self._paths).encode(), digest_size=16)
        digest.update(np.packbits(labels).tobytes())
        self.labels, self.digest = labels, digest.hexdigest()
        self._size, self._fill = size, fill

    @functools.cached_property
    def images(self) -> np.ndarray:
        images = np.empty((len(self.ids), self._size, self._size, 3), dtype=np.uint8)
        for n, path in enumerate(self._paths):
            images[n] = fit_on_canvas(read_image(path), self._size, self._fill)
        return images

    def __len__(self) -> int:
        return len(self.ids)


def fit_on_canvas(image: np.ndarray, size: int, fill: tuple[int, int, int]) -> np.ndarray:
    """``image`` scaled so its longer side is ``size``, centred on a ``size`` square of ``fill``:
    nothing of the image is cut off, so its image labels stay true."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = fill
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas
