"""Image labels and boxes from a COCO-style JSON (e.g. a detector's training data or its output).

Reading labels and boxes needs only the standard library. Rasterising COCO segmentations into a
class mask (:meth:`CocoBoxes.class_mask`) needs pycocotools, the optional extra ``emseg[coco]``.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .io import VOC_CLASSES, DataError, MissingDataError

__all__ = ["CocoBoxes", "COCO_TO_VOC"]

#: COCO category names that differ from VOC's for the same class.
COCO_TO_VOC: dict[str, str] = {
    "airplane": "aeroplane",
    "motorcycle": "motorbike",
    "couch": "sofa",
    "dining table": "diningtable",
    "potted plant": "pottedplant",
    "tv": "tvmonitor",
}


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.lower())


class CocoBoxes:
    """Labels and boxes per image from a COCO JSON, usable as ``VOCSegmentation(annotations=...)``.

    Images are keyed by the stem of ``file_name`` (``"2007_000032.jpg"`` -> ``"2007_000032"``), so a
    COCO file describing VOC images plugs into the VOC loader. Categories map to ``class_names`` by
    name (case, spaces, ``_`` and ``-`` ignored, COCO's names translated by :data:`COCO_TO_VOC`) or by
    an explicit ``category_map`` from COCO category id or name to class name or index. Annotations of
    unmapped categories are dropped and their names listed in ``.unmapped``. COCO's ``bbox`` is
    ``[x, y, w, h]`` in 0-based pixels, so the box is ``(x, y, x + w, y + h)``. Crowd annotations are
    skipped unless ``include_crowd``; ``min_score`` filters detector output that carries a ``score``.
    """

    def __init__(
        self,
        json_path: str | os.PathLike,
        class_names: Sequence[str] = VOC_CLASSES,
        category_map: Mapping[int | str, int | str] | None = None,
        include_crowd: bool = False,
        min_score: float | None = None,
    ) -> None:
        self.path = Path(json_path)
        if not self.path.is_file():
            raise MissingDataError(self.path, "COCO JSON not found")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(self.path, f"malformed JSON: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise DataError(self.path, "expected a COCO object with 'images', 'annotations' and 'categories'")
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.unmapped: set[str] = set()
        self._json: dict | None = None  # segmentations, loaded again only by class_mask (keeps pickles small)
        self._index = {_norm(n): k for k, n in enumerate(self.class_names)}
        self._read_categories(data.get("categories", []), category_map)
        self._read_images(data.get("images", []))
        self._rows: dict[str, list[tuple[float, float, float, float, int]]] = {s: [] for s in self._stem.values()}
        for k, ann in enumerate(data["annotations"]):
            row = self._box_row(k, ann, include_crowd, min_score)
            if row is not None:
                self._rows[self._stem[row[0]]].append(row[1])

    def _field(self, record: dict, key: str, what: str):
        if not isinstance(record, dict) or key not in record:
            raise DataError(self.path, f"{what} has no {key!r}")
        return record[key]

    def _integer(self, record: dict, key: str, what: str) -> int:
        value = self._field(record, key, what)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise DataError(self.path, f"{what}: {key!r} is {value!r}, expected an integer id")
        return int(value)

    def _to_class(self, value: int | str) -> int:
        """A category_map target (class index or name) as a foreground class index."""
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 < int(value) < self.num_classes:
                raise ValueError(
                    f"category_map maps to index {value}, not a foreground class index "
                    f"1..{self.num_classes - 1} of {self.class_names}"
                )
            return int(value)
        if self._index.get(_norm(str(value)), 0) == 0:
            raise ValueError(f"category_map names {value!r}, not one of the foreground classes {self.class_names[1:]}")
        return self._index[_norm(str(value))]

    def _read_categories(self, categories: list, category_map: Mapping[int | str, int | str] | None) -> None:
        for target in (category_map or {}).values():  # every target, also of categories the JSON lacks
            self._to_class(target)
        self._category: dict[int, int] = {}
        for k, cat in enumerate(categories):
            cid = self._integer(cat, "id", f"category {k}")
            name = str(cat.get("name", cid))
            if category_map is not None:
                target = category_map.get(cid, category_map.get(name))
                if target is not None:
                    self._category[cid] = self._to_class(target)
                else:
                    self.unmapped.add(name)
                continue
            key = _norm(COCO_TO_VOC.get(name.lower(), name))
            if self._index.get(key, 0) > 0:
                self._category[cid] = self._index[key]
            else:
                self.unmapped.add(name)

    def _read_images(self, images: list) -> None:
        self._stem: dict[int, str] = {}
        files: dict[str, str] = {}
        for k, img in enumerate(images):
            file_name = str(self._field(img, "file_name", f"image {k}"))
            stem = Path(file_name).stem
            if files.get(stem, file_name) != file_name:  # both would be image id `stem`: their boxes would merge
                raise DataError(
                    self.path,
                    f"images {files[stem]!r} and {file_name!r} have one stem, {stem!r}, so one "
                    "image id; give them distinct names",
                )
            files[stem] = file_name
            self._stem[self._integer(img, "id", f"image {k}")] = stem

    def _box_row(self, k: int, ann: dict, include_crowd: bool, min_score: float | None):
        """(COCO image id, (x1, y1, x2, y2, class)) of annotation ``k``, or None where it is left out."""
        image_id = self._integer(ann, "image_id", f"annotation {k}")
        if image_id not in self._stem:
            raise DataError(self.path, f"annotation {k} refers to image_id {image_id}, which is not in 'images'")
        cls = self._category.get(self._integer(ann, "category_id", f"annotation {k}"))
        if cls is None or (ann.get("iscrowd", 0) and not include_crowd):
            return None
        score = ann.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise DataError(self.path, f"annotation {k}: 'score' is {score!r}, expected a number")
        if min_score is not None and score < min_score:
            return None
        bbox = ann.get("bbox")
        numbers = (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
        )
        if not numbers or bbox[2] < 0 or bbox[3] < 0:
            raise DataError(
                self.path, f"annotation {k} has bbox {bbox!r}; expected [x, y, w, h], finite numbers with w, h >= 0"
            )
        x, y, w, h = (float(v) for v in bbox)
        return image_id, (x, y, x + w, y + h, cls)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._rows

    @property
    def ids(self) -> list[str]:
        return sorted(self._rows)

    def get(self, image_id: str, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """``(labels bool [C], boxes float32 [B, 5])`` for an image id, None if the JSON lacks it."""
        rows = self._rows.get(image_id)
        if rows is None:
            return None
        num_classes = self.num_classes if num_classes is None else num_classes
        boxes = np.asarray(rows, dtype=np.float32).reshape(-1, 5)
        labels = np.zeros(num_classes, dtype=bool)
        labels[0] = True
        labels[boxes[:, 4].astype(np.int64)] = True
        return labels, boxes

    def class_mask(self, image_id: str, height: int, width: int) -> np.ndarray:
        """Rasterise the image's segmentations to a class mask (later annotations on top). Needs pycocotools."""
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            raise ImportError(
                "CocoBoxes.class_mask needs pycocotools: pip install 'emseg[coco]' (or pip install pycocotools)"
            ) from None
        ids = [i for i, stem in self._stem.items() if stem == image_id]
        if not ids:
            raise KeyError(image_id)
        if self._json is None:
            self._json = json.loads(self.path.read_text(encoding="utf-8"))
        out = np.zeros((height, width), dtype=np.uint8)
        for ann in self._json["annotations"]:
            if int(ann["image_id"]) not in ids or "segmentation" not in ann:
                continue
            cls = self._category.get(int(ann["category_id"]))
            if cls is None:
                continue
            seg = ann["segmentation"]
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
            elif isinstance(seg.get("counts"), list):
                rle = mask_utils.frPyObjects(seg, height, width)
            else:
                rle = seg
            out[mask_utils.decode(rle).astype(bool)] = cls
        return out
