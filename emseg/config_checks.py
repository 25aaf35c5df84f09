"""The training command line's checks: each takes the merged settings (an ``argparse.Namespace``)
and ends a bad value in ``parser.error`` (exit code 2) naming the flag and what it expects."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .data.io import MissingDataError
from .data.synthetic import SYNTHETIC_SPLITS
from .data.voc import find_list
from .estep import get_mode
from .models import TORCHVISION_VGG16, torchvision_vgg16_path

#: integer settings that must be at least 1
AT_LEAST_ONE = (
    "batch_size",
    "crop_size",
    "iterations",
    "lr_step",
    "log_interval",
    "checkpoint_interval",
    "eval_batch_size",
    "width",
)


def check_supervision(err, a: argparse.Namespace) -> None:
    if a.strong < 0:
        err("--strong must be >= 0")
    if a.strong and a.strong_list:
        err("--strong and --strong-list are exclusive: give the count or the list")
    if a.strong_list and not Path(a.strong_list).is_file():
        err(f"--strong-list {a.strong_list}: no such file")
    if not 0.0 < a.strong_share < 1.0:
        err("--strong-share must be in (0, 1): the rest of each batch is weak images")
    if (a.strong or a.strong_list) and get_mode(a.mode).fully_supervised:
        err("--strong/--strong-list make no sense with --mode full (every image uses its mask)")
    if not (0 < a.fg_portion < 1 and 0 < a.bg_portion < 1):
        err("--fg-portion and --bg-portion must be in (0, 1)")
    if not 0 < a.center_portion <= 1:
        err("--center-portion must be in (0, 1]")
    if not 0 < a.seg_box_prob < 1:
        err("--seg-box-prob must be in (0, 1)")


def check_numbers(err, a: argparse.Namespace) -> None:
    for name in AT_LEAST_ONE:
        if getattr(a, name) < 1:
            err(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("lr", "momentum", "weight_decay", "scale_min", "classifier_lr_mult"):
        if getattr(a, name) < 0 or (name in ("lr", "scale_min") and getattr(a, name) == 0):
            err(f"--{name.replace('_', '-')} must be positive")
    if a.scale_max < a.scale_min:
        err("--scale-max must be >= --scale-min")
    for name in ("stop_after", "eval_interval"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            err(f"--{name.replace('_', '-')} must be >= 1")
    if a.dropout is not None and not 0 <= a.dropout < 1:
        err("--dropout must be in [0, 1)")
    if a.workers < 0:
        err("--workers must be >= 0")
    if a.pretrain_iterations < 1 or a.synthetic_pretrain < 0 or a.synthetic_test < 0:
        err("--pretrain-iterations must be >= 1, --synthetic-pretrain and --synthetic-test >= 0")
    if not a.data_root and min(a.synthetic_train, a.synthetic_val, a.synthetic_size) < 1:
        err("--synthetic-train, --synthetic-val and --synthetic-size must be >= 1")


def check_start(err, a: argparse.Namespace) -> None:
    """``--pretrained`` / ``--init``: where the network starts (``a.pretrained`` resolved to a path)."""
    if a.pretrained and a.model != "deeplab-largefov":
        err("--pretrained loads VGG16 weights: use it with --model deeplab-largefov")
    if a.pretrained == TORCHVISION_VGG16:
        a.pretrained = str(torchvision_vgg16_path())
        if not Path(a.pretrained).is_file():
            err(
                f"--pretrained {TORCHVISION_VGG16}: torchvision's VGG16 ImageNet weights are expected at "
                f"{a.pretrained} (nothing is downloaded: copy vgg16-397923af.pth there from a machine where "
                "torchvision fetched it)"
            )
    if a.pretrained and not Path(a.pretrained).is_file():
        err(f"--pretrained {a.pretrained}: no such file (give a local torchvision VGG16 state_dict)")
    if a.init not in ("pretrain", "scratch") and not Path(a.init).is_file():
        err(f"--init {a.init}: expected 'pretrain', 'scratch' or a file written by python -m emseg.pretrain")
    no_pretrain_images = a.synthetic_pretrain < 1 and a.pretrain_split is None
    if not a.data_root and a.init == "pretrain" and not a.pretrained and no_pretrain_images:
        err("--synthetic-pretrain 0 leaves the pretraining no images: give --init scratch or --pretrain-split")


def check_paths(err, a: argparse.Namespace) -> None:
    if a.resume and not Path(a.resume).is_file():
        err(f"--resume {a.resume}: no such file")
    if a.data_root and not Path(a.data_root).is_dir():
        err(f"--data-root {a.data_root}: no such folder")
    if Path(a.output_dir).exists() and not Path(a.output_dir).is_dir():
        err(f"--output-dir {a.output_dir}: exists and is not a folder")


def has_list(root: str, split: str) -> bool:
    try:
        find_list(root, split)
    except MissingDataError:
        return False
    return True


def check_split(err, flag: str, split: str, data_root: str | None) -> None:
    if data_root is None:  # the synthetic set writes these lists
        if split not in SYNTHETIC_SPLITS and not Path(split).is_file():
            err(f"{flag} {split}: the synthetic set has the splits {', '.join(SYNTHETIC_SPLITS)} (or give a list file)")
        return
    try:
        find_list(data_root, split)
    except MissingDataError as e:
        err(f"{flag} {split}: {e.reason}")


def check_crop_memory(err, batch_size: int, crop_size: int) -> None:
    """A batch of crops (float32 image, int64 mask) must fit in this machine's memory."""
    need = batch_size * crop_size * crop_size * (3 * 4 + 8)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > total:
        err(
            f"--crop-size {crop_size} with --batch-size {batch_size} needs {need / 2**30:.0f} GiB per batch, "
            f"more than this machine's {total / 2**30:.0f} GiB of memory"
        )
