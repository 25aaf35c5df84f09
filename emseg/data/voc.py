"""PASCAL VOC 2012 with the SBD augmentation, read from the layout people have on disk.

::

    root/
      JPEGImages/<id>.jpg              images (SBD's img/<id>.jpg also accepted)
      Annotations/<id>.xml             VOC XML: object names and boxes
      SegmentationClassAug/<id>.png    palette PNG masks, 255 = ignore     (looked for first)
      SegmentationClass/<id>.png       VOC's own masks                    (then)
      cls/<id>.mat                     SBD masks (GTcls.Segmentation)      (then)
      ImageSets/Segmentation/<split>.txt  or  <split>.txt at the root
      classes.txt                      optional: class names, one a line, background first

Per image: the mask (strong supervision), the image-level labels and the boxes. Labels and boxes
come from the XML (every object, "difficult" ones included); an image without XML gets its labels
from the classes in its mask and its boxes from the 8-connected components of each class in the mask
(:func:`emseg.data.io.mask_boxes`). An external ``annotations`` source (e.g. :class:`CocoBoxes`)
takes precedence over both for the images it knows.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .io import (
    IGNORE_INDEX,
    VOC_CLASSES,
    DataError,
    MissingDataError,
    mask_boxes,
    mask_labels,
    parse_voc_xml,
    read_id_list,
    read_image,
    read_image_labels,
    read_mask_png,
    read_sbd_mat,
    read_text_lines,
)
from .transforms import EvalTransform

__all__ = ["VOCSegmentation", "collate", "find_list", "read_class_names", "Annotations", "check_split"]

_IMAGE_DIRS = (("JPEGImages", (".jpg", ".jpeg", ".png")), ("img", (".jpg",)))
#: Where an image's class mask is looked for, in this order: (folder, suffix).
CLASS_MASK_DIRS = (("SegmentationClassAug", ".png"), ("SegmentationClass", ".png"), ("cls", ".mat"))
PNG_MASK_DIRS = tuple(d for d in CLASS_MASK_DIRS if d[1] == ".png")
#: Every folder of a VOC / SBD tree that holds masks, class or instance.
MASK_FOLDERS = frozenset({folder for folder, _ in CLASS_MASK_DIRS} | {"SegmentationObject", "inst"})


class Annotations(Protocol):
    """A source of image-level labels and boxes keyed by image id (see :class:`CocoBoxes`)."""

    def get(self, image_id: str, num_classes: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(labels bool [C], boxes float32 [B, 5])`` for the image, or None if unknown."""


@dataclass
class _Entry:
    id: str
    image: Path
    xml: Path | None
    mask: Path | None


