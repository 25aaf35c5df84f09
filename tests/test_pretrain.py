"""Classification pretraining: image labels only, deterministic, cached by data and settings; the
small model's receptive field and the rules that size it; the default run's configuration."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from emseg import pretrain as P
from emseg.config import config_from_args
from emseg.data import make_synthetic_voc
from emseg.data.image_labels import ImageLabelSet
from emseg.inference import predict_batch
from emseg.models import DeepLabSmall, build_model, context_for_crop
from emseg.presets import cpu_iterations, working_scale

pytestmark = pytest.mark.slow  # training runs: left out of the fast subset (-m "not slow")


TINY = P.PretrainConfig(width=4, size=48, iterations=12, batch_size=4, context=(0, 1))
FILL = (124, 116, 104)


@pytest.fixture(scope="module")
def pre_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre") / "set"
    make_synthetic_voc(root, num_train=6, num_val=2, num_pretrain=24, image_size=48, seed=3, progress=False)
    return root


def strip_pixel_and_box_labels(src: Path, dst: Path) -> Path:
    """A copy of ``src`` without masks and with every ``<bndbox>`` removed from the XMLs."""
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "SegmentationClassAug")
    for xml in (dst / "Annotations").glob("*.xml"):
        text = xml.read_text()
        xml.write_text(re.sub(r"\s*<bndbox>.*?</bndbox>", "", text, flags=re.S))
    return dst


def test_pretraining_never_reads_masks_or_boxes(pre_root, tmp_path):
    bare = strip_pixel_and_box_labels(pre_root, tmp_path / "bare")
    assert "bndbox" not in next((bare / "Annotations").glob("pretrain_*.xml")).read_text()
    a, b = ImageLabelSet(pre_root, "pretrain", 48, FILL), ImageLabelSet(bare, "pretrain", 48, FILL)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.images, b.images) and a.digest == b.digest
    assert a.labels[:, 1:].any(1).all()  # every synthetic image shows a class
    state_a, curve_a = P.pretrain(TINY, a, torch.device("cpu"))
    state_b, curve_b = P.pretrain(TINY, b, torch.device("cpu"))
    assert curve_a == curve_b
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    # the pretraining split has no masks at all
    assert not list((pre_root / "SegmentationClassAug").glob("pretrain_*"))


def test_pretraining_learns_the_image_labels(pre_root):
    data = ImageLabelSet(pre_root, "pretrain", 48, FILL)
    cfg = replace(TINY, width=8, iterations=100, batch_size=8)
    state, _ = P.pretrain(cfg, data, torch.device("cpu"))
    model = build_model("small", data.num_classes, width=8, context=(0, 1))
    model.load_state_dict(state)
    image = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    image = (image - torch.tensor(P.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(P.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pooled = P.lse_pool(model.eval()(image)[:, 1:], cfg.lse_r)
    present = torch.from_numpy(data.labels[:, 1:])
    # the training images' own classes score above the classes they do not show
    assert pooled[present].mean() > pooled[~present].mean() + 0.5


def test_cache_key_follows_data_and_every_setting(pre_root, tmp_path):
    data = ImageLabelSet(pre_root, "pretrain", 48, FILL)
    key = P.cache_key(TINY, data.digest, data.class_names)
    assert key == P.cache_key(replace(TINY), data.digest, data.class_names)
    changed = {
        "model": "deeplab-largefov",
        "width": 5,
        "context": (1, 1),
        "size": 40,
        "iterations": 13,
        "batch_size": 5,
        "lr": 0.03,
        "momentum": 0.8,
        "weight_decay": 1e-4,
        "lse_r": 3.0,
        "scale_min": 0.8,
        "seed": 1,
    }
    assert set(changed) == {f for f in TINY.__dataclass_fields__}
    keys = {
        P.cache_key(replace(TINY, **{name: value}), data.digest, data.class_names) for name, value in changed.items()
    }
    assert len(keys) == len(changed) and key not in keys
    assert P.cache_key(TINY, data.digest, data.class_names[:-1] + ("other",)) != key

    # one image's bytes or one image label changed: another key
    other = shutil.copytree(pre_root, tmp_path / "other")
    jpg = other / "JPEGImages" / "pretrain_00000.jpg"
    jpg.write_bytes(jpg.read_bytes()[:-2] + b"\x00\xff\xd9")
    assert ImageLabelSet(other, "pretrain", 48, FILL).digest != data.digest
    relabel = shutil.copytree(pre_root, tmp_path / "relabel")
    xml = relabel / "Annotations" / "pretrain_00001.xml"
    names = re.findall(r"<name>(\w+)</name>", xml.read_text())
    new = next(n for n in ("disc", "square", "triangle") if n not in names)
    xml.write_text(xml.read_text().replace(f"<name>{names[0]}</name>", f"<name>{new}</name>"))
    assert ImageLabelSet(relabel, "pretrain", 48, FILL).digest != data.digest


def test_pretrained_start_is_made_once(pre_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = P.pretrained_start(pre_root, "pretrain", TINY, cache, torch.device("cpu")).path
    saved = torch.load(path, weights_only=True)
    assert saved["images"] == 24 and saved["seconds"] > 0 and saved["split"] == "pretrain"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached start was trained again")

    monkeypatch.setattr(P, "pretrain", no_training)
    assert P.pretrained_start(pre_root, "pretrain", TINY, cache, torch.device("cpu")).path == path
    with pytest.raises(AssertionError, match="trained again"):
        P.pretrained_start(pre_root, "pretrain", replace(TINY, seed=9), cache, torch.device("cpu")).path


def test_load_pretrained_copies_weights_and_refuses_another_model(pre_root, tmp_path):
    path = P.pretrained_start(pre_root, "pretrain", TINY, tmp_path, torch.device("cpu")).path
    state = torch.load(path, weights_only=True)["model"]
    model = build_model("small", 7, width=4, context=(0, 1))
    P.load_pretrained(model, path)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    fresh = build_model("small", 7, width=4, context=(0, 1))
    before = fresh.classifier.weight.clone()
    P.load_pretrained(fresh, path, classifier=False)
    assert torch.equal(fresh.classifier.weight, before) and torch.equal(
        fresh.backbone[0].weight, state["backbone.0.weight"]
    )
    with pytest.raises(ValueError, match="does not fit this model"):
        P.load_pretrained(build_model("small", 7, width=4, context=(1, 1)), path)


def measured_receptive_field(model: torch.nn.Module, size: int = 160) -> int:
    """The side of the input window that one central score's gradient reaches (an independent
    measurement of :attr:`DeepLabSmall.receptive_field`)."""
    model = model.eval()
    for parent in model.modules():  # a max-pool passes gradient to one input: count its whole window
        for name, m in parent.named_children():
            if isinstance(m, torch.nn.MaxPool2d):
                setattr(parent, name, torch.nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
    for m in model.modules():  # positive weights: no gradient cancels inside the window
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.constant_(m.weight, 0.05)
            torch.nn.init.constant_(m.bias, 0.1)
    x = torch.zeros(1, 3, size, size, requires_grad=True)
    scores = model(x)
    scores[0, 0, scores.shape[-2] // 2, scores.shape[-1] // 2].backward()
    rows = x.grad.abs().sum((0, 1, 3)).nonzero()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("context", [(0, 0), (0, 1), (1, 1), (2, 4), (0, 4)])
def test_receptive_field_matches_the_gradient_support(context):
    model = DeepLabSmall(3, width=2, context=context)
    assert measured_receptive_field(model) == model.receptive_field == 27 + 16 * sum(context)


def test_context_rule_follows_largefov_on_voc_crops():
    for crop in (48, 64, 96, 128, 200, 321):
        field = DeepLabSmall(2, width=1, context=context_for_crop(crop)).receptive_field
        # the closest field the two dilations can give to 224/321 of the crop (steps of 16 px)
        assert abs(field - 224 / 321 * crop) <= 8 + 1e-9 or field == 27
    assert context_for_crop(64) == (0, 1)
    with pytest.raises(ValueError, match="context"):
        DeepLabSmall(2, context=(1, -1))


def test_predict_batch_at_an_input_scale_returns_full_size_scores():
    torch.manual_seed(0)
    model = build_model("small", 3, width=2, input_scale=0.5).eval()
    image = torch.randn(2, 3, 50, 38)
    out = predict_batch(model, image)
    assert out.shape == (2, 3, 50, 38)
    half = torch.nn.functional.interpolate(image, size=(25, 19), mode="bilinear", align_corners=False, antialias=True)
    model.input_scale = 1.0
    direct = predict_batch(model, half)
    back = torch.nn.functional.interpolate(direct, size=(50, 38), mode="bilinear", align_corners=False)
    assert torch.allclose(out, back, atol=1e-6)


def test_the_default_run_is_em_adapt_from_a_pretrained_start():
    cfg = config_from_args([])
    assert (cfg.preset, cfg.mode, cfg.init, cfg.pretrained) == ("synthetic", "em-adapt", "pretrain", None)
    assert cfg.context == context_for_crop(cfg.crop_size) == (0, 1) and cfg.input_scale == 1.0
    assert cfg.strong == 0 and cfg.strong_list is None  # image labels only: no masks
    assert config_from_args(["--init", "scratch"]).init == "scratch"


def test_cpu_preset_sizes_the_run_from_the_images(tmp_path, capsys):
    pytest.importorskip("skimage")
    from emseg.data.photo import make_photo_voc

    root = make_photo_voc(tmp_path / "photo", num_train=6, num_val=2)
    sides = []
    for jpg in sorted((root / "JPEGImages").glob("photo_train_*.jpg")):
        from PIL import Image

        with Image.open(jpg) as im:
            sides.append(max(im.size))
    expected = 64 / sorted(sides)[len(sides) // 2]
    assert working_scale(str(root), "train_aug", 64) == pytest.approx(expected)
    if torch.cuda.is_available():
        pytest.skip("with a GPU, --data-root picks the voc preset")
    cfg = config_from_args(["--data-root", str(root), "--train-split", "train_aug"])
    assert (cfg.preset, cfg.model, cfg.crop_size, cfg.mode) == ("cpu", "small", 64, "em-adapt")
    assert cfg.input_scale == pytest.approx(expected) and cfg.context == (0, 1)
    assert cfg.iterations == 1500  # 6 images: the schedule's floor (30 passes would be 23 iterations)
    assert (
        config_from_args(["--data-root", str(root), "--train-split", "train_aug", "--iterations", "7"]).iterations == 7
    )
    assert [cpu_iterations(n, 8) for n in (6, 400, 1000, 10582)] == [1500, 1500, 3750, 6000]
    assert (
        config_from_args(["--data-root", str(root), "--train-split", "train_aug", "--input-scale", "0.5"]).input_scale
        == 0.5
    )
    with pytest.raises(SystemExit):
        config_from_args(["--data-root", str(root), "--train-split", "train_aug", "--input-scale", "0"])
    assert "--input-scale" in capsys.readouterr().err


def test_training_pretrains_once_then_uses_the_cache(tmp_path):
    from conftest import base_args

    from emseg.train import main as train_main

    root, cache = tmp_path / "syn", tmp_path / "pretrain-cache"
    flags = {
        "--synthetic-train": 8,
        "--synthetic-val": 2,
        "--synthetic-size": 48,
        "--crop-size": 48,
        "--iterations": 2,
        "--init": "pretrain",
        "--synthetic-pretrain": 12,
        "--pretrain-iterations": 6,
        "--mode": "em-adapt",
        "--pretrain-cache": cache,
    }
    train_main(base_args(root, tmp_path / "a", **flags))
    made = list(cache.glob("pretrain-small-*.pth"))
    first = (tmp_path / "a" / "train.log").read_text()
    assert len(made) == 1 and "pretraining took" in first
    # 48 px crops: the rule picks the 27 px receptive field
    assert "receptive field 27 px" in first and "mode em-adapt" in first
    train_main(base_args(root, tmp_path / "b", **flags))
    second = (tmp_path / "b" / "train.log").read_text()
    assert list(cache.glob("pretrain-small-*.pth")) == made
    assert "cached (it took" in second and "pretraining took" not in second


def reference_average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Brute force: the mean, over the positive images, of the precision among the images ranked at
    or above each one (ties: the earlier image ranks first)."""
    n = len(scores)
    rank_of = {}
    for i in range(n):
        rank_of[i] = sum(1 for j in range(n) if scores[j] > scores[i] or (scores[j] == scores[i] and j < i))
    precisions = []
    for i in np.flatnonzero(positives):
        above = [j for j in range(n) if rank_of[j] <= rank_of[i]]
        precisions.append(positives[above].sum() / len(above))
    return float(np.mean(precisions))


