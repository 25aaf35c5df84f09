"""Paired transforms keep image, mask and boxes aligned; crops drop labels only with their boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emseg.data import EvalTransform, TrainTransform
from emseg.data.transforms import resize_nearest

COLOURS = np.array([[0, 0, 0], [250, 10, 10], [10, 250, 10], [10, 10, 250], [250, 250, 10], [10, 250, 250]], np.uint8)


def render_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Label map from boxes, later boxes on top; a pixel is inside when its centre is (ops' rule)."""
    out = np.zeros((height, width), np.int64)
    cy = np.arange(height)[:, None] + 0.5
    cx = np.arange(width)[None, :] + 0.5
    for x1, y1, x2, y2, cls in boxes:
        out[(x1 <= cx) & (cx < x2) & (y1 <= cy) & (cy < y2)] = int(cls)
    return out


def on_edge(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies (numerically) on a box edge, where inclusion is a tie."""
    cy = np.arange(height)[:, None] + 0.5
    cx = np.arange(width)[None, :] + 0.5
    tie = np.zeros((height, width), bool)
    for x1, y1, x2, y2, _ in boxes:
        tie |= np.isclose(cx, x1, atol=1e-3) | np.isclose(cx, x2, atol=1e-3)
        tie |= np.isclose(cy, y1, atol=1e-3) | np.isclose(cy, y2, atol=1e-3)
    return tie


def random_boxes(rng: np.random.Generator, height: int, width: int, n: int) -> np.ndarray:
    rows = []
    for _ in range(n):
        x1, x2 = sorted(rng.choice(width + 1, 2, replace=False))
        y1, y2 = sorted(rng.choice(height + 1, 2, replace=False))
        rows.append((x1, y1, x2, y2, rng.integers(1, len(COLOURS))))
    return np.asarray(rows, np.float32)


def box_sample(rng: np.random.Generator, height: int, width: int, n: int = 4) -> dict:
    """A sample whose mask and image are drawn from its boxes: transformed, all three must agree."""
    boxes = random_boxes(rng, height, width, n)
    mask = render_boxes(boxes, height, width).astype(np.uint8)
    labels = np.zeros(len(COLOURS), bool)
    labels[0] = True
    labels[boxes[:, 4].astype(int)] = True
    return {"image": COLOURS[mask], "mask": mask, "boxes": boxes, "labels": labels, "id": "x", "strong": True}


@pytest.mark.parametrize("seed", range(40))
def test_train_transform_keeps_image_mask_and_boxes_aligned(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(7, 60, 2)
    crop = int(rng.integers(5, 50))
    sample = box_sample(rng, int(h), int(w))
    t = TrainTransform(crop, scale_range=(0.5, 2.0), min_box_size=0.0)
    out = t(sample, generator=torch.Generator().manual_seed(seed))
    mask, boxes, image = out["mask"].numpy(), out["boxes"].numpy(), out["image_uint8"].permute(1, 2, 0).numpy()
    assert mask.shape == (crop, crop) and image.shape == (crop, crop, 3) and out["image"].shape == (3, crop, crop)
    assert len(boxes) == len(sample["boxes"])  # min_box_size=0 keeps every box, in order
    assert np.all(boxes[:, [0, 2]] >= 0) and np.all(boxes[:, [0, 2]] <= crop)
    assert np.all(boxes[:, [1, 3]] >= 0) and np.all(boxes[:, [1, 3]] <= crop)

    # masks follow boxes: rendering the transformed boxes gives the transformed mask, except in
    # the padding (ignore) and at pixel centres that sit exactly on a scaled box edge
    inside = mask != 255
    drawn = render_boxes(boxes, crop, crop)
    differ = inside & (drawn != mask)
    assert not np.any(differ & ~on_edge(boxes, crop, crop)), np.argwhere(differ)[:5]
    assert np.mean(differ[inside]) < 0.1 if inside.any() else True

    # the image follows the mask: where the source pixel and its 3x3 neighbours share a class (so
    # bilinear interpolation reads only that class), the image shows the class colour. The same
    # generator seed on a mask with everything else set to ignore finds those pixels.
    src = sample["mask"].astype(np.int64)
    padded = np.pad(src, 1, mode="edge")
    flat = np.ones(src.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            flat &= padded[1 + dy : 1 + dy + src.shape[0], 1 + dx : 1 + dx + src.shape[1]] == src
    thick = dict(sample, mask=np.where(flat, src, 255).astype(np.uint8))
    interior = t(thick, generator=torch.Generator().manual_seed(seed))["mask"].numpy() != 255
    assert np.all(mask[interior] != 255)
    if interior.any():
        err = np.abs(image[interior].astype(int) - COLOURS[mask[interior]].astype(int)).max()
        assert err <= 3
    # padding: ignore in the mask, the mean colour in the image
    pad = ~inside
    if pad.any():
        assert np.all(image[pad] == np.array(t.pad_color, np.uint8))


def test_scale_changes_size_by_the_drawn_factor():
    rng = np.random.default_rng(0)
    sample = box_sample(rng, 40, 60)
    t = TrainTransform((200, 300), scale_range=(1.5, 1.5), flip=False, min_box_size=0.0)
    out = t(sample)
    valid = (out["mask"] != 255).numpy()
    assert valid.any(axis=1).sum() == 60 and valid.any(axis=0).sum() == 90
    assert torch.allclose(out["boxes"][:, :4], torch.from_numpy(sample["boxes"][:, :4] * 1.5))


def test_flip_and_crop_are_exact_at_scale_one():
    rng = np.random.default_rng(1)
    sample = box_sample(rng, 30, 40)
    t = TrainTransform((30, 40), scale_range=(1.0, 1.0), flip=True, min_box_size=0.0)
    seen = set()
    for seed in range(20):
        out = t(sample, generator=torch.Generator().manual_seed(seed))
        m = out["mask"].numpy()
        flipped = np.array_equal(m, sample["mask"][:, ::-1])
        assert flipped or np.array_equal(m, sample["mask"])
        seen.add(flipped)
        b = sample["boxes"].copy()
        if flipped:
            b[:, [0, 2]] = 40 - b[:, [2, 0]]
        assert np.array_equal(out["boxes"].numpy(), b)
    assert seen == {True, False}  # both happen


def test_same_generator_seed_same_output():
    sample = box_sample(np.random.default_rng(2), 50, 50)
    t = TrainTransform(32)
    a = t(sample, generator=torch.Generator().manual_seed(5))
    b = t(sample, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "boxes", "labels"))
    torch.manual_seed(9)
    c = t(sample)
    torch.manual_seed(9)
    d = t(sample)
    assert torch.equal(c["mask"], d["mask"]) and torch.equal(c["boxes"], d["boxes"])


def test_cropped_out_classes_lose_their_labels():
    # class 1 in the top-left corner, class 2 bottom-right, class 3 labelled without any box
    mask = np.zeros((100, 100), np.uint8)
    mask[0:6, 0:6] = 1
    mask[90:100, 90:100] = 2
    boxes = np.array([[0, 0, 6, 6, 1], [90, 90, 100, 100, 2]], np.float32)
    labels = np.array([True, True, True, True, False])
    sample = {"image": COLOURS[mask], "mask": mask, "boxes": boxes, "labels": labels}
    t = TrainTransform(20, scale_range=(1.0, 1.0), flip=False, min_box_size=2.0)
    outcomes, partly = set(), set()
    for seed in range(200):
        out = t(sample, generator=torch.Generator().manual_seed(seed))
        b, lab, m = out["boxes"].numpy(), out["labels"].numpy(), out["mask"].numpy()
        assert np.all(b[:, 2] - b[:, 0] >= 2) and np.all(b[:, 3] - b[:, 1] >= 2)
        kept = set(b[:, 4].astype(int).tolist())
        for cls, area in ((1, 36), (2, 100)):
            # each object fills its box, so the pixels in view are the box's visible area: the label
            # stays exactly when at least half of it is in view
            assert lab[cls] == ((m == cls).sum() >= 0.5 * area)
            assert not lab[cls] or cls in kept
            # a kept box still covers pixels of its class in the crop
            if cls in kept:
                assert (m == cls).sum() >= 4
        assert lab[0] and lab[3] and not lab[4]  # background and box-less labels stay as they were
        outcomes.add((lab[1], lab[2]))
        partly.update(cls for cls in kept if not lab[cls])
    assert (False, False) in outcomes and (True, False) in outcomes and (False, True) in outcomes
    assert partly  # a box mostly out of view is kept for the box modes, its label is not


def test_min_visible_bounds_the_share_of_a_class_in_view():
    # one 40x40 object in a 100x100 image, 50x50 crops: every crop that keeps the label shows at
    # least min_visible of the object, for several thresholds
    mask = np.zeros((100, 100), np.uint8)
    mask[0:40, 0:40] = 1
    sample = {
        "image": COLOURS[mask],
        "mask": mask,
        "boxes": np.array([[0, 0, 40, 40, 1]], np.float32),
        "labels": np.array([True, True]),
    }
    for min_visible in (0.0, 0.2, 0.5):
        t = TrainTransform(50, scale_range=(1.0, 1.0), flip=False, min_box_size=0.0, min_visible=min_visible)
        seen = set()
        for seed in range(60):
            out = t(sample, generator=torch.Generator().manual_seed(seed))
            visible = float((out["mask"] == 1).sum()) / 1600
            assert bool(out["labels"][1]) == (visible >= min_visible and visible > 0 or min_visible == 0.0)
            seen.add(bool(out["labels"][1]))
        assert seen == ({True} if min_visible == 0.0 else {True, False})
    with pytest.raises(ValueError, match="min_visible"):
        TrainTransform(50, min_visible=1.5)


def test_resize_nearest_samples_pixel_centres():
    src = np.arange(7 * 5).reshape(7, 5)
    for h, w in [(14, 10), (3, 2), (7, 5), (10, 13), (1, 1)]:
        out = resize_nearest(src, h, w)
        ys = np.floor((np.arange(h) + 0.5) * 7 / h).astype(int)
        xs = np.floor((np.arange(w) + 0.5) * 5 / w).astype(int)
        assert np.array_equal(out, src[np.ix_(ys, xs)])


def test_eval_transform_keeps_geometry():
    sample = box_sample(np.random.default_rng(3), 21, 33)
    out = EvalTransform()(sample)
    assert out["image"].shape == (3, 21, 33)
    assert np.array_equal(out["mask"].numpy(), sample["mask"])
    assert np.array_equal(out["boxes"].numpy(), sample["boxes"])
    assert np.array_equal(out["image_uint8"].permute(1, 2, 0).numpy(), sample["image"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="crop_size"):
        TrainTransform(0)
    with pytest.raises(ValueError, match="scale_range"):
        TrainTransform(10, scale_range=(1.5, 0.5))
