"""A synthetic VOC-like data set, the offline default.

Six object classes, each a shape with its own colour family and texture::

    disc      red,    plain       square  blue,   stripes     triangle  green,  dots
    star      red,    stripes     ring    blue,   plain       cross     yellow, checker

Disc and star share a colour, square and ring share a colour, and stripes appear on two classes,
so no single cue names a class: the network must combine shape, colour and texture. Backgrounds
are cluttered: a colour gradient, blotchy low-frequency noise, pixel noise and 3-8 distractor
patches (elongated ellipses, bars, lines, irregular polygons) in colours and textures borrowed from
the classes; distractors are background. Objects are drawn in order so later ones occlude earlier
ones (every object keeps at least 40% of its area visible). An occasional thin line crosses in
front of objects.

The statistics follow PASCAL VOC 2012, where the paper's settings were chosen (EM-Adapt's shares:
at least 20 % of an image for each present class, 40 % for background):

=========================  ==================================  =======================================
                           VOC 2012 (segmentation sets)        this set (64 px, 400 training images)
=========================  ==================================  =======================================
objects per image          2.4 (3507 in 1464 train images,     1.7
                           the devkit's statistics)
classes per image          about 1.5, most images one class    1.36, 68 % of images one class
                           (assumption: commonly quoted)
foreground share           about 30 % of the labelled pixels   27 % (at most 55 %)
                           (assumption: commonly quoted)
share of a present class   about 20 % (assumption, implied by  median 17 %, 10-90 %: 8.5-35 %
                           the paper's rho_fg = 20 %)
=========================  ==================================  =======================================

The right column is measured (``python -m emseg.data stats data/synthetic-voc``, the default set);
the assumptions are not (no VOC copy here: the same command measures one). The small model's
receptive field at the default 64 px crops is 43 px (:func:`emseg.models.context_for_crop`: 0.70
of the crop, as DeepLab-LargeFOV's 224 px on 321 px VOC crops), 1.6 times the side of a square of
a median present class's area here; LargeFOV's is about 1.15 times that of a class covering 20 %
of a 500x375 VOC image.

A ``pretrain`` split (``--synthetic-pretrain`` images, default 1600) plays ImageNet's part for the
classification pretraining (:mod:`emseg.pretrain`): its images are new draws, written with XML
annotations but no masks.

Written in VOC layout so it goes through :class:`VOCSegmentation` like the real data::

    JPEGImages/<id>.jpg                   quality 90
    SegmentationClassAug/<id>.png         palette PNG, 255 on a 2-pixel band along every class
                                          boundary (as VOC's object outlines)
    Annotations/<id>.xml                  VOC XML, tight boxes around each object's visible pixels
                                          (so boxes include background: ring holes, star gaps, corners)
    ImageSets/Segmentation/{train_aug,train,val,pretrain}.txt
                                          train.txt: the first 1/7 of train_aug (VOC's train/train_aug
                                          ratio), a ready-made strong list
    classes.txt, synthetic.json           class names; generation parameters (marks completion)

Every image is drawn from its own generator seeded by ``(seed, split, index)``: the same seed gives
byte-identical files, and images do not depend on how many others are generated.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..files import build_folder
from .io import IGNORE_INDEX, VOCObject, write_mask_png, write_voc_xml
from .synthetic_draw import STYLE, background, fill_outlines, jitter_colour, polygon, texture

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_DEFAULTS",
    "SYNTHETIC_SPLITS",
    "make_synthetic_voc",
    "render_synthetic_image",
    "holds_data_set",
]

SYNTHETIC_CLASSES: tuple[str, ...] = ("background", "disc", "square", "triangle", "star", "ring", "cross")
#: The image lists the synthetic set writes (train is the first seventh of train_aug).
SYNTHETIC_SPLITS: tuple[str, ...] = ("train_aug", "train", "val", "test", "pretrain")
#: The built-in set, whichever command writes it (``python -m emseg.train``, ``python -m emseg.data
#: synthetic``): settings are chosen on ``val``, results reported on ``test``.
SYNTHETIC_DEFAULTS = {"num_train": 400, "num_val": 100, "num_test": 200, "num_pretrain": 1600, "image_size": 64}

_FORMAT_VERSION = 3
_MIN_VISIBLE = 0.4


#: How many classes an image shows (1, 2 or 3) and the chance of a second object of a class:
#: about 1.4 classes and 1.7 objects per image, mostly one class, as in VOC (see the module notes).
_CLASS_COUNT_P = (0.65, 0.27, 0.08)
_SECOND_INSTANCE_P = 0.25
#: Area share of an image's first object, log-uniform: a present class covers 8-40 % of the image
#: (median about 18 %), foreground as a whole stays under _MAX_FOREGROUND.
_AREA_RANGE = (0.12, 0.45)
_MAX_FOREGROUND = 0.55


def class_plan(
    rng: np.random.Generator, num_classes: int, max_objects: int = 4, area_range: tuple[float, float] = _AREA_RANGE
) -> list[tuple[int, float]]:
    """The objects of one image as ``(class, area share)``, drawn in order (later ones in front):
    1-3 distinct classes, sometimes a second object of a class, the first object's share
    log-uniform in ``area_range``, later ones 0.5-1 times it (none under a quarter of its low end, nor
    under 3 %), all together under _MAX_FOREGROUND."""
    count = 1 + int(rng.choice(len(_CLASS_COUNT_P), p=_CLASS_COUNT_P))
    plan = []
    for cls in rng.choice(np.arange(1, num_classes + 1), size=min(count, num_classes), replace=False):
        plan.append(int(cls))
        if rng.random() < _SECOND_INSTANCE_P:
            plan.append(int(cls))
    first = math.exp(rng.uniform(*np.log(area_range)))
    smallest = min(0.03, area_range[0] / 4)
    out, total = [], 0.0
    for k, cls in enumerate(plan[:max_objects]):
        share = min(first if k == 0 else first * rng.uniform(0.5, 1.0), _MAX_FOREGROUND - total)
        if share < smallest:
            break
        out.append((cls, share))
        total += share
    return out


def ignore_boundaries(labels: np.ndarray) -> np.ndarray:
    """VOC marks object outlines as "ignore": a pixel whose 3x3 neighbourhood holds two classes."""
    kernel = np.ones((3, 3), dtype=np.uint8)
    boundary = cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)
    mask = labels.copy()
    mask[boundary] = IGNORE_INDEX
    return mask


def _place(rng, size, cls, share, instance, areas):
    """A shape of class ``cls`` covering about ``share`` of the image that leaves every earlier
    object at least _MIN_VISIBLE of its area; None after 20 tries."""
    for _attempt in range(20):
        angle = rng.uniform(0, 2 * math.pi)
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        probe = polygon(np.random.default_rng(0), cls, 0.0, 0.0, 1.0, 0.0)
        unit_area = abs(_shoelace(probe[0])) - sum(abs(_shoelace(h)) for h in probe[1:])
        r = math.sqrt(share * size * size / unit_area) * rng.uniform(0.9, 1.1)
        shape = fill_outlines(size, polygon(rng, cls, cx, cy, r, angle))
        area = int(shape.sum())
        if area < 0.02 * size * size:
            continue
        if leaves_earlier_visible(shape, instance, areas):
            return shape
    return None


def leaves_earlier_visible(shape: np.ndarray, instance: np.ndarray, areas: list[int]) -> bool:
    """Whether drawing ``shape`` in front leaves every earlier object (``instance`` map, drawn
    ``areas``) at least _MIN_VISIBLE of its area."""
    covered = np.bincount(instance[shape & (instance >= 0)], minlength=len(areas))
    visible_before = np.bincount(instance[instance >= 0], minlength=len(areas))
    return all(visible_before[k] - covered[k] >= _MIN_VISIBLE * areas[k] for k in range(len(areas)))


def _shoelace(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def render_synthetic_image(
    rng: np.random.Generator, size: int, max_objects: int = 4
) -> tuple[np.ndarray, np.ndarray, list[VOCObject]]:
    """Draw one image: RGB uint8 ``[size, size, 3]``, label mask uint8, and its VOC objects."""
    image = background(rng, size)
    labels = np.zeros((size, size), dtype=np.uint8)
    instance = np.full((size, size), -1, dtype=np.int32)
    areas: list[int] = []
    classes: list[int] = []
    for cls, share in class_plan(rng, len(SYNTHETIC_CLASSES) - 1, max_objects):
        shape = _place(rng, size, cls, share, instance, areas)
        if shape is None:
            continue
        base, kind = STYLE[cls]
        tex = texture(rng, kind, jitter_colour(rng, base), size)
        image = np.where(shape[..., None], tex, image)
        labels[shape] = cls
        instance[shape] = len(areas)
        areas.append(int(shape.sum()))
        classes.append(cls)
    if rng.random() < 0.3:  # a thin background line in front of the objects
        line = np.zeros((size, size), dtype=np.uint8)
        x0, y0, x1, y1 = rng.integers(0, size, 4)
        cv2.line(line, (int(x0), int(y0)), (int(x1), int(y1)), 1, 1)
        line_mask = line.astype(bool)
        image[line_mask] = rng.uniform(0, 255, 3)
        labels[line_mask] = 0
        instance[line_mask] = -1
    image += rng.normal(0, 6, image.shape)

    objects = []
    for k, cls in enumerate(classes):
        ys, xs = np.nonzero(instance == k)
        if ys.size == 0:
            continue
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        objects.append(VOCObject(SYNTHETIC_CLASSES[cls], box))

    return np.clip(np.round(image), 0, 255).astype(np.uint8), ignore_boundaries(labels), objects


def _params(
    num_train: int, num_val: int, num_test: int, num_pretrain: int, image_size: int, seed: int
) -> dict[str, int]:
    return {
        "version": _FORMAT_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
        "num_pretrain": num_pretrain,
        "image_size": image_size,
        "seed": seed,
    }


def make_synthetic_voc(
    root: str | os.PathLike,
    num_train: int = 400,
    num_val: int = 100,
    image_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    num_pretrain: int = 0,
    num_test: int = 0,
) -> Path:
    """Generate the synthetic set under ``root`` (VOC layout) and return ``root``.

    Does nothing when ``root`` already holds a complete set made with the same parameters. A set
    made with other parameters is replaced; a non-empty directory that is not a synthetic set is
    refused rather than written into. The set is written under a temporary name beside ``root``
    and renamed when complete, so an interrupted write leaves nothing a rerun trips over.
    """
    if num_train < 1 or min(num_val, num_test, num_pretrain) < 0 or image_size < 16:
        raise ValueError(
            f"need num_train >= 1, num_val, num_test, num_pretrain >= 0, image_size >= 16; "
            f"got {num_train}, {num_val}, {num_test}, {num_pretrain}, {image_size}"
        )
    params = _params(num_train, num_val, num_test, num_pretrain, image_size, seed)
    return build_folder(
        root,
        lambda folder: holds_data_set(folder, "synthetic.json", params),
        lambda folder: _write_synthetic(folder, params, progress),
    )


def holds_data_set(root: Path, marker: str, params: dict) -> bool:
    """Whether ``root`` holds the complete data set ``marker`` describes with ``params``: False
    for another set of that kind (it is replaced) or no folder; a non-empty folder that is no
    such set is refused (``ValueError``) rather than replaced."""
    if (root / marker).is_file():
        try:
            return json.loads((root / marker).read_text()) == params
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
    if root.is_dir() and any(root.iterdir()):
        raise ValueError(
            f"{root}: not empty and not a data set emseg wrote (no {marker}); refusing to write "
            "into it (give another folder, or empty it)"
        )
    return False


def _write_synthetic(root: Path, params: dict, progress: bool) -> None:
    """Write the set into the (empty) folder ``root``; the marker last."""
    num_train, num_val, num_test, num_pretrain = (
        params[k] for k in ("num_train", "num_val", "num_test", "num_pretrain")
    )
    image_size, seed = params["image_size"], params["seed"]
    for name in ("JPEGImages", "SegmentationClassAug", "Annotations", "ImageSets/Segmentation"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(SYNTHETIC_CLASSES) + "\n")

    splits = {
        "train_aug": [f"train_{i:05d}" for i in range(num_train)],
        "val": [f"val_{i:05d}" for i in range(num_val)],
        "pretrain": [f"pretrain_{i:05d}" for i in range(num_pretrain)],
        "test": [f"test_{i:05d}" for i in range(num_test)],
    }
    stream = {"train_aug": 0, "val": 1, "pretrain": 2, "test": 3}
    jobs = [(split, i, image_id) for split, ids in splits.items() for i, image_id in enumerate(ids)]
    for split, i, image_id in tqdm(jobs, desc="synthetic VOC", disable=not progress):
        rng = np.random.default_rng([seed, stream[split], i])
        image, mask, objects = render_synthetic_image(rng, image_size)
        ok, jpg = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpg.tobytes())
        if split != "pretrain":  # the pretraining split stands in for ImageNet: image labels only, no masks
            write_mask_png(root / "SegmentationClassAug" / f"{image_id}.png", mask)
        write_voc_xml(
            root / "Annotations" / f"{image_id}.xml",
            f"{image_id}.jpg",
            image_size,
            image_size,
            objects,
            folder="synthetic",
        )

    lists = root / "ImageSets" / "Segmentation"
    lists.joinpath("train_aug.txt").write_text("".join(f"{i}\n" for i in splits["train_aug"]))
    lists.joinpath("train.txt").write_text("".join(f"{i}\n" for i in splits["train_aug"][: max(1, num_train // 7)]))
    lists.joinpath("val.txt").write_text("".join(f"{i}\n" for i in splits["val"]))
    lists.joinpath("pretrain.txt").write_text("".join(f"{i}\n" for i in splits["pretrain"]))
    lists.joinpath("test.txt").write_text("".join(f"{i}\n" for i in splits["test"]))
    (root / "synthetic.json").write_text(json.dumps(params, sort_keys=True))  # last: the set is complete
