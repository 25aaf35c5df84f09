"""The VOC-layout set of photo textures: deterministic, complete, consistent, read by the VOC loader."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")

from emseg.data import VOCSegmentation  # noqa: E402
from emseg.data.photo import PHOTO_CLASSES, make_photo_voc  # noqa: E402


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    return make_photo_voc(tmp_path_factory.mktemp("photo") / "set", num_train=12, num_val=3, seed=5)


def test_layout_labels_and_sizes(photo):
    ds = VOCSegmentation(photo, "train_aug")
    assert ds.class_names == PHOTO_CLASSES and len(ds) == 12
    sizes = set()
    for i in range(len(ds)):
        s = ds[i]
        mask = s["mask"].numpy()
        sizes.add(mask.shape)
        assert 160 <= min(mask.shape) and max(mask.shape) <= 224
        present = set(np.unique(mask).tolist()) - {255}
        assert set(np.nonzero(s["labels"].numpy())[0].tolist()) == present | {0}
        for x1, y1, x2, y2, cls in s["boxes"].numpy().astype(int):
            assert (mask[y1:y2, x1:x2] == cls).any()
    assert len(sizes) > 1  # images of several sizes, as a user's data
    assert len(VOCSegmentation(photo, "val")) == 3
    assert (photo / "ImageSets" / "Segmentation" / "train.txt").read_text().split() == ds.ids[:1]


def test_same_seed_same_bytes(photo, tmp_path):
    again = make_photo_voc(tmp_path / "again", num_train=12, num_val=3, seed=5)
    for rel in (
        "JPEGImages/photo_train_00004.jpg",
        "SegmentationClassAug/photo_val_00002.png",
        "Annotations/photo_train_00000.xml",
    ):
        assert (photo / rel).read_bytes() == (again / rel).read_bytes()
    other = make_photo_voc(tmp_path / "other", num_train=2, num_val=0, seed=6)
    assert (other / "JPEGImages/photo_train_00000.jpg").read_bytes() != (
        photo / "JPEGImages/photo_train_00000.jpg"
    ).read_bytes()
    assert make_photo_voc(photo, num_train=12, num_val=3, seed=5) == photo  # reused as it is
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to write"):
        make_photo_voc(tmp_path / "mine", num_train=1, num_val=0)