def test_mean_average_precision_against_brute_force():
    rng = np.random.default_rng(5)
    truth = rng.random((40, 5)) < 0.3
    truth[:, 3] = True  # every image: left out
    truth[:, 4] = False  # no image: left out
    scores = np.round(rng.normal(size=(40, 5)), 1)  # rounded: ties
    got, prior = P.mean_average_precision(torch.from_numpy(scores), torch.from_numpy(truth))
    want = np.mean([reference_average_precision(scores[:, c], truth[:, c]) for c in range(3)])
    assert got == pytest.approx(want) and prior == pytest.approx(truth[:, :3].mean())
    perfect, _ = P.mean_average_precision(torch.from_numpy(truth.astype(float)), torch.from_numpy(truth))
    assert perfect == pytest.approx(1.0)
    assert np.isnan(P.mean_average_precision(torch.zeros(4, 1), torch.ones(4, 1, dtype=torch.bool))[0])


def test_a_pretraining_that_learnt_nothing_is_not_used(tmp_path, monkeypatch):
    """A start whose image-label mAP is the prior's: the run warns, records it, and trains from the
    random weights of --init scratch (the same network at the end)."""
    from conftest import base_args

    from emseg.train import main as train_main

    def no_better_than_prior(root, split, cfg, cache_dir, device, build=True, health_split=None):
        return P.PretrainedStart(Path(cache_dir) / "never-read.pth", 0.31, 0.30, 24)

    monkeypatch.setattr(P, "pretrained_start", no_better_than_prior)
    root = tmp_path / "syn"
    flags = {
        "--synthetic-train": 24,
        "--synthetic-val": 8,
        "--synthetic-size": 48,
        "--crop-size": 48,
        "--iterations": 3,
        "--mode": "em-adapt",
    }
    summary = train_main(
        base_args(root, tmp_path / "a", **flags, **{"--init": "pretrain", "--pretrain-split": "train_aug"})
    )
    log = (tmp_path / "a" / "train.log").read_text()
    assert "the pretraining did not learn" in log and "random weights" in log
    assert summary["pretraining"]["learnt"] is False and summary["pretraining"]["map"] == pytest.approx(0.31)
    train_main(base_args(root, tmp_path / "b", **flags))  # --init scratch
    from emseg.checkpoint import load_checkpoint

    a, b = (load_checkpoint(tmp_path / run / "checkpoint.pth")["model"] for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
