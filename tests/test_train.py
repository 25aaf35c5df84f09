"""Training: a short weak run learns, resume equals an uninterrupted run, two DDP processes equal
one process on the same global batch, and bad flags fail clearly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import base_args

import emseg.training_data
from emseg.checkpoint import load_checkpoint
from emseg.config import build_parser, config_from_args
from emseg.train import main as train_main

pytestmark = pytest.mark.slow  # training runs: left out of the fast subset (-m "not slow")


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A tiny synthetic set shared by the runs of this module (written once)."""
    from emseg.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("data") / "syn"
    make_synthetic_voc(root, num_train=96, num_val=24, image_size=64, seed=0, progress=False)
    return root


def test_short_weak_run_learns(synthetic, tmp_path):
    """Bbox-Rect from boxes alone, 300 iterations: mIoU well above chance (predicting background
    everywhere scores about 12% here; this run reaches about 29%)."""
    out = tmp_path / "run"
    summary = train_main(
        base_args(
            synthetic,
            out,
            **{
                "--mode": "bbox-rect",
                "--iterations": 300,
                "--batch-size": 8,
                "--width": 16,
                "--lr": 0.02,
                "--log-interval": 50,
                "--num-pictures": 2,
            },
        )
    )
    assert summary["miou"] > 0.22, summary
    assert (out / "checkpoint.pth").is_file()
    assert len(list((out / "pictures").glob("*_overlay.jpg"))) == 2
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,loss,lr") and len(rows) >= 6
    assert json.loads((out / "summary.json").read_text())["miou"] == pytest.approx(summary["miou"])
    ckpt = load_checkpoint(out / "checkpoint.pth")
    assert ckpt["iteration"] == 300 and ckpt["args"]["mode"] == "bbox-rect"


