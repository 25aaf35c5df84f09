"""Readers and writers for the files of a PASCAL VOC / SBD tree.

Every reader raises :class:`DataError` naming the file when it cannot make sense of it, and
:class:`MissingDataError` (also a ``FileNotFoundError``) when the file is not there, so a user with
one broken file among ten thousand learns which one.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from ..estep import IGNORE_INDEX

__all__ = [
    "VOC_CLASSES",
    "IGNORE_INDEX",
    "DataError",
    "MissingDataError",
    "voc_palette",
    "read_image",
    "read_mask_png",
    "write_mask_png",
    "read_sbd_mat",
    "VOCObject",
    "parse_voc_xml",
    "write_voc_xml",
    "read_id_list",
    "read_text_lines",
    "files_digest",
    "mask_labels",
    "mask_boxes",
]

#: The 21 PASCAL VOC class names; index 0 is background.
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


class DataError(ValueError):
    """A data file is unreadable or inconsistent. ``path`` names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MissingDataError(DataError, FileNotFoundError):
    """A file the data set needs does not exist. ``path`` names the file that was looked for."""


def voc_palette() -> np.ndarray:
    """The VOC colour map as a ``[256, 3]`` uint8 array (index 255 is VOC's cream border colour)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[index] = (r, g, b)
    return palette


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingDataError(path, "file not found") from None
    except OSError as err:
        raise DataError(path, f"cannot read: {err}") from err


_JPEG_MARKER = re.compile(
    rb"\xff[^\x00\xd0-\xd7\xff]"
)  # a marker after entropy-coded data (not a stuffed 0xff, not a restart)


def jpeg_end(data: bytes) -> int | None:
    """The offset just past the end-of-image marker of the JPEG at the start of ``data``, or None
    when the data end before it (a truncated file). Walks the marker segments (skipping their
    lengths, and the entropy-coded data after each start-of-scan), so an end-of-image marker inside
    an embedded thumbnail does not count and data after the image (the video of a "motion photo")
    does not matter."""
    pos, n = 2, len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF:  # stray bytes between segments, which libjpeg skips as well
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                return None
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xD9:
            return pos + 2
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            pos += 2
            continue
        if pos + 4 > n:
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                return None
            pos = found.start()
    return None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an RGB uint8 array ``[H, W, 3]``.

    The format is told by the bytes, not the name (a PNG named ``.jpg`` reads as a PNG). The pixels
    are returned as stored, without applying an EXIF orientation. Truncated JPEGs decode
    "successfully" in libjpeg (the missing part comes back grey), so a JPEG that ends before its
    end-of-image marker is rejected here rather than trained on; bytes after the marker are fine.
    """
    path = Path(path)
    data = _read_bytes(path)
    if not data:
        raise DataError(path, "empty file (0 bytes), not an image")
    if data[:2] == b"\xff\xd8" and jpeg_end(data) is None:
        raise DataError(path, "truncated JPEG (the file ends before its end-of-image marker)")
    # EXIF orientation is ignored: masks are stored in the raw pixel order, and rotating only the
    # image would misalign them
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.size == 0:
        raise DataError(path, f"not a decodable image (JPEG, PNG, ...; its first bytes are {data[:8]!r})")
    return np.ascontiguousarray(image[:, :, ::-1])  # OpenCV decodes to BGR


def read_mask_png(path: str | os.PathLike) -> np.ndarray:
    """Read a VOC label PNG (palette or greyscale) to a uint8 array of class indices ``[H, W]``.

    The palette is not consulted: in VOC's PNGs the pixel values are the class indices. An RGB PNG
    (a colour rendering of the labels) is refused, since mapping colours back is guesswork.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, "file not found")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataError(path, f"expected a palette or greyscale label PNG, got mode {img.mode!r}")
            return np.array(img, dtype=np.uint8)
    except DataError:
        raise
    except Exception as err:  # Pillow raises a zoo of types for broken files
        raise DataError(path, f"not a readable PNG: {err}") from err


def write_mask_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write class indices ``[H, W]`` (uint8) as a palette PNG with the VOC colour map."""
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(voc_palette().tobytes())
    img.save(path, format="PNG", optimize=False)


def read_sbd_mat(path: str | os.PathLike) -> np.ndarray:
    """Read the class segmentation of an SBD ``cls/<id>.mat`` file (``GTcls.Segmentation``)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, "file not found")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as err:
        raise DataError(path, f"not a readable .mat file: {err}") from err
    try:
        seg = np.asarray(mat["GTcls"].Segmentation)
    except (KeyError, AttributeError):
        raise DataError(path, "no GTcls.Segmentation in the .mat file (expected SBD's cls/ format)") from None
    if seg.ndim != 2:
        raise DataError(path, f"GTcls.Segmentation has shape {seg.shape}, expected 2-D")
    return seg.astype(np.uint8)


@dataclass
class VOCObject:
    """One ``<object>`` of a VOC annotation, box in 0-based pixel corners with exclusive x2/y2."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False


@dataclass
class VOCAnnotation:
    """What a VOC XML says about one image."""

    width: int | None
    height: int | None
    objects: list[VOCObject] = field(default_factory=list)


