"""The synthetic VOC-layout set: deterministic, complete, consistent, and read by the VOC loader."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emseg.data import SYNTHETIC_CLASSES, VOCSegmentation, make_synthetic_voc
from emseg.data.io import parse_voc_xml, read_image, read_mask_png
from emseg.data.stats import dataset_statistics


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "set"
    start = time.perf_counter()
    make_synthetic_voc(root, num_train=120, num_val=30, image_size=64, seed=11, progress=False)
    return root, time.perf_counter() - start


def test_layout_and_lists(syn):
    root, _ = syn
    lists = root / "ImageSets" / "Segmentation"
    train = lists.joinpath("train_aug.txt").read_text().split()
    val = lists.joinpath("val.txt").read_text().split()
    assert len(train) == 120 and len(val) == 30 and not set(train) & set(val)
    strong_list = lists.joinpath("train.txt").read_text().split()
    assert strong_list == train[: 120 // 7]
    assert tuple((root / "classes.txt").read_text().split()) == SYNTHETIC_CLASSES
    for image_id in train + val:
        for rel in (
            f"JPEGImages/{image_id}.jpg",
            f"SegmentationClassAug/{image_id}.png",
            f"Annotations/{image_id}.xml",
        ):
            assert (root / rel).is_file(), rel
    assert json.loads((root / "synthetic.json").read_text())["seed"] == 11


def test_same_seed_same_bytes_other_seed_other_images(syn, tmp_path):
    root, _ = syn
    # a smaller set with the same seed: images depend on (seed, split, index) only
    small = make_synthetic_voc(tmp_path / "a", num_train=10, num_val=5, image_size=64, seed=11, progress=False)
    again = make_synthetic_voc(tmp_path / "b", num_train=10, num_val=5, image_size=64, seed=11, progress=False)
    fa, fb = files(small), files(again)
    assert fa == fb and len(fa) == 3 * 15 + 7  # 5 lists (pretrain.txt and test.txt empty), classes.txt, synthetic.json
    big = files(root)
    for rel, data in fa.items():
        if rel.startswith(("JPEGImages", "SegmentationClassAug", "Annotations")):
            assert big[rel] == data, rel
    other = files(make_synthetic_voc(tmp_path / "c", num_train=10, num_val=5, image_size=64, seed=12, progress=False))
    assert other["JPEGImages/train_00000.jpg"] != fa["JPEGImages/train_00000.jpg"]


def test_generation_is_fast(syn):
    _, seconds = syn
    assert seconds < 20, f"150 images of 64 px took {seconds:.1f} s"


def test_masks_labels_and_boxes_agree(syn):
    root, _ = syn
    ds = VOCSegmentation(root, "train_aug")
    assert ds.class_names == SYNTHETIC_CLASSES and len(ds) == 120 and len(ds.strong_indices) == 120
    objects, classes, box_bg = Counter(), Counter(), []
    for i in range(len(ds)):
        s = ds[i]
        mask, boxes = s["mask"].numpy(), s["boxes"].numpy()
        labels = set(np.nonzero(s["labels"].numpy())[0].tolist())
        present = set(np.unique(mask).tolist()) - {255}
        assert labels == present | {0}  # the XML names exactly the classes painted in the mask
        assert 1 <= len(boxes) <= 4
        objects[len(boxes)] += 1
        covered = np.zeros(mask.shape, bool)
        for x1, y1, x2, y2, cls in boxes.astype(int):
            assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
            inside = mask[y1:y2, x1:x2]
            assert (inside == cls).any()
            covered[y1:y2, x1:x2] |= True
            classes[cls] += 1
            box_bg.append(float(np.mean((inside != cls) & (inside != 255))))
        # every labelled object pixel lies in some box
        assert not np.any((mask != 0) & (mask != 255) & ~covered)
    assert set(objects) == {1, 2, 3, 4}
    assert set(classes) == set(range(1, len(SYNTHETIC_CLASSES)))
    assert min(classes.values()) > 0.5 * max(classes.values())  # no class starved
    assert np.mean(box_bg) > 0.15  # boxes include background, so box labels are noisy


def test_statistics_match_the_documented_voc_like_figures(syn):
    """The figures the module docstring states: classes and objects per image, foreground share,
    the share a present class covers (measured on the 120 training images)."""
    root, _ = syn
    per_image_classes, objects, foreground, shares = [], [], [], []
    for image_id in (root / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split():
        mask = read_mask_png(root / "SegmentationClassAug" / f"{image_id}.png")
        labelled = mask[mask != 255]
        present = set(np.unique(labelled).tolist()) - {0}
        per_image_classes.append(len(present))
        objects.append(len(parse_voc_xml(root / "Annotations" / f"{image_id}.xml").objects))
        foreground.append(float((labelled > 0).mean()))
        shares += [float((labelled == c).mean()) for c in present]
    assert 1.2 <= np.mean(per_image_classes) <= 1.7 and np.mean(np.array(per_image_classes) == 1) > 0.5
    assert 1.5 <= np.mean(objects) <= 2.2
    assert 0.2 <= np.mean(foreground) <= 0.35 and max(foreground) <= 0.6
    assert 0.12 <= np.median(shares) <= 0.25
    stats = dataset_statistics(root, "train_aug")  # the same figures, as python -m emseg.data stats prints them
    assert stats["images"] == 120 and stats["objects_per_image"] == pytest.approx(np.mean(objects))
    assert stats["classes_per_image"] == pytest.approx(np.mean(per_image_classes))
    assert stats["foreground_share"] == pytest.approx(np.mean(foreground))
    assert stats["class_share_median"] == pytest.approx(np.median(shares))


def test_pretraining_split_has_image_labels_and_no_masks(tmp_path):
    root = make_synthetic_voc(
        tmp_path / "p", num_train=3, num_val=1, num_pretrain=5, image_size=48, seed=2, progress=False
    )
    ids = (root / "ImageSets" / "Segmentation" / "pretrain.txt").read_text().split()
    assert ids == [f"pretrain_{i:05d}" for i in range(5)]
    for image_id in ids:
        assert (root / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert parse_voc_xml(root / "Annotations" / f"{image_id}.xml").objects
        assert not (root / "SegmentationClassAug" / f"{image_id}.png").exists()
    # its images are new ones, not the training images again
    assert (root / "JPEGImages" / "pretrain_00000.jpg").read_bytes() != (
        root / "JPEGImages" / "train_00000.jpg"
    ).read_bytes()


def test_ignore_band_separates_classes(syn):
    root, _ = syn
    for image_id in ("train_00000", "train_00001", "train_00002", "val_00000"):
        mask = read_mask_png(root / "SegmentationClassAug" / f"{image_id}.png").astype(int)
        # no two labelled pixels of different classes touch (8-neighbourhood)
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a = mask[max(dy, 0) :, max(dx, 0) : mask.shape[1] + min(dx, 0)]
            b = mask[: mask.shape[0] - dy, max(-dx, 0) : mask.shape[1] - max(dx, 0)]
            clash = (a != b) & (a != 255) & (b != 255)
            assert not clash.any(), image_id
        assert (mask == 255).any()


def test_classes_look_like_their_colours(syn):
    """Each class keeps to its colour family (mean over its pixels), so the set is learnable."""
    root, _ = syn
    sums, counts = np.zeros((7, 3)), np.zeros(7)
    for image_id in (f"train_{i:05d}" for i in range(60)):
        image = read_image(root / "JPEGImages" / f"{image_id}.jpg").astype(float)
        mask = read_mask_png(root / "SegmentationClassAug" / f"{image_id}.png")
        for c in range(1, 7):
            sel = mask == c
            sums[c] += image[sel].sum(axis=0)
            counts[c] += sel.sum()
    mean = sums[1:] / counts[1:, None]
    dominant = mean.argmax(axis=1)  # R, G or B
    # disc, star red; square, ring blue; triangle green; cross red+green (yellow)
    assert dominant[[0, 3]].tolist() == [0, 0] and dominant[[1, 4]].tolist() == [2, 2] and dominant[2] == 1
    assert mean[5, 0] > 100 and mean[5, 1] > 100 and mean[5, 2] < 100


def test_reuse_regenerate_and_refuse(tmp_path):
    root = make_synthetic_voc(tmp_path / "s", num_train=4, num_val=2, image_size=32, seed=0, progress=False)
    stamp = (root / "JPEGImages" / "train_00000.jpg").stat().st_mtime_ns
    make_synthetic_voc(root, num_train=4, num_val=2, image_size=32, seed=0, progress=False)
    assert (root / "JPEGImages" / "train_00000.jpg").stat().st_mtime_ns == stamp  # complete: untouched
    make_synthetic_voc(root, num_train=3, num_val=1, image_size=40, seed=0, progress=False)
    assert not (root / "JPEGImages" / "train_00003.jpg").exists()  # other parameters: replaced
    assert read_image(root / "JPEGImages" / "train_00000.jpg").shape == (40, 40, 3)
    assert parse_voc_xml(root / "Annotations" / "val_00000.xml").width == 40
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    with pytest.raises(ValueError, match="refusing"):
        make_synthetic_voc(tmp_path / "mine", num_train=2, num_val=1, progress=False)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="num_train"):
        make_synthetic_voc(tmp_path / "x", num_train=0)


def test_command_line(tmp_path, capsys):
    from emseg.data.__main__ import main

    root = tmp_path / "cli"
    assert (
        main(
            [
                "synthetic",
                str(root),
                "--train",
                "5",
                "--val",
                "2",
                "--test",
                "3",
                "--pretrain",
                "4",
                "--size",
                "32",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert json.loads((root / "synthetic.json").read_text())["seed"] == 3
    lists = root / "ImageSets" / "Segmentation"
    assert [
        len((lists / f"{split}.txt").read_text().split()) for split in ("train_aug", "val", "test", "pretrain")
    ] == [5, 2, 3, 4]
    assert main(["check", str(root), "--split", "val"]) == 0
    (root / "Annotations" / "train_00001.xml").write_text("<annotation>")
    assert main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "train_00001" in out and "malformed XML" in out and "skipped=1" in out
