"""VOC/SBD loader, COCO boxes, strong subsets and bad-data errors, on a VOC tree built by code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from emseg.data import (
    VOC_CLASSES,
    CocoBoxes,
    DataError,
    EvalTransform,
    MissingDataError,
    VOCSegmentation,
    collate,
    select_strong,
)
from emseg.data.io import mask_boxes, read_id_list, read_image, voc_palette, write_mask_png

C = {name: k for k, name in enumerate(VOC_CLASSES)}


# ------------------------------------------------------------------------------------------------
# A small VOC tree: every way an image can be annotated on disk


def _xml(objects: list[tuple[str, int, int, int, int]], difficult: int = 0) -> str:
    """VOC XML with 1-based inclusive boxes (xmin, ymin, xmax, ymax), as VOC writes them."""
    body = "".join(
        f"<object><name>{n}</name><difficult>{difficult}</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    return f"<annotation><size><width>40</width><height>30</height></size>{body}</annotation>"


def _image(rng: np.random.Generator, h: int = 30, w: int = 40) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_jpg(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1])
    assert ok
    path.write_bytes(data.tobytes())


def build_voc(root: Path) -> dict:
    """Write the tree and return what each image should load as."""
    rng = np.random.default_rng(0)
    for d in (
        "JPEGImages",
        "Annotations",
        "SegmentationClass",
        "SegmentationClassAug",
        "cls",
        "ImageSets/Segmentation",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    expect = {}

    # a: XML (two objects) and a VOC palette PNG in SegmentationClass with an ignore outline
    mask_a = np.zeros((30, 40), np.uint8)
    mask_a[3:18, 4:20] = C["dog"]
    mask_a[10:30, 25:40] = C["person"]
    mask_a[2, 4:20] = 255
    _write_jpg(root / "JPEGImages/2007_000001.jpg", _image(rng))
    (root / "Annotations/2007_000001.xml").write_text(_xml([("dog", 5, 4, 20, 18), ("person", 26, 11, 40, 30)]))
    write_mask_png(root / "SegmentationClass/2007_000001.png", mask_a)
    expect["2007_000001"] = dict(
        mask=mask_a, labels={0, C["dog"], C["person"]}, boxes=[(4, 3, 20, 18, C["dog"]), (25, 10, 40, 30, C["person"])]
    )

    # b: no XML; mask in SegmentationClassAug: labels and boxes come from the mask
    mask_b = np.zeros((30, 40), np.uint8)
    mask_b[0:5, 0:6] = C["cat"]
    mask_b[20:28, 30:39] = C["cat"]
    mask_b[10:15, 10:25] = C["car"]
    mask_b[9, 10:25] = 255
    _write_jpg(root / "JPEGImages/2007_000002.jpg", _image(rng))
    write_mask_png(root / "SegmentationClassAug/2007_000002.png", mask_b)
    expect["2007_000002"] = dict(
        mask=mask_b,
        labels={0, C["cat"], C["car"]},
        boxes=[(10, 10, 25, 15, C["car"]), (0, 0, 6, 5, C["cat"]), (30, 20, 39, 28, C["cat"])],
    )

    # c: XML and an SBD .mat only (no PNG)
    mask_c = np.zeros((30, 40), np.uint8)
    mask_c[5:25, 5:35] = C["aeroplane"]
    _write_jpg(root / "JPEGImages/2008_000003.jpg", _image(rng))
    (root / "Annotations/2008_000003.xml").write_text(_xml([("aeroplane", 6, 6, 35, 25)], difficult=1))
    scipy.io.savemat(
        root / "cls/2008_000003.mat",
        {"GTcls": {"Segmentation": mask_c, "Boundaries": np.zeros(1), "CategoriesPresent": np.array([1])}},
    )
    expect["2008_000003"] = dict(mask=mask_c, labels={0, C["aeroplane"]}, boxes=[(5, 5, 35, 25, C["aeroplane"])])

    # d: XML only: a weak image
    _write_jpg(root / "JPEGImages/2009_000004.jpg", _image(rng))
    (root / "Annotations/2009_000004.xml").write_text(_xml([("tvmonitor", 1, 1, 40, 30)]))
    expect["2009_000004"] = dict(mask=None, labels={0, C["tvmonitor"]}, boxes=[(0, 0, 40, 30, C["tvmonitor"])])

    # DeepLab-style train_aug list (paths), plain-id val list
    (root / "ImageSets/Segmentation/train_aug.txt").write_text(
        "/JPEGImages/2007_000001.jpg /SegmentationClass/2007_000001.png\n"
        "/JPEGImages/2007_000002.jpg /SegmentationClassAug/2007_000002.png\n\n"
        "2008_000003\n2009_000004\n"
    )
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_000001\n2007_000002\n")
    return expect


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    return root, build_voc(root)


@pytest.fixture
def voc_copy(tmp_path, voc):
    """A private copy to break."""
    root = tmp_path / "voc"
    shutil.copytree(voc[0], root)
    return root


def _box_set(boxes: torch.Tensor) -> list[tuple]:
    return sorted(tuple(float(v) for v in row) for row in boxes)


# ------------------------------------------------------------------------------------------------
# Loading


def test_loader_reads_every_annotation_source(voc):
    root, expect = voc
    ds = VOCSegmentation(root, "train_aug")
    assert ds.ids == list(expect)
    assert ds.num_classes == 21 and ds.class_names == VOC_CLASSES
    assert ds.strong_indices == [0, 1, 2] and ds.weak_indices == [3]
    for i, (image_id, exp) in enumerate(expect.items()):
        s = ds[i]
        assert s["id"] == image_id and s["index"] == i
        assert s["image"].shape == (3, 30, 40) and s["image"].dtype == torch.float32
        assert s["image_uint8"].dtype == torch.uint8 and s["image_uint8"].shape == (3, 30, 40)
        # the uint8 image is the file's pixels in RGB order
        bgr = cv2.imread(str(root / "JPEGImages" / f"{image_id}.jpg"))
        assert torch.equal(s["image_uint8"], torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1))
        assert s["mask"].dtype == torch.int64
        if exp["mask"] is None:
            assert s["strong"] is False and bool((s["mask"] == 255).all())
        else:
            assert s["strong"] is True
            assert torch.equal(s["mask"], torch.from_numpy(exp["mask"].astype(np.int64)))
        assert s["labels"].dtype == torch.bool and s["labels"].shape == (21,)
        assert set(torch.nonzero(s["labels"]).flatten().tolist()) == exp["labels"]
        assert _box_set(s["boxes"]) == sorted(tuple(map(float, b)) for b in exp["boxes"])


def test_normalisation_matches_uint8(voc):
    root, _ = voc
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    s = VOCSegmentation(root, "train_aug", transform=EvalTransform(mean, std))[0]
    expected = (s["image_uint8"].float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(s["image"], expected)


def test_strong_ids_hide_the_masks_of_weak_images(voc):
    root, expect = voc
    ds = VOCSegmentation(root, "train_aug", strong_ids={"2007_000002"})
    assert ds.strong_indices == [1]
    a = ds[0]
    assert a["strong"] is False and bool((a["mask"] == 255).all())
    # labels and boxes of a weak image are still there
    assert set(torch.nonzero(a["labels"]).flatten().tolist()) == expect["2007_000001"]["labels"]
    b = ds[1]
    assert b["strong"] is True and torch.equal(
        b["mask"], torch.from_numpy(expect["2007_000002"]["mask"].astype(np.int64))
    )
    with pytest.raises(MissingDataError, match="2009_000004"):
        VOCSegmentation(root, "train_aug", strong_ids={"2009_000004"})  # strong but has no mask


def test_lists_by_name_at_root_or_by_path(voc_copy):
    (voc_copy / "mine.txt").write_text("2008_000003\n")
    assert VOCSegmentation(voc_copy, "mine").ids == ["2008_000003"]
    assert VOCSegmentation(voc_copy, voc_copy / "ImageSets/Segmentation/val.txt").ids == ["2007_000001", "2007_000002"]
    with pytest.raises(MissingDataError, match="nosuch.txt"):
        VOCSegmentation(voc_copy, "nosuch")


def test_sbd_release_layout(tmp_path):
    """SBD as released: img/, cls/ and train.txt at the root, no XML: labels and boxes from the mask."""
    for d in ("img", "cls"):
        (tmp_path / d).mkdir()
    mask = np.zeros((30, 40), np.uint8)
    mask[2:9, 3:12] = C["bus"]
    _write_jpg(tmp_path / "img/2008_000123.jpg", np.zeros((30, 40, 3), np.uint8))
    scipy.io.savemat(tmp_path / "cls/2008_000123.mat", {"GTcls": {"Segmentation": mask}})
    (tmp_path / "train.txt").write_text("2008_000123\n")
    s = VOCSegmentation(tmp_path, "train")[0]
    assert torch.equal(s["mask"], torch.from_numpy(mask.astype(np.int64)))
    assert set(torch.nonzero(s["labels"]).flatten().tolist()) == {0, C["bus"]}
    assert s["boxes"].tolist() == [[3.0, 2.0, 12.0, 9.0, float(C["bus"])]]


def test_png_takes_precedence_over_mat_and_aug_over_voc(voc_copy):
    mask = np.full((30, 40), C["bird"], np.uint8)
    write_mask_png(voc_copy / "SegmentationClassAug/2008_000003.png", mask)
    write_mask_png(voc_copy / "SegmentationClassAug/2007_000001.png", mask)
    ds = VOCSegmentation(voc_copy, "train_aug")
    assert bool((ds[0]["mask"] == C["bird"]).all()) and bool((ds[2]["mask"] == C["bird"]).all())


def test_written_masks_use_the_voc_palette(tmp_path):
    mask = np.arange(30 * 40, dtype=np.int64).reshape(30, 40) % 21
    mask[0] = 255
    write_mask_png(tmp_path / "m.png", mask.astype(np.uint8))
    with Image.open(tmp_path / "m.png") as img:
        assert img.mode == "P"
        palette = np.array(img.getpalette()[: 256 * 3], dtype=np.uint8).reshape(256, 3)
        assert np.array_equal(np.array(img), mask)
    # VOC's well-known colours: aeroplane dark red, person pink-ish, ignore cream
    assert palette[1].tolist() == [128, 0, 0] and palette[15].tolist() == [192, 128, 128]
    assert palette[255].tolist() == [224, 224, 192]
    assert np.array_equal(palette, voc_palette())


def test_classes_txt_overrides_voc_names(voc_copy):
    (voc_copy / "classes.txt").write_text("background\ndog\nperson\ntvmonitor\n")
    (voc_copy / "only.txt").write_text("2009_000004\n")
    ds = VOCSegmentation(voc_copy, "only")
    assert ds.class_names == ("background", "dog", "person", "tvmonitor") and ds.num_classes == 4
    assert ds[0]["labels"].tolist() == [True, False, False, True]


def test_boxes_from_mask_components():
    mask = np.zeros((10, 12), np.uint8)
    mask[1:3, 1:3] = 4
    mask[3, 3] = 4  # touches diagonally: same 8-connected component
    mask[6:9, 8:12] = 4
    mask[5:7, 0:2] = 2
    boxes = mask_boxes(mask, 5)
    assert sorted(map(tuple, boxes.tolist())) == sorted([(1, 1, 4, 4, 4), (8, 6, 12, 9, 4), (0, 5, 2, 7, 2)])


def test_images_ignore_exif_orientation(tmp_path):
    rgb = np.zeros((10, 30, 3), np.uint8)
    rgb[:, :5] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees": a viewer would show it 30 high, 10 wide
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    image = read_image(tmp_path / "r.jpg")
    assert image.shape == (10, 30, 3)  # as stored, so it still lines up with its mask
    assert image[:, :3, 0].min() > 200 and image[:, 12:, 0].max() < 60


def test_read_id_list_formats(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text(
        "# comment\n2007_000001\n/JPEGImages/2007_000002.jpg /SegmentationClassAug/2007_000002.png\n\n  a_b  \n"
    )
    assert read_id_list(p) == ["2007_000001", "2007_000002", "a_b"]


def test_collate_pads_images_masks_and_boxes(voc_copy):
    big = np.zeros((36, 50, 3), np.uint8)
    _write_jpg(voc_copy / "JPEGImages/2009_000004.jpg", big)
    xml = voc_copy / "Annotations/2009_000004.xml"  # its <size> must say the new size
    xml.write_text(
        xml.read_text().replace("<width>40</width><height>30</height>", "<width>50</width><height>36</height>")
    )
    ds = VOCSegmentation(voc_copy, "train_aug")
    samples = [ds[0], ds[1], ds[3]]
    batch = collate(samples)
    assert batch["image"].shape == (3, 3, 36, 50) and batch["image_uint8"].shape == (3, 3, 36, 50)
    assert batch["mask"].shape == (3, 36, 50) and batch["labels"].shape == (3, 21)
    assert batch["boxes"].shape == (3, 3, 5)  # image b has three boxes
    assert batch["strong"].tolist() == [True, True, False] and batch["index"].tolist() == [0, 1, 3]
    assert batch["id"] == ["2007_000001", "2007_000002", "2009_000004"]
    for k, s in enumerate(samples):
        h, w = s["image"].shape[-2:]
        assert torch.equal(batch["image"][k, :, :h, :w], s["image"])
        assert torch.equal(batch["mask"][k, :h, :w], s["mask"])
        assert bool((batch["mask"][k, h:] == 255).all()) and bool((batch["mask"][k, :, w:] == 255).all())
        assert bool((batch["image"][k, :, h:] == 0).all())
        nb = s["boxes"].shape[0]
        assert torch.equal(batch["boxes"][k, :nb], s["boxes"])
        assert bool((batch["boxes"][k, nb:, 4] == -1).all())


# ------------------------------------------------------------------------------------------------
# Bad data: a clear error naming the file, or skip and count


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _break(root: Path, how: str) -> tuple[str, str, type]:
    """Damage the tree; return (bad file relative path, expected message, error type)."""
    if how == "missing_image":
        (root / "JPEGImages/2007_000002.jpg").unlink()
        return "JPEGImages/2007_000002.jpg", "image not found", MissingDataError
    if how == "truncated_jpeg":
        _truncate(root / "JPEGImages/2007_000002.jpg")
        return "JPEGImages/2007_000002.jpg", "truncated JPEG", DataError
    if how == "garbage_jpeg":
        (root / "JPEGImages/2007_000002.jpg").write_bytes(b"not an image at all" + b"\xff\xd9")
        return "JPEGImages/2007_000002.jpg", "not a decodable image", DataError
    if how == "garbage_png":
        (root / "SegmentationClassAug/2007_000002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        return "SegmentationClassAug/2007_000002.png", "not a readable PNG", DataError
    if how == "rgb_png":
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "SegmentationClassAug/2007_000002.png")
        return "SegmentationClassAug/2007_000002.png", "expected a palette", DataError
    if how == "mask_size":
        write_mask_png(root / "SegmentationClassAug/2007_000002.png", np.zeros((31, 40), np.uint8))
        return "SegmentationClassAug/2007_000002.png", "mask is 40x31 but the image", DataError
    if how == "mask_value":
        write_mask_png(root / "SegmentationClassAug/2007_000002.png", np.full((30, 40), 77, np.uint8))
        return "SegmentationClassAug/2007_000002.png", "mask value 77 is not a class index", DataError
    if how == "malformed_xml":
        (root / "Annotations/2007_000001.xml").write_text("<annotation><object><name>dog</name>")
        return "Annotations/2007_000001.xml", "malformed XML", DataError
    if how == "unknown_class":
        (root / "Annotations/2007_000001.xml").write_text(_xml([("unicorn", 1, 1, 5, 5)]))
        return "Annotations/2007_000001.xml", "unknown class name 'unicorn'", DataError
    if how == "bad_box":
        (root / "Annotations/2007_000001.xml").write_text(_xml([("dog", 9, 1, 5, 5)]))
        return "Annotations/2007_000001.xml", "inverted box", DataError
    if how == "no_annotation":
        (root / "SegmentationClassAug/2007_000002.png").unlink()
        return "Annotations/2007_000002.xml", "neither an XML annotation nor a mask", MissingDataError
    if how == "bad_mat":
        scipy.io.savemat(root / "cls/2008_000003.mat", {"other": np.zeros(3)})
        return "cls/2008_000003.mat", "no GTcls.Segmentation", DataError
    raise ValueError(how)


BREAKAGES = [
    "missing_image",
    "truncated_jpeg",
    "garbage_jpeg",
    "garbage_png",
    "rgb_png",
    "mask_size",
    "mask_value",
    "malformed_xml",
    "unknown_class",
    "bad_box",
    "no_annotation",
    "bad_mat",
]


@pytest.mark.parametrize("how", BREAKAGES)
def test_bad_file_raises_naming_it(voc_copy, how):
    rel, message, error = _break(voc_copy, how)
    with pytest.raises(error) as info:
        ds = VOCSegmentation(voc_copy, "train_aug")
        for i in range(len(ds)):
            ds[i]
    assert str(voc_copy / rel) in str(info.value) and message in str(info.value)
    assert info.value.path == str(voc_copy / rel)
    if error is MissingDataError:
        assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("how", BREAKAGES)
def test_skip_corrupt_drops_and_counts(voc_copy, how):
    rel, message, _ = _break(voc_copy, how)
    ds = VOCSegmentation(voc_copy, "train_aug", skip_corrupt=True)
    bad_id = Path(rel).stem
    assert bad_id not in ds.ids and len(ds) == 3
    assert len(ds.skipped) == 1
    image_id, path, reason = ds.skipped[0]
    assert image_id == bad_id and path == str(voc_copy / rel) and message in reason
    for i in range(len(ds)):  # what is left loads
        assert ds[i]["id"] == ds.ids[i]
    assert "skipped=1" in repr(ds)


def test_missing_root(tmp_path):
    with pytest.raises(MissingDataError, match="nowhere"):
        VOCSegmentation(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------
# Strong subsets


def test_select_strong_by_count_is_seeded_nested_and_order_free():
    ids = [f"img{i:04d}" for i in range(300)]
    a = select_strong(ids, count=50, seed=3)
    assert len(a) == 50 and a <= set(ids)
    assert select_strong(list(reversed(ids)), count=50, seed=3) == a
    assert select_strong(ids, count=50, seed=4) != a
    assert a <= select_strong(ids, count=120, seed=3)
    assert select_strong(ids, count=0) == set() and select_strong(ids, count=300) == set(ids)
    with pytest.raises(ValueError, match="count"):
        select_strong(ids, count=301)
    with pytest.raises(ValueError, match="exactly one"):
        select_strong(ids)


def test_select_strong_by_list(tmp_path):
    ids = ["a", "b", "c"]
    (tmp_path / "s.txt").write_text("a\nc\n")
    assert select_strong(ids, list_file=tmp_path / "s.txt") == {"a", "c"}
    (tmp_path / "bad.txt").write_text("a\nzzz\n")
    with pytest.raises(ValueError, match="zzz"):
        select_strong(ids, list_file=tmp_path / "bad.txt")


# ------------------------------------------------------------------------------------------------
# COCO-style JSON


def _coco(path: Path) -> None:
    data = {
        "images": [
            {"id": 7, "file_name": "2007_000001.jpg", "height": 30, "width": 40},
            {"id": 8, "file_name": "sub/2009_000004.jpg", "height": 30, "width": 40},
            {"id": 9, "file_name": "empty.jpg", "height": 30, "width": 40},
        ],
        "categories": [
            {"id": 18, "name": "dog"},
            {"id": 72, "name": "tv"},
            {"id": 24, "name": "zebra"},
            {"id": 1, "name": "person"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 18,
                "bbox": [2.5, 3, 10, 5],
                "iscrowd": 0,
                "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]],
            },
            {"id": 2, "image_id": 7, "category_id": 24, "bbox": [0, 0, 4, 4], "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 40, 30], "iscrowd": 1},
            {"id": 4, "image_id": 8, "category_id": 72, "bbox": [1, 2, 3, 4], "iscrowd": 0, "score": 0.9},
            {"id": 5, "image_id": 8, "category_id": 18, "bbox": [5, 5, 5, 5], "iscrowd": 0, "score": 0.2},
        ],
    }
    path.write_text(json.dumps(data))


def test_coco_boxes_map_categories_and_convert_xywh(tmp_path):
    _coco(tmp_path / "c.json")
    coco = CocoBoxes(tmp_path / "c.json")
    assert coco.unmapped == {"zebra"} and len(coco) == 3
    labels, boxes = coco.get("2007_000001")
    assert boxes.tolist() == [[2.5, 3.0, 12.5, 8.0, C["dog"]]]  # zebra unmapped, crowd person skipped
    assert set(np.nonzero(labels)[0].tolist()) == {0, C["dog"]}
    labels, boxes = coco.get("2009_000004")
    assert sorted(boxes[:, 4].tolist()) == [C["dog"], C["tvmonitor"]]
    _, boxes = CocoBoxes(tmp_path / "c.json", min_score=0.5).get("2009_000004")
    assert boxes.tolist() == [[1.0, 2.0, 4.0, 6.0, C["tvmonitor"]]]
    labels, boxes = coco.get("empty")
    assert boxes.shape == (0, 5) and labels.tolist() == [True] + [False] * 20
    assert coco.get("not_there") is None
    _, boxes = CocoBoxes(tmp_path / "c.json", include_crowd=True).get("2007_000001")
    assert C["person"] in boxes[:, 4].tolist()
    custom = CocoBoxes(
        tmp_path / "c.json", class_names=("background", "animal"), category_map={18: "animal", "zebra": 1}
    )
    assert sorted(map(tuple, custom.get("2007_000001")[1].tolist())) == [(0, 0, 4, 4, 1), (2.5, 3, 12.5, 8, 1)]


def test_coco_boxes_override_xml_in_the_loader(voc, tmp_path):
    root, expect = voc
    _coco(tmp_path / "c.json")
    ds = VOCSegmentation(root, "train_aug", annotations=CocoBoxes(tmp_path / "c.json"))
    assert _box_set(ds[0]["boxes"]) == [(2.5, 3.0, 12.5, 8.0, float(C["dog"]))]
    # images the JSON does not know keep their XML / mask annotations
    assert _box_set(ds[2]["boxes"]) == sorted(tuple(map(float, b)) for b in expect["2008_000003"]["boxes"])


def test_coco_errors_name_the_file(tmp_path):
    with pytest.raises(MissingDataError, match="none.json"):
        CocoBoxes(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json: malformed JSON"):
        CocoBoxes(tmp_path / "bad.json")
    (tmp_path / "orphan.json").write_text(
        json.dumps(
            {
                "images": [],
                "categories": [{"id": 1, "name": "dog"}],
                "annotations": [{"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1]}],
            }
        )
    )
    with pytest.raises(DataError, match="image_id 5"):
        CocoBoxes(tmp_path / "orphan.json")


def test_coco_class_mask(tmp_path):
    pytest.importorskip("pycocotools")
    _coco(tmp_path / "c.json")
    mask = CocoBoxes(tmp_path / "c.json").class_mask("2007_000001", 30, 40)
    ys, xs = np.nonzero(mask == C["dog"])
    # the polygon is the rectangle x in [2, 12], y in [3, 8]
    assert set(np.unique(mask).tolist()) == {0, C["dog"]}
    assert 2 <= xs.min() and xs.max() <= 12 and 3 <= ys.min() and ys.max() <= 8
    assert ys.size >= 9 * 4


def test_dataset_pickles_for_worker_processes(voc, tmp_path):
    import pickle

    root, _ = voc
    _coco(tmp_path / "c.json")
    ds = VOCSegmentation(root, "train_aug", annotations=CocoBoxes(tmp_path / "c.json"))
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.ids == ds.ids
    a, b = ds[2], clone[2]
    assert (
        torch.equal(a["image"], b["image"])
        and torch.equal(a["mask"], b["mask"])
        and torch.equal(a["boxes"], b["boxes"])
    )
