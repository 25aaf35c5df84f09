"""The trainer behaves like the references users know: VOC without SBD, validation during
training with the best checkpoint kept, curves, log lines off a terminal, torchvision's weights."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import small_args

import emseg.models as models
from emseg.checkpoint import load_checkpoint
from emseg.config import config_from_args
from emseg.train import main as train_main

pytestmark = pytest.mark.slow  # training runs: left out of the fast subset (-m "not slow")


@pytest.fixture(scope="module")
def synthetic(small_synthetic):
    return small_synthetic


def test_voc_without_sbd_trains_on_train(synthetic, tmp_path, emseg_log):
    root = tmp_path / "VOC2012"
    shutil.copytree(synthetic, root)
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").unlink()
    cfg = config_from_args(["--data-root", str(root)])
    assert cfg.train_split == "train"
    assert emseg_log.messages == [f"emseg: {root} has no train_aug list (SBD's augmented set): training on 'train'"]
    assert config_from_args(["--data-root", str(synthetic)]).train_split == "train_aug"  # SBD there: no change
    with pytest.raises(SystemExit):  # an explicit --train-split is never replaced
        config_from_args(["--data-root", str(root), "--train-split", "train_aug"])


def test_eval_interval_keeps_the_best_checkpoint(synthetic, tmp_path):
    pytest.importorskip("matplotlib")  # a test extra: curves.png
    out = tmp_path / "eval"
    summary = train_main(small_args(synthetic, out, **{"--mode": "full", "--eval-interval": 2, "--iterations": 6}))
    with open(out / "metrics.csv", newline="") as f:
        evals = [(int(r["iteration"]), float(r["miou"])) for r in csv.DictReader(f) if r["miou"]]
    assert [it for it, _ in evals] == [0, 2, 4, 6]  # row 0: the start, before the first step
    assert summary["start_miou"] == pytest.approx(evals[0][1])
    best_it, best = max(evals[1:], key=lambda e: (e[1], -e[0]))
    assert summary["best_miou"] == pytest.approx(best)
    assert load_checkpoint(out / "best.pth")["iteration"] == best_it
    assert json.loads((out / "summary.json").read_text())["best_checkpoint"] == str(out / "best.pth")
    assert (out / "curves.png").stat().st_size > 1000
    # validating does not draw from the training's random stream: the same weights as without it
    plain = tmp_path / "plain"
    train_main(small_args(synthetic, plain, **{"--mode": "full", "--iterations": 6}))
    a, b = load_checkpoint(out / "checkpoint.pth")["model"], load_checkpoint(plain / "checkpoint.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_progress_off_a_terminal_is_log_lines(synthetic, tmp_path):
    argv = small_args(synthetic, tmp_path / "run", **{"--mode": "full"})
    argv.remove("--no-progress")
    proc = subprocess.run(
        [sys.executable, "-m", "emseg.train", *argv], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr and "%|" not in proc.stderr  # no tqdm bar on a pipe
    assert [line.split("  ")[0].split()[-2:] for line in proc.stdout.splitlines() if "  loss " in line] == [
        ["it", f"{k}/4"] for k in (1, 2, 3, 4)
    ]


def test_pretrained_torchvision_from_the_hub_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert models.torchvision_vgg16_path() == expected
    argv = ["--model", "deeplab-largefov", "--pretrained", "torchvision"]
    with pytest.raises(SystemExit):
        config_from_args(argv)
    assert f"torchvision's VGG16 ImageNet weights are expected at {expected}" in capsys.readouterr().err
    expected.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1)}, expected)  # a stand-in at the expected place
    cfg = config_from_args(argv)
    assert cfg.pretrained == str(expected)
    loaded = []
    monkeypatch.setattr(models, "load_vgg16_weights", lambda model, path: loaded.append(path))
    models.build_model(cfg.model, 3, pretrained=cfg.pretrained)
    assert loaded == [str(expected)]