def read_image_labels(path: str | Path, class_index: dict[str, int], num_classes: int) -> np.ndarray:
    """The classes a VOC XML names, as bool ``[num_classes]`` (background always set): only the
    objects' names are read, never a box, so an XML whose objects have no ``<bndbox>`` reads the same."""
    path = Path(path)
    try:
        root = ET.fromstring(_read_bytes(path))
    except ET.ParseError as err:
        raise DataError(path, f"malformed XML: {err}") from None
    labels = np.zeros(num_classes, dtype=bool)
    labels[0] = True
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip().lower()
        cls = class_index.get(name)
        if not cls:
            raise DataError(path, f"object {k}: unknown class name {name!r}")
        labels[cls] = True
    return labels


def parse_voc_xml(path: str | os.PathLike) -> VOCAnnotation:
    """Parse a VOC ``Annotations/<id>.xml``.

    VOC boxes are 1-based and inclusive (``xmin=1, xmax=W`` spans the whole image); they become
    0-based corners with exclusive ``x2``: ``x1 = xmin - 1``, ``x2 = xmax`` (same for y).
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise DataError(path, f"malformed XML: {err}") from None

    def number(node: ET.Element | None, tag: str, what: str) -> float:
        text = node.findtext(tag) if node is not None else None
        if text is None:
            raise DataError(path, f"{what}: missing <{tag}>")
        try:
            value = float(text)
        except ValueError:
            raise DataError(path, f"{what}: <{tag}> is {text!r}, not a number") from None
        if not math.isfinite(value):
            raise DataError(path, f"{what}: <{tag}> is {text.strip()!r}, not a finite number")
        return value

    size = root.find("size")
    width = height = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        width = int(number(size, "width", "size"))
        height = int(number(size, "height", "size"))
    objects = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(path, f"object {k} has no <name>")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DataError(path, f"object {k} ({name}) has no <bndbox>")
        what = f"object {k} ({name})"
        xmin, ymin = number(bnd, "xmin", what), number(bnd, "ymin", what)
        xmax, ymax = number(bnd, "xmax", what), number(bnd, "ymax", what)
        if xmax < xmin or ymax < ymin:
            raise DataError(path, f"{what} has an inverted box ({xmin}, {ymin}, {xmax}, {ymax})")
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append(VOCObject(name, (xmin - 1.0, ymin - 1.0, xmax, ymax), difficult))
    return VOCAnnotation(width, height, objects)


def write_voc_xml(
    path: str | os.PathLike,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[VOCObject],
    folder: str = "VOC2012",
) -> None:
    """Write a VOC annotation; boxes given as 0-based corners with exclusive x2/y2 (integers)."""
    lines = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{filename}</filename>",
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>",
        "\t<segmented>1</segmented>",
    ]
    for obj in objects:
        x1, y1, x2, y2 = (int(round(v)) for v in obj.box)
        lines += [
            "\t<object>",
            f"\t\t<name>{obj.name}</name>",
            "\t\t<truncated>0</truncated>",
            f"\t\t<difficult>{int(obj.difficult)}</difficult>",
            f"\t\t<bndbox>\n\t\t\t<xmin>{x1 + 1}</xmin>\n\t\t\t<ymin>{y1 + 1}</ymin>"
            f"\n\t\t\t<xmax>{x2}</xmax>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>\n")
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file, stripped, without blank lines; a UTF-8 byte order mark (as
    Windows editors write) is dropped, and text that is not UTF-8 is a :class:`DataError`."""
    path = Path(path)
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            path, f"not UTF-8 text (byte {err.start}: {err.object[err.start : err.start + 1]!r}); save it as UTF-8"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Read an image list: one id per line, taken whole (ids may hold dots, spaces and ``#``).

    Also accepts DeepLab's ``train_aug.txt`` style (``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``):
    a line whose first field is a path gives the name of that file without its suffix. Blank lines
    and lines starting with ``#`` are skipped.
    """
    ids = []
    for line in read_text_lines(path):
        if line.startswith("#"):
            continue
        first = line.split()[0]
        ids.append(PurePosixPath(first).stem if "/" in first else line)
    return ids


def files_digest(paths: Sequence[Path | None]) -> str:
    """A hash of the bytes of ``paths`` in order, each with its length, so the split between files
    is part of what is hashed ((A + B, C) and (A, B + C) differ); None (no file) differs from empty."""
    h = hashlib.blake2b(digest_size=16)
    for path in paths:
        if path is None:
            h.update(b"-")
            continue
        data = _read_bytes(path)
        h.update(b"+" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def mask_labels(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Image-level labels (bool ``[C]``, background always set) from the classes in a mask."""
    present = np.zeros(num_classes, dtype=bool)
    values = np.unique(mask)
    values = values[(values != IGNORE_INDEX) & (values < num_classes)]
    present[values] = True
    present[0] = True
    return present


def mask_boxes(mask: np.ndarray, num_classes: int, min_area: int = 1) -> np.ndarray:
    """Boxes ``[B, 5]`` (x1, y1, x2, y2, class) from the 8-connected components of each class.

    Used when an image has a mask but no XML. Components are an approximation of instances: an
    object cut in two by an occluder gives two boxes, and touching objects of a class give one.
    """
    rows = []
    for cls in range(1, num_classes):
        binary = (mask == cls).astype(np.uint8)
        if not binary.any():
            continue
        count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for k in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area >= min_area:
                rows.append((x, y, x + w, y + h, cls))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)
