"""What the crop label rule costs: how often a training crop's image labels name a class the crop
does not show, and how often they drop one it does, under each rule.

    python benchmarks/crop_labels.py ROOT [--split train_aug] [--crops 2000] [--preset cpu] [flags of emseg.train]

The crops are the training run's (``python -m emseg.train`` with the same flags: crop size, scale
range, input scale). Rules: ``keep-all``, what the image-label modes do (they read no box, so a crop
keeps every image label); ``boxes``, what the box modes do (a class keeps its label while one of its
boxes keeps half its area in view). A class counts as shown when at least one pixel of the crop's
mask has it (255 bands and padding are not counted). Prints, per rule, the share of kept foreground
labels whose class is not in view (false labels) and the share of foreground classes in view whose
label was dropped.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from emseg.config import config_from_args
from emseg.data import TrainTransform, VOCSegmentation
from emseg.estep import IGNORE_INDEX


def rule_errors(
    root: str, split: str, transform: TrainTransform, boxes: bool, crops: int, seed: int = 0
) -> tuple[float, float, int]:
    """(false-label share, dropped-label share, foreground labels kept) over ``crops`` crops."""
    ds = VOCSegmentation(root, split, transform=transform, boxes=boxes)
    gen = torch.Generator().manual_seed(seed)
    false = kept = dropped = shown = 0
    for k in range(crops):
        index = int(torch.randint(len(ds), (1,), generator=gen))
        torch.manual_seed(seed * 100003 + k)  # the transform draws from torch's global stream
        sample = ds[index]
        mask = sample["mask"].numpy()
        in_view = np.zeros(ds.num_classes, dtype=bool)
        present = np.unique(mask[(mask != IGNORE_INDEX) & (mask < ds.num_classes)])
        in_view[present] = True
        labels = sample["labels"].numpy().astype(bool)
        fg_kept, fg_view = labels[1:], in_view[1:]
        kept += int(fg_kept.sum())
        false += int((fg_kept & ~fg_view).sum())
        shown += int(fg_view.sum())
        dropped += int((fg_view & ~fg_kept).sum())
    return false / max(kept, 1), dropped / max(shown, 1), kept


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root")
    p.add_argument("--crops", type=int, default=2000)
    a, rest = p.parse_known_args()
    cfg = config_from_args(["--data-root", a.root, *rest])
    transform = TrainTransform(
        cfg.crop_size,
        scale_range=(cfg.scale_min * cfg.input_scale, cfg.scale_max * cfg.input_scale),
        flip=True,
        mean=cfg.mean,
        std=cfg.std,
        ignore_index=IGNORE_INDEX,
    )
    print(
        f"{a.root} ({cfg.train_split}): crop {cfg.crop_size}, scale {cfg.scale_min * cfg.input_scale:.3g}-"
        f"{cfg.scale_max * cfg.input_scale:.3g}, {a.crops} crops"
    )
    print("| rule | false labels (class not in view) | dropped labels (class in view) |")
    print("|---|---|---|")
    for name, boxes in (("keep-all (image-label modes)", False), ("boxes, half the area in view (box modes)", True)):
        false, dropped, kept = rule_errors(a.root, cfg.train_split, transform, boxes, a.crops)
        print(f"| {name} | {100 * false:.1f} % of {kept} | {100 * dropped:.1f} % |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