@pytest.mark.parametrize(
    "mode,extra",
    [
        ("em-fixed", {"--strong": 16}),
        ("bbox-rect", {"--strong": 16, "--workers": 1}),
    ],
)
def test_resume_equals_uninterrupted(synthetic, tmp_path, mode, extra):
    common = {"--mode": mode, "--iterations": 6, "--checkpoint-interval": 100, **extra}
    train_main(base_args(synthetic, tmp_path / "straight", **common))
    train_main(base_args(synthetic, tmp_path / "split", **common, **{"--stop-after": 3}))
    half = load_checkpoint(tmp_path / "split" / "checkpoint.pth")
    assert half["iteration"] == 3
    train_main(
        base_args(synthetic, tmp_path / "split", **common, **{"--resume": tmp_path / "split" / "checkpoint.pth"})
    )
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pth")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pth")
    assert a["iteration"] == b["iteration"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["sampler"] == b["sampler"] and a["scheduler"] == b["scheduler"]


def test_resume_refuses_other_batches(synthetic, tmp_path):
    common = {"--mode": "em-fixed", "--iterations": 4}
    train_main(base_args(synthetic, tmp_path / "a", **common, **{"--stop-after": 2}))
    with pytest.raises(ValueError, match="resume with the same"):
        train_main(
            base_args(
                synthetic,
                tmp_path / "a",
                **common,
                **{"--batch-size": 2, "--resume": tmp_path / "a" / "checkpoint.pth"},
            )
        )


def test_two_process_ddp_equals_one_process(synthetic, tmp_path):
    """torchrun with two CPU processes (gloo) on a global batch of 4 vs one process on the same
    global batch: the same crops, the same E-step, the same gradient up to summation order."""
    common = {"--mode": "em-adapt", "--iterations": 4, "--dropout": 0.0, "--strong": 8, "--eval-batch-size": 4}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run(
        [sys.executable, "-m", "emseg.train", *base_args(synthetic, tmp_path / "one", **common)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stdout + single.stderr
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "emseg.train",
            *base_args(synthetic, tmp_path / "two", **common),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    assert "x2" in ddp.stdout
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pth")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pth")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert sa["miou"] == pytest.approx(sb["miou"], abs=1e-3)  # the val set split over 2 ranks


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--mode", "em-magic"], "invalid choice: 'em-magic'"),
        (["--strong", "-3"], "--strong must be >= 0"),
        (["--strong", "5", "--strong-list", "x.txt"], "exclusive"),
        (["--strong-list", "/nonexistent/ids.txt"], "no such file"),
        (["--strong", "5", "--strong-share", "1.5"], "--strong-share must be in"),
        (["--mode", "full", "--strong", "5"], "make no sense with --mode full"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--lr", "0"], "--lr must be positive"),
        (["--scale-min", "2", "--scale-max", "1"], "--scale-max must be >= --scale-min"),
        (["--fg-portion", "1.2"], "--fg-portion and --bg-portion"),
        (["--pretrained", "vgg.pth"], "--model deeplab-largefov"),
        (["--model", "deeplab-largefov", "--pretrained", "/nonexistent/vgg.pth"], "no such file"),
        (["--resume", "/nonexistent/ckpt.pth"], "--resume /nonexistent/ckpt.pth: no such file"),
        (["--data-root", "/nonexistent/VOC"], "no such folder"),
        (["--iterations", "ten"], "invalid int value"),
        (["--stop-after", "0"], "--stop-after must be >= 1"),
    ],
)
def test_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        config_from_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_presets():
    cfg = config_from_args([])
    assert (cfg.preset, cfg.model, cfg.mode) == ("synthetic", "small", "em-adapt")
    voc = config_from_args(["--preset", "voc"])
    assert (voc.model, voc.batch_size, voc.crop_size, voc.lr, voc.lr_policy, voc.lr_step, voc.iterations) == (
        "deeplab-largefov",
        20,
        321,
        1e-3,
        "step",
        2000,
        6000,
    )
    assert (voc.momentum, voc.weight_decay, voc.classifier_lr_mult) == (0.9, 5e-4, 10.0)
    assert config_from_args(["--preset", "voc", "--batch-size", "10"]).batch_size == 10


def test_the_mode_follows_the_supervision_unless_given():
    from emseg.presets import default_mode

    for preset in ("synthetic", "voc"):
        weak = config_from_args(["--preset", preset])
        assert weak.mode == "em-adapt" and "image labels alone" in weak.mode_reason
        semi = config_from_args(["--preset", preset, "--strong", "60"])
        assert (semi.mode, semi.mode_reason) == default_mode(preset, True)
        assert semi.mode == ("em-fixed" if preset == "voc" else "em-adapt")
        given = config_from_args(["--preset", preset, "--mode", "bbox-rect"])
        assert (given.mode, given.mode_reason) == ("bbox-rect", "--mode given")


def test_estep_options_follow_the_mode_unless_given():
    assert (config_from_args([]).estep_crf, config_from_args([]).estep_teacher) == (True, 0.0)
    boxes = config_from_args(["--mode", "bbox-em-fixed"])
    assert (boxes.estep_crf, boxes.estep_teacher) == (True, 0.9999)
    plain = config_from_args(["--mode", "bbox-em-fixed", "--no-estep-crf", "--estep-teacher", "0"])
    assert (plain.estep_crf, plain.estep_teacher) == (False, 0.0)
    voc = config_from_args(["--preset", "voc", "--mode", "bbox-em-fixed"])  # the paper's E-step
    assert (voc.estep_crf, voc.estep_teacher) == (False, 0.0)


def test_help_explains_every_flag():
    for action in build_parser()._actions:
        assert action.help, action.option_strings


def test_fixed_labels_are_cached_and_bbox_seg_uses_the_crf(synthetic, tmp_path, monkeypatch):
    """Bbox-Seg estimates its labels once (through the CRF hook; a stand-in here), caches them
    keyed by its parameters and reuses them."""
    calls = []

    def stand_in(params):
        def crf(unary, image):
            calls.append(unary.shape)
            return torch.softmax(-unary, 1)

        return crf

    monkeypatch.setattr(emseg.training_data, "make_crf", stand_in)
    common = {"--mode": "bbox-seg", "--iterations": 2, "--strong": 16}
    train_main(base_args(synthetic, tmp_path / "a", **common))
    caches = list((tmp_path / "labels").glob("bbox-seg-*"))
    assert len(caches) == 1 and (caches[0] / "COMPLETE").is_file()
    assert len(list((caches[0] / "SegmentationClassAug").glob("*.png"))) == 96
    assert len(calls) == 96 - 16  # the strong images keep their masks
    train_main(base_args(synthetic, tmp_path / "b", **common))
    assert len(calls) == 80  # reused
    train_main(base_args(synthetic, tmp_path / "c", **common, **{"--seg-box-prob": 0.7}))
    assert len(calls) == 160 and len(list((tmp_path / "labels").glob("bbox-seg-*"))) == 2


@pytest.mark.parametrize("mode", ["em-adapt", "em-fixed"])
def test_image_label_modes_read_no_box(synthetic, tmp_path, mode):
    """With every <bndbox> deleted from the XML files, an image-label run (its pretraining, then
    crops smaller than the images, so the crop rule decides which labels a crop keeps) trains the
    identical network."""
    import re
    import shutil

    stripped = tmp_path / "no-boxes"
    shutil.copytree(synthetic, stripped)
    for xml in (stripped / "Annotations").glob("*.xml"):
        text = xml.read_text()
        xml.write_text(re.sub(r"\s*<bndbox>.*?</bndbox>", "", text, flags=re.S))
    assert "<bndbox>" not in (stripped / "Annotations" / xml.name).read_text()
    states = []
    for root in (synthetic, stripped):
        out = tmp_path / f"run-{root.name}"
        train_main(
            base_args(
                root,
                out,
                **{
                    "--data-root": root,
                    "--mode": mode,
                    "--iterations": 6,
                    "--crop-size": 40,
                    "--input-scale": 1.0,
                    "--init": "pretrain",
                    "--pretrain-iterations": 4,
                    "--pretrain-cache": out / "cache",
                },
            )
        )
        states.append(load_checkpoint(out / "checkpoint.pth")["model"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
