"""A VOC-layout set made of real photographs: scikit-image's sample photos as textures.

Six object classes, each cut from its own photograph (a cat's fur, coffee, an astronaut's suit,
and brick, grass and gravel photographs in their own tints), pasted as smooth random blobs onto
backgrounds cropped from other photographs (the Hubble deep field, a retina, a motorcycle, a
rocket launch, coins, the moon, printed text). The blob outlines carry no class information, so
a network must tell classes apart by photographic texture and colour, and the images vary in size
(160-224 pixels a side) as a user's data does. The objects follow the synthetic set's statistics
(:mod:`emseg.data.synthetic`: about 1.4 classes and 1.8 objects per image, a present class
covering 8-40 % of it).

    python -m emseg.data photo data/photo-voc

Needs scikit-image (its bundled sample images; nothing is downloaded). Same seed, same bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from ..files import build_folder
from .io import VOCObject, write_mask_png, write_voc_xml
from .synthetic import class_plan, holds_data_set, ignore_boundaries, leaves_earlier_visible

__all__ = ["PHOTO_CLASSES", "make_photo_voc"]

PHOTO_CLASSES: tuple[str, ...] = ("background", "fur", "coffee", "suit", "brick", "grass", "gravel")
_VERSION = 1
#: class -> (scikit-image sample, region of it (y0, y1, x0, x1) as fractions, RGB tint for grey photos)
_CLASS_SOURCES = {
    1: ("chelsea", (0.25, 1.0, 0.05, 0.75), None),
    2: ("coffee", (0.05, 0.95, 0.05, 0.95), None),
    3: ("astronaut", (0.45, 1.0, 0.0, 0.6), None),
    4: ("brick", (0, 1, 0, 1), (1.0, 0.55, 0.4)),
    5: ("grass", (0, 1, 0, 1), (0.55, 1.0, 0.45)),
    6: ("gravel", (0, 1, 0, 1), (0.75, 0.7, 1.0)),
}
_BACKGROUNDS = ("hubble_deep_field", "retina", "stereo_motorcycle", "rocket", "coins", "moon", "text", "camera")


def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise ImportError("the photo data set needs scikit-image (pip install scikit-image)") from None
    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo pairs
        image = image[0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.float32)


def _load_sources() -> tuple[dict[int, np.ndarray], list[np.ndarray]]:
    textures = {}
    for cls, (name, (y0, y1, x0, x1), tint) in _CLASS_SOURCES.items():
        image = _photo(name)
        h, w = image.shape[:2]
        image = image[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]
        if tint is not None:
            image = np.clip(image * np.asarray(tint, np.float32), 0, 255)
        textures[cls] = image
    return textures, [_photo(name) for name in _BACKGROUNDS]


def _random_patch(rng: np.random.Generator, source: np.ndarray, h: int, w: int) -> np.ndarray:
    """A randomly placed, scaled, flipped and lightly recoloured ``h x w`` patch of ``source``."""
    sh, sw = source.shape[:2]
    scale = rng.uniform(0.6, 1.4) * max(h / sh, w / sw, 0.25)
    scale = max(scale, h / sh, w / sw)
    resized = cv2.resize(source, (max(w, round(sw * scale)), max(h, round(sh * scale))), interpolation=cv2.INTER_AREA)
    y0 = int(rng.integers(0, resized.shape[0] - h + 1))
    x0 = int(rng.integers(0, resized.shape[1] - w + 1))
    patch = resized[y0 : y0 + h, x0 : x0 + w]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.92, 1.08, 3)
    return np.clip(patch * gain, 0, 255)


def _blob(rng: np.random.Generator, h: int, w: int, share: float) -> np.ndarray:
    """A smooth random closed shape (a perturbed, stretched circle) covering about ``share`` of the image."""
    t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
    radius = np.ones_like(t)
    for k in (2, 3, 4, 5):
        radius += rng.uniform(0, 0.22 / k * 2) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    stretch = rng.uniform(0.7, 1.4)
    angle = rng.uniform(0, math.pi)
    x, y = radius * np.cos(t) * stretch, radius * np.sin(t) / stretch
    x, y = x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)
    unit = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    r = math.sqrt(share * h * w / unit)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    pts = np.stack([cx + r * x, cy + r * y], axis=1)
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    return canvas.astype(bool)


def render_photo_image(
    rng: np.random.Generator, textures, backgrounds, object_share: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, list[VOCObject]]:
    h, w = (int(v) for v in rng.integers(160, 225, 2))
    image = _random_patch(rng, backgrounds[int(rng.integers(len(backgrounds)))], h, w)
    labels = np.zeros((h, w), np.uint8)
    instance = np.full((h, w), -1, np.int32)
    areas, classes = [], []
    plan = class_plan(rng, len(PHOTO_CLASSES) - 1, **({"area_range": object_share} if object_share else {}))
    for cls, share in plan:
        smallest = 0.02 if object_share is None else min(0.02, share / 2)  # of the image
        for _attempt in range(20):
            shape = _blob(rng, h, w, share)
            if shape.sum() >= smallest * h * w and leaves_earlier_visible(shape, instance, areas):
                break
        else:
            continue
        image = np.where(shape[..., None], _random_patch(rng, textures[cls], h, w), image)
        labels[shape], instance[shape] = cls, len(areas)
        areas.append(int(shape.sum()))
        classes.append(cls)
    image = cv2.GaussianBlur(image, (3, 3), 0.6) + rng.normal(0, 3, image.shape)  # soften pasted edges
    objects = []
    for k, cls in enumerate(classes):
        ys, xs = np.nonzero(instance == k)
        if ys.size:
            objects.append(
                VOCObject(
                    PHOTO_CLASSES[cls], (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
                )
            )
    return np.clip(np.round(image), 0, 255).astype(np.uint8), ignore_boundaries(labels), objects


def make_photo_voc(
    root: str | Path,
    num_train: int = 400,
    num_val: int = 100,
    seed: int = 0,
    object_share: tuple[float, float] | None = None,
) -> Path:
    """Write the photo set under ``root`` in VOC layout (train_aug, train = its first seventh, val);
    a complete set with the same parameters is reused. ``object_share``: the range of the first
    object's share of its image (log-uniform; default the synthetic set's, a present class covering
    8-40 %)."""
    params = {"version": _VERSION, "num_train": num_train, "num_val": num_val, "seed": seed, "kind": "photo"}
    if object_share is not None:
        params["object_share"] = list(object_share)
    return build_folder(
        root, lambda folder: holds_data_set(folder, "photo.json", params), lambda folder: _write_photo(folder, params)
    )


def _write_photo(root: Path, params: dict) -> None:
    num_train, num_val, seed = params["num_train"], params["num_val"], params["seed"]
    for name in ("JPEGImages", "SegmentationClassAug", "Annotations", "ImageSets/Segmentation"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(PHOTO_CLASSES) + "\n")
    textures, backgrounds = _load_sources()
    splits = {
        "train_aug": [f"photo_train_{i:05d}" for i in range(num_train)],
        "val": [f"photo_val_{i:05d}" for i in range(num_val)],
    }
    for stream, (split, ids) in enumerate(splits.items()):
        for i, image_id in enumerate(ids):
            image, mask, objects = render_photo_image(
                np.random.default_rng([seed, stream, i]), textures, backgrounds, params.get("object_share")
            )
            ok, jpg = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpg.tobytes())
            write_mask_png(root / "SegmentationClassAug" / f"{image_id}.png", mask)
            write_voc_xml(
                root / "Annotations" / f"{image_id}.xml",
                f"{image_id}.jpg",
                image.shape[1],
                image.shape[0],
                objects,
                folder="photo",
            )
    lists = root / "ImageSets" / "Segmentation"
    lists.joinpath("train_aug.txt").write_text("".join(f"{i}\n" for i in splits["train_aug"]))
    lists.joinpath("train.txt").write_text("".join(f"{i}\n" for i in splits["train_aug"][: max(1, num_train // 7)]))
    lists.joinpath("val.txt").write_text("".join(f"{i}\n" for i in splits["val"]))
    (root / "photo.json").write_text(json.dumps(params, sort_keys=True))  # last: the set is complete