def find_list(root: str | os.PathLike, split: str | os.PathLike) -> Path:
    """Resolve ``split`` to a list file: a path, or a name under ``ImageSets/Segmentation/`` or ``root``."""
    root = Path(root)
    direct = Path(split)
    if direct.suffix == ".txt" and direct.is_file():
        return direct
    name = str(split) if str(split).endswith(".txt") else f"{split}.txt"
    candidates = [
        root / "ImageSets" / "Segmentation" / name,
        root / "ImageSets" / "SegmentationAug" / name,
        root / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise MissingDataError(
        candidates[0],
        f"no image list for split {str(split)!r} (also looked in " + ", ".join(str(p) for p in candidates[1:]) + ")",
    )


def read_class_names(root: str | os.PathLike) -> tuple[str, ...]:
    """Class names from ``root/classes.txt`` when present, else VOC's 21. Names are matched without
    case (an XML's ``Dog`` is ``dog``), so two that differ only in case are refused."""
    path = Path(root) / "classes.txt"
    if not path.is_file():
        return VOC_CLASSES
    names = tuple(read_text_lines(path))
    if len(names) < 2:
        raise DataError(path, "needs at least two class names (background first)")
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            same = "repeats" if seen[name.lower()] == name else f"and {seen[name.lower()]!r} differ only in case"
            raise DataError(path, f"class name {name!r} {same} (names are matched without case)")
        seen[name.lower()] = name
    return names


def first_existing(root: Path, image_id: str, dirs: Sequence[tuple[str, Any]]) -> Path | None:
    """The first ``root/folder/<image_id><suffix>`` that exists, in the order of ``dirs``."""
    for folder, suffixes in dirs:
        for suffix in (suffixes,) if isinstance(suffixes, str) else suffixes:
            path = root / folder / f"{image_id}{suffix}"
            if path.is_file():
                return path
    return None


class VOCSegmentation(Dataset):
    """PASCAL VOC / SBD segmentation data with strong masks, image labels and boxes.

    Args:
        root: the VOC tree (see the module docstring).
        split: ``"train_aug"``, ``"val"``, another list name, or a path to a list file.
        transform: paired transform (:class:`TrainTransform`, :class:`EvalTransform`); default
            :class:`EvalTransform` (tensors, ImageNet normalisation, no geometric change).
        strong_ids: ids whose masks are used. None: every image that has a mask is strong. A weak
            image's mask is hidden (all ``255``) so no pixel label can leak into weak training.
            Ids not in the split are ignored; a listed id without a mask is an error.
        skip_corrupt: False: a missing or unreadable file raises :class:`DataError` (or
            :class:`MissingDataError`) naming it. True: every sample is read once at construction
            and the broken ones are dropped and listed in ``.skipped`` as ``(id, path, reason)``.
        annotations: optional source of labels/boxes that overrides the XML (e.g. :class:`CocoBoxes`).
        class_names: overrides ``classes.txt`` / VOC's names.
        boxes: False reads no box anywhere (image labels only: the XML's object names, the
            external source's labels, or the mask's classes); ``boxes`` is then empty ``[0, 5]``.

    ``__getitem__`` returns a dict: ``image`` float32 ``[3, H, W]``, ``image_uint8`` uint8
    ``[3, H, W]``, ``mask`` int64 ``[H, W]``, ``labels`` bool ``[C]`` (background always True),
    ``boxes`` float32 ``[B, 5]``, ``strong`` bool, ``id`` str, ``index`` int.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | os.PathLike = "train_aug",
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        strong_ids: Iterable[str] | None = None,
        skip_corrupt: bool = False,
        annotations: Annotations | None = None,
        class_names: Sequence[str] | None = None,
        progress: bool = False,
        boxes: bool = True,
    ) -> None:
        self.root = Path(root)
        self.boxes = boxes
        if not self.root.is_dir():
            raise MissingDataError(self.root, "data set root is not a directory")
        self.class_names = tuple(class_names) if class_names is not None else read_class_names(self.root)
        self.num_classes = len(self.class_names)
        self._class_index = {name.lower(): k for k, name in enumerate(self.class_names)}
        self.transform = transform if transform is not None else EvalTransform()
        self.annotations = annotations
        self.skip_corrupt = skip_corrupt
        self.skipped: list[tuple[str, str, str]] = []
        self.list_file = find_list(self.root, split)

        listed = read_id_list(self.list_file)
        if not listed:
            raise DataError(self.list_file, "the image list is empty")
        entries = []
        for image_id in listed:
            try:
                entries.append(self._locate(image_id))
            except DataError as err:
                if not skip_corrupt:
                    raise
                self.skipped.append((image_id, err.path, err.reason))
        self._entries = entries
        self._strong_ids = None if strong_ids is None else set(strong_ids)
        for entry in self._entries:
            if self._strong_ids is not None and entry.id in self._strong_ids and entry.mask is None:
                raise MissingDataError(
                    self.root / "SegmentationClassAug" / f"{entry.id}.png",
                    f"image {entry.id!r} is listed as strong but has no mask",
                )
        if skip_corrupt:
            self._verify(progress)

    # -- construction -------------------------------------------------------------------------
    def _locate(self, image_id: str) -> _Entry:
        image = first_existing(self.root, image_id, _IMAGE_DIRS)
        if image is None:
            raise MissingDataError(self.root / "JPEGImages" / f"{image_id}.jpg", "image not found")
        xml = self.root / "Annotations" / f"{image_id}.xml"
        mask = first_existing(self.root, image_id, CLASS_MASK_DIRS)
        xml_path = xml if xml.is_file() else None
        if xml_path is None and mask is None and not self._external_knows(image_id):
            raise MissingDataError(xml, f"image {image_id!r} has neither an XML annotation nor a mask")
        return _Entry(image_id, image, xml_path, mask)

    def _external_knows(self, image_id: str) -> bool:
        return self.annotations is not None and self.annotations.get(image_id, self.num_classes) is not None

    def _verify(self, progress: bool) -> None:
        good = []
        for entry in tqdm(self._entries, desc="checking files", disable=not progress):
            try:
                self._read(entry, strong=entry.mask is not None)
            except DataError as err:
                self.skipped.append((entry.id, err.path, err.reason))
            else:
                good.append(entry)
        self._entries = good

    # -- reading ------------------------------------------------------------------------------
    def read_mask(self, path: Path) -> np.ndarray:
        mask = read_sbd_mat(path) if path.suffix == ".mat" else read_mask_png(path)
        bad = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
        if bad.any():
            raise DataError(
                path,
                f"mask value {int(mask[bad].max())} is not a class index "
                f"(0..{self.num_classes - 1}) nor {IGNORE_INDEX}",
            )
        return mask

    def _labels_boxes_from_xml(self, path: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and boxes of the XML, checked against the image: its <size> (when given) and
        every box reaching into the image."""
        ann = parse_voc_xml(path)
        if ann.width is not None and (ann.width, ann.height) != (width, height):
            raise DataError(path, f"<size> says {ann.width}x{ann.height} but the image is {width}x{height}")
        for k, obj in enumerate(ann.objects):
            x1, y1, x2, y2 = obj.box
            if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
                raise DataError(
                    path, f"object {k} ({obj.name}) has its box {obj.box} entirely outside the {width}x{height} image"
                )
        labels = np.zeros(self.num_classes, dtype=bool)
        labels[0] = True
        rows = []
        for obj in ann.objects:
            cls = self._class_index.get(obj.name.lower())
            if cls is None or cls == 0:
                raise DataError(path, f"unknown class name {obj.name!r} (classes: {', '.join(self.class_names[1:])})")
            labels[cls] = True
            rows.append((*obj.box, cls))
        return labels, np.asarray(rows, dtype=np.float32).reshape(-1, 5)

    def _read(self, entry: _Entry, strong: bool) -> dict[str, Any]:
        image = read_image(entry.image)
        h, w = image.shape[:2]
        mask = None
        if entry.mask is not None and (strong or entry.xml is None):
            mask = self.read_mask(entry.mask)
            if mask.shape != (h, w):
                raise DataError(
                    entry.mask, f"mask is {mask.shape[1]}x{mask.shape[0]} but the image {entry.image.name} is {w}x{h}"
                )
        external = self.annotations.get(entry.id, self.num_classes) if self.annotations is not None else None
        no_boxes = np.zeros((0, 5), dtype=np.float32)
        if external is not None:
            labels, boxes = external[0], external[1] if self.boxes else no_boxes
        elif entry.xml is not None and not self.boxes:
            labels, boxes = read_image_labels(entry.xml, self._class_index, self.num_classes), no_boxes
        elif entry.xml is not None:
            labels, boxes = self._labels_boxes_from_xml(entry.xml, w, h)
        else:
            assert mask is not None
            labels = mask_labels(mask, self.num_classes)
            boxes = mask_boxes(mask, self.num_classes) if self.boxes else no_boxes
        if not strong or mask is None:
            mask = np.full((h, w), IGNORE_INDEX, dtype=np.uint8)
        return {
            "image": image,
            "mask": mask,
            "labels": np.asarray(labels, dtype=bool),
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 5),
            "strong": strong,
            "id": entry.id,
        }

    def files(self) -> list[tuple[Path, Path | None, Path | None]]:
        """``(image, xml, mask)`` of every image in list order (None: the image has no such file)."""
        return [(e.image, e.xml, e.mask) for e in self._entries]

    def fingerprint(self) -> str:
        """A hash of the ids, the class names and the names and sizes of the files read (not their
        bytes: cheap on every run): the same data moved elsewhere keeps it, other data does not."""
        h = hashlib.blake2b(digest_size=16)
        h.update(repr(self.class_names).encode())
        for entry in self._entries:
            sizes = [None if p is None else (p.name, p.stat().st_size) for p in (entry.image, entry.xml, entry.mask)]
            h.update(repr((entry.id, sizes)).encode())
        return h.hexdigest()

    def is_strong(self, index: int) -> bool:
        """Whether the image at ``index`` is trained with its mask."""
        entry = self._entries[index]
        return entry.mask is not None and (self._strong_ids is None or entry.id in self._strong_ids)

    @property
    def ids(self) -> list[str]:
        """Image ids in list order (after skipping broken ones)."""
        return [e.id for e in self._entries]

    @property
    def strong_indices(self) -> list[int]:
        """Indices of the strong images (for :class:`StrongWeakBatchSampler`)."""
        return [i for i in range(len(self)) if self.is_strong(i)]

    @property
    def weak_indices(self) -> list[int]:
        """Indices of the weak images: no mask, or not in ``strong_ids``."""
        return [i for i in range(len(self)) if not self.is_strong(i)]

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self._read(self._entries[index], self.is_strong(index))
        sample["index"] = index
        return self.transform(sample)

    def __repr__(self) -> str:
        strong = len(self.strong_indices)
        return (
            f"VOCSegmentation(root={str(self.root)!r}, list={self.list_file.name!r}, images={len(self)}, "
            f"strong={strong}, weak={len(self) - strong}, classes={self.num_classes}, "
            f"skipped={len(self.skipped)})"
        )


