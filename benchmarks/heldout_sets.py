"""Held-out VOC-layout sets, built to differ from emseg's own generators (``emseg.data.synthetic``,
``emseg.data.photo``) in what a recipe is sensitive to. No setting of emseg is chosen on them: they
are where its defaults are reported.

    python benchmarks/heldout_sets.py OUT [--sets small20 mid6 large6 wide20] [--train 400] [--val 120]

What differs from the built-in generators:

- **classes**: VOC's 21-class list (``classes.txt``), of which 6 or all 20 foreground classes occur;
- **object scale**: the median present class covers about 5 % (``small20``), 20 % (``mid6``,
  ``wide20``) or 40 % (``large6``) of its image (``python -m emseg.data stats OUT/<set> --split train``
  measures it);
- **geometry**: 192x192 (``mid6``), or VOC's 500x375 halved, landscape and portrait (250x188,
  188x250: ``small20``, ``large6``, ``wide20``);
- **appearance**: every class is a texture of its own recipe drawn once per set (multi-octave value
  noise between two colours, oriented noisy stripes, Voronoi cells, spots, or a tinted patch of a
  photograph neither generator uses: scikit-image's immunohistochemistry slide, lbp faces, page,
  cell, microaneurysms, matplotlib's Grace Hopper and terrain elevations); backgrounds are
  procedural scenes (sky gradient, horizon, textured ground) with distractor shapes;
- **shapes**: unions of 2-4 ellipses ("creatures"), superellipses and capsules, 1-3 classes per image,
  occluding each other;
- VOC's 255 bands along object outlines, XML boxes around each object's visible pixels, lists
  ``train.txt`` (no ``train_aug``) and ``val.txt``.

The same seed gives the same bytes; every image has its own generator seeded by (set, split, index).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emseg.data.io import VOC_CLASSES, VOCObject, write_mask_png, write_voc_xml
from emseg.data.synthetic import ignore_boundaries, leaves_earlier_visible


@dataclass(frozen=True)
class HeldOutSpec:
    classes: int  #: foreground classes that occur (of VOC's 20)
    share: tuple[float, float]  #: log-uniform range of the first object's share of the image
    sizes: tuple[tuple[int, int], ...]  #: (height, width) choices


SETS = {
    "small20": HeldOutSpec(20, (0.025, 0.10), ((188, 250), (250, 188))),
    "mid6": HeldOutSpec(6, (0.15, 0.45), ((192, 192),)),
    "large6": HeldOutSpec(6, (0.45, 0.75), ((188, 250), (250, 188))),
    "wide20": HeldOutSpec(20, (0.15, 0.45), ((188, 250), (250, 188))),
}
_CLASS_COUNT_P = (0.6, 0.3, 0.1)


# ---- photographs that neither emseg generator uses -------------------------------------------


def _photos() -> list[np.ndarray]:
    import matplotlib
    import skimage.data

    out = [skimage.data.immunohistochemistry(), skimage.data.page(), skimage.data.cell(), skimage.data.microaneurysms()]
    faces = skimage.data.lfw_subset()[:64]  # 64 grey faces of 25x25, tiled
    out.append((np.vstack([np.hstack(list(faces[r * 8 : (r + 1) * 8])) for r in range(8)]) * 255).astype(np.uint8))
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    out.append(cv2.cvtColor(cv2.imread(str(sample / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB))
    with np.load(sample / "jacksboro_fault_dem.npz") as dem:
        elevation = dem["elevation"].astype(np.float32)
    out.append(((elevation - elevation.min()) / np.ptp(elevation) * 255).astype(np.uint8))
    rgb = []
    for image in out:
        image = np.asarray(image, dtype=np.float32)
        rgb.append(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3])
    return rgb


# ---- textures ---------------------------------------------------------------------------------


def _value_noise(rng: np.random.Generator, h: int, w: int, octaves: int, base: int) -> np.ndarray:
    total = np.zeros((h, w), np.float32)
    for o in range(octaves):
        cells = base * 2**o
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        total += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) / 2**o
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def _voronoi(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    pts = rng.random((cells, 2)) * (h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    part = np.sort(d, axis=-1)
    edge = np.sqrt(part[..., 1]) - np.sqrt(part[..., 0]) < 1.5
    return np.where(edge, 0.0, (np.argmin(d, -1) % 7) / 6.0).astype(np.float32)


@dataclass(frozen=True)
class Recipe:
    kind: str
    colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    scale: float
    angle: float
    photo: int


def class_recipes(rng: np.random.Generator, count: int, photos: int) -> list[Recipe]:
    """One texture recipe per class: kinds in turn, colours far apart in hue."""
    kinds = ("noise", "stripes", "voronoi", "spots", "photo")
    hues = rng.permutation(count) / count * 180
    out = []
    for k in range(count):
        hsv = np.array([[[hues[k], rng.uniform(120, 255), rng.uniform(120, 230)]]], np.uint8)
        c1 = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(float)
        c2 = np.clip(c1 * rng.uniform(0.3, 0.6) + rng.uniform(0, 60, 3), 0, 255)
        out.append(
            Recipe(
                kinds[k % len(kinds)],
                (tuple(c1), tuple(c2)),
                rng.uniform(0.6, 1.6),
                rng.uniform(0, math.pi),
                int(rng.integers(photos)),
            )
        )
    return out


def texture(rng: np.random.Generator, recipe: Recipe, h: int, w: int, photos: list[np.ndarray]) -> np.ndarray:
    c1, c2 = np.asarray(recipe.colours[0], np.float32), np.asarray(recipe.colours[1], np.float32)
    if recipe.kind == "photo":
        src = photos[recipe.photo]
        scale = recipe.scale * max(h / src.shape[0], w / src.shape[1], 0.3)
        scale = max(scale, h / src.shape[0], w / src.shape[1])
        big = cv2.resize(src, (max(w, round(src.shape[1] * scale)), max(h, round(src.shape[0] * scale))))
        y0, x0 = rng.integers(0, big.shape[0] - h + 1), rng.integers(0, big.shape[1] - w + 1)
        grey = big[y0 : y0 + h, x0 : x0 + w].mean(-1) / 255.0
        t = grey[..., None]
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = recipe.angle + rng.normal(0, 0.2)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        if recipe.kind == "noise":
            t = _value_noise(rng, h, w, 3, max(2, round(4 / recipe.scale)))
        elif recipe.kind == "stripes":
            period = 6.0 * recipe.scale
            t = 0.5 + 0.5 * np.sin(2 * math.pi * u / period + 2.0 * _value_noise(rng, h, w, 2, 3))
        elif recipe.kind == "voronoi":
            t = _voronoi(rng, h, w, max(8, int(h * w / (90 * recipe.scale**2))))
        else:  # spots
            t = np.zeros((h, w), np.float32)
            for _ in range(int(h * w / (60 * recipe.scale**2))):
                cv2.circle(t, (int(rng.integers(w)), int(rng.integers(h))), max(1, int(2 * recipe.scale)), 1.0, -1)
        t = t[..., None]
    out = c2 + (c1 - c2) * t
    return out * rng.uniform(0.85, 1.15) + rng.normal(0, 8, 3)


# ---- shapes -----------------------------------------------------------------------------------


def shape_mask(rng: np.random.Generator, h: int, w: int, share: float) -> np.ndarray:
    """A creature (2-4 ellipses), a superellipse or a capsule covering about ``share`` of the image."""
    area = share * h * w
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    canvas = np.zeros((h, w), np.uint8)
    kind = rng.integers(3)
    angle = rng.uniform(0, 180)
    if kind == 0:
        body = math.sqrt(area / math.pi / 1.6)
        axes = (max(2, int(body * 1.5)), max(2, int(body)))
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, angle, 0, 360, 1, -1)
        for _ in range(int(rng.integers(1, 4))):
            t = rng.uniform(0, 2 * math.pi)
            px, py = cx + body * 1.3 * math.cos(t), cy + body * 1.1 * math.sin(t)
            r = body * rng.uniform(0.35, 0.6)
            cv2.ellipse(
                canvas,
                (int(px), int(py)),
                (max(1, int(r)), max(1, int(r * rng.uniform(0.5, 1)))),
                rng.uniform(0, 180),
                0,
                360,
                1,
                -1,
            )
    elif kind == 1:
        n = rng.uniform(0.6, 4.0)
        t = np.linspace(0, 2 * math.pi, 120, endpoint=False)
        ct, st = np.cos(t), np.sin(t)
        x = np.sign(ct) * np.abs(ct) ** (2 / n)
        y = np.sign(st) * np.abs(st) ** (2 / n) * rng.uniform(0.5, 1.0)
        unit = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        r = math.sqrt(area / unit)
        a = math.radians(angle)
        pts = np.stack([cx + r * (x * math.cos(a) - y * math.sin(a)), cy + r * (x * math.sin(a) + y * math.cos(a))], 1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    else:
        aspect = rng.uniform(2.0, 4.0)
        thick = math.sqrt(area / aspect)
        a = math.radians(angle)
        dx, dy = thick * aspect / 2 * math.cos(a), thick * aspect / 2 * math.sin(a)
        cv2.line(canvas, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1, max(1, int(thick)))
    return canvas.astype(bool)


def background(rng: np.random.Generator, h: int, w: int, photos: list[np.ndarray]) -> np.ndarray:
    sky = np.asarray(
        cv2.cvtColor(
            np.array([[[rng.uniform(0, 180), rng.uniform(20, 120), rng.uniform(150, 250)]]], np.uint8),
            cv2.COLOR_HSV2RGB,
        )[0, 0],
        np.float32,
    )
    ground = rng.uniform(40, 200, 3).astype(np.float32)
    horizon = rng.uniform(0.3, 0.7) * h
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    image = np.where((yy < horizon)[..., None], sky * (0.7 + 0.3 * yy[..., None] / h), ground)
    image = image + (_value_noise(rng, h, w, 4, 3)[..., None] - 0.5) * rng.uniform(30, 90)
    for _ in range(int(rng.integers(2, 6))):  # distractors: background, in textures of no class
        mask = shape_mask(rng, h, w, rng.uniform(0.01, 0.08))
        recipe = Recipe(
            str(rng.choice(["noise", "stripes", "photo"])),
            (tuple(rng.uniform(30, 230, 3)), tuple(rng.uniform(30, 230, 3))),
            rng.uniform(0.5, 2),
            rng.uniform(0, 3),
            int(rng.integers(len(photos))),
        )
        image = np.where(mask[..., None], texture(rng, recipe, h, w, photos), image)
    return image


# ---- images and the set -------------------------------------------------------------------------


def render(rng: np.random.Generator, spec: HeldOutSpec, recipes: list[Recipe], photos: list[np.ndarray]):
    h, w = spec.sizes[int(rng.integers(len(spec.sizes)))]
    image = background(rng, h, w, photos)
    labels = np.zeros((h, w), np.uint8)
    instance = np.full((h, w), -1, np.int32)
    areas, classes = [], []
    count = 1 + int(rng.choice(len(_CLASS_COUNT_P), p=_CLASS_COUNT_P))
    first = math.exp(rng.uniform(*np.log(spec.share)))
    for k, cls in enumerate(rng.choice(np.arange(1, spec.classes + 1), size=count, replace=False)):
        share = first if k == 0 else first * rng.uniform(0.5, 1.0)
        for _attempt in range(20):
            shape = shape_mask(rng, h, w, share)
            if shape.sum() >= 0.005 * h * w and leaves_earlier_visible(shape, instance, areas):
                break
        else:
            continue
        image = np.where(shape[..., None], texture(rng, recipes[cls - 1], h, w, photos), image)
        labels[shape], instance[shape] = cls, len(areas)
        areas.append(int(shape.sum()))
        classes.append(int(cls))
    image = cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0.7) + rng.normal(0, 4, image.shape)
    mask = ignore_boundaries(labels)  # a band 2 pixels wide, as VOC's at this size
    objects = []
    for k, cls in enumerate(classes):
        ys, xs = np.nonzero(instance == k)
        if ys.size:
            objects.append(
                VOCObject(
                    VOC_CLASSES[cls], (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
                )
            )
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask, objects


def make_heldout_voc(
    root: str | os.PathLike, name: str, num_train: int = 400, num_val: int = 120, seed: int = 0
) -> Path:
    """Write held-out set ``name`` (:data:`SETS`) under ``root``; a complete one is reused."""
    spec = SETS[name]
    root = Path(root)
    params = {"set": name, "train": num_train, "val": num_val, "seed": seed, "version": 1}
    marker = root / "heldout.json"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(VOC_CLASSES) + "\n")
    photos = _photos()
    set_index = sorted(SETS).index(name)
    recipes = class_recipes(np.random.default_rng([seed, set_index, 99]), spec.classes, len(photos))
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        ids = [f"{name}_{split}_{i:05d}" for i in range(count)]
        for i, image_id in enumerate(ids):
            image, mask, objects = render(
                np.random.default_rng([seed, set_index, split_index, i]), spec, recipes, photos
            )
            cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            write_mask_png(root / "SegmentationClass" / f"{image_id}.png", mask)
            write_voc_xml(
                root / "Annotations" / f"{image_id}.xml",
                f"{image_id}.jpg",
                image.shape[1],
                image.shape[0],
                objects,
                folder="heldout",
            )
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    marker.write_text(json.dumps(params))
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder; each set goes to OUT/<name>")
    p.add_argument("--sets", nargs="+", default=sorted(SETS), choices=sorted(SETS))
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--val", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    for name in a.sets:
        print(make_heldout_voc(Path(a.out) / name, name, a.train, a.val, a.seed))


if __name__ == "__main__":
    main()
