"""Image-level labels only: the data a classification pretraining may see.

:class:`ImageLabelSet` reads a split's images and, from each ``Annotations/<id>.xml``, the names of
the classes it shows; it never opens a mask and never reads a box (an XML whose objects have no
``<bndbox>`` reads the same), so what is trained from it cannot depend on pixel or box labels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from .io import DataError, MissingDataError, read_id_list, read_image, read_image_labels
from .voc import find_list, read_class_names

__all__ = ["ImageLabelSet", "read_image_labels"]


class ImageLabelSet:
    """A split's images, each resized so its longer side is ``size`` and centred on a ``size`` x
    ``size`` canvas of the mean colour, with their image labels.

    ``images`` uint8 ``[N, size, size, 3]``, ``labels`` bool ``[N, C]``, ``digest``: a hash of the
    image files' bytes and the labels (part of the pretraining cache key).
    """

    def __init__(self, root: str | Path, split: str, size: int, fill: tuple[int, int, int]) -> None:
        root = Path(root)
        self.class_names = read_class_names(root)
        self.num_classes = len(self.class_names)
        index = {name.lower(): k for k, name in enumerate(self.class_names)}
        self.ids = read_id_list(find_list(root, split))
        if not self.ids:
            raise DataError(find_list(root, split), "the image list is empty")
        digest = hashlib.blake2b(digest_size=16)
        images = np.empty((len(self.ids), size, size, 3), dtype=np.uint8)
        labels = np.zeros((len(self.ids), self.num_classes), dtype=bool)
        for n, image_id in enumerate(self.ids):
            path = root / "JPEGImages" / f"{image_id}.jpg"
            if not path.is_file():
                raise MissingDataError(path, "file not found")
            digest.update(path.read_bytes())
            image = read_image(path)
            labels[n] = read_image_labels(root / "Annotations" / f"{image_id}.xml", index, self.num_classes)
            images[n] = fit_on_canvas(image, size, fill)
        digest.update(np.packbits(labels).tobytes())
        self.images, self.labels, self.digest = images, labels, digest.hexdigest()

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