def check_split(root: str | os.PathLike, split: str | os.PathLike, what: str = "", boxes: bool = True) -> None:
    """Read every file of a split once (as ``python -m emseg.data check`` does) and raise a
    :class:`DataError` naming the first broken one: a run finds it before it trains, not after.
    ``boxes=False``: a split read for its images and masks only (validation), whose XML boxes no
    one reads."""
    ds = VOCSegmentation(root, split, skip_corrupt=True, boxes=boxes)
    if ds.skipped:
        _, path, reason = ds.skipped[0]
        more = f"; {len(ds.skipped) - 1} more broken" if len(ds.skipped) > 1 else ""
        raise DataError(
            path,
            f"{reason} ({what or 'split'} {str(split)!r}{more}; python -m emseg.data check "
            f"{root} --split {split} lists them)",
        )


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples from :class:`VOCSegmentation`.

    Images of different sizes are padded at the bottom/right to the largest: ``image`` with 0 (the
    normalised mean), ``image_uint8`` with 0, ``mask`` with 255, ``valid`` with False; ``size`` int64
    ``[N, 2]`` holds each image's own (height, width). Boxes are padded to the largest
    count (at least one row) with rows ``(0, 0, 0, 0, -1)``, which cover nothing.
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    n = len(samples)
    height = max(s["image"].shape[-2] for s in samples)
    width = max(s["image"].shape[-1] for s in samples)
    image = samples[0]["image"].new_zeros((n, 3, height, width))
    uint8 = torch.zeros((n, 3, height, width), dtype=torch.uint8)
    mask = torch.full((n, height, width), IGNORE_INDEX, dtype=torch.int64)
    valid = torch.zeros((n, height, width), dtype=torch.bool)
    nbox = max(1, max(s["boxes"].shape[0] for s in samples))
    boxes = torch.zeros((n, nbox, 5), dtype=torch.float32)
    boxes[:, :, 4] = -1
    for k, s in enumerate(samples):
        h, w = s["image"].shape[-2:]
        image[k, :, :h, :w] = s["image"]
        uint8[k, :, :h, :w] = s["image_uint8"]
        mask[k, :h, :w] = s["mask"]
        valid[k, :h, :w] = s["valid"] if "valid" in s else True
        boxes[k, : s["boxes"].shape[0]] = s["boxes"]
    return {
        "image": image,
        "image_uint8": uint8,
        "mask": mask,
        "valid": valid,
        "labels": torch.stack([torch.as_tensor(s["labels"], dtype=torch.bool) for s in samples]),
        "boxes": boxes,
        "strong": torch.tensor([bool(s["strong"]) for s in samples], dtype=torch.bool),
        "id": [s["id"] for s in samples],
        "index": torch.tensor([int(s["index"]) for s in samples], dtype=torch.int64),
        "size": torch.tensor([list(s["image"].shape[-2:]) for s in samples], dtype=torch.int64),
    }
