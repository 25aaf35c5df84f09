"""What a training run reads: the data root (the synthetic set written once), the strong subset,
the fixed labels of a fixed-label mode, and the endless strong/weak loader."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig
from .crf import make_crf
from .data import TrainTransform, VOCSegmentation, make_synthetic_voc, select_strong, strong_per_batch
from .data.fixed_labels import fixed_label_root
from .data.loader import build_train_loader
from .distributed import DistInfo
from .estep import IGNORE_INDEX, Mode

log = logging.getLogger("emseg")


def prepare_data(cfg: TrainConfig, info: DistInfo) -> Path:
    """The VOC-layout root: the given one, or the synthetic set (written by rank 0, once)."""
    if cfg.data_root:
        return Path(cfg.data_root)
    root = Path(cfg.data_root_resolved)
    if info.main:
        log.info(
            f"synthetic data set: {root} ({cfg.synthetic_train} train / {cfg.synthetic_val} val / "
            f"{cfg.synthetic_test} test / {cfg.synthetic_pretrain} pretrain, {cfg.synthetic_size}px)"
        )
        make_synthetic_voc(
            root,
            cfg.synthetic_train,
            cfg.synthetic_val,
            cfg.synthetic_size,
            seed=cfg.seed,
            progress=cfg.progress,
            num_pretrain=cfg.synthetic_pretrain,
            num_test=cfg.synthetic_test,
        )
    info.barrier()
    return root


def strong_ids_for(cfg: TrainConfig, mode: Mode, ids: list[str]) -> set[str]:
    """The images that train on their masks: all of them in a fully supervised mode, else the
    semi-supervised subset (none without --strong / --strong-list)."""
    if mode.fully_supervised:
        return set(ids)
    if cfg.strong or cfg.strong_list:
        chosen = select_strong(ids, count=cfg.strong or None, list_file=cfg.strong_list, seed=cfg.seed)
        if not chosen:
            raise ValueError("the strong subset is empty")
        return set(chosen)
    return set()


@dataclass
class TrainingData:
    dataset: VOCSegmentation
    sampler: object
    loader: torch.utils.data.DataLoader
    num_strong: int
    num_weak: int
    strong_per_batch: int  #: in the global batch


def training_data(cfg: TrainConfig, mode: Mode, root: Path, info: DistInfo, start_step: int) -> TrainingData:
    """The training set (fixed labels in place of masks for a fixed-label mode) and its endless
    strong/weak loader, positioned at global step ``start_step``."""
    ids = list(VOCSegmentation(str(root), cfg.train_split, transform=None, strong_ids=()).ids)
    strong = strong_ids_for(cfg, mode, ids)
    label_root = root
    if mode.fixed is not None:
        label_root = fixed_label_root(
            mode,
            root,
            cfg.train_split,
            strong,
            estep=cfg.estep,
            crf_params=cfg.crf,
            crf=make_crf(cfg.crf) if mode.needs_crf and info.main else None,
            cache_dir=cfg.label_cache,
            mean=cfg.mean,
            std=cfg.std,
            build=info.main,
            progress=cfg.progress,
        )
        info.barrier()
    transform = TrainTransform(
        cfg.crop_size,
        scale_range=(cfg.scale_min * cfg.input_scale, cfg.scale_max * cfg.input_scale),
        flip=True,
        mean=cfg.mean,
        std=cfg.std,
        ignore_index=IGNORE_INDEX,
    )
    # Fixed-label modes read every image's "mask" (estimates for weak images, ground truth for
    # strong ones), so all are "strong" to the dataset; the sampler still knows which is which.
    # the image-label modes read no box, anywhere: not even the crops' label rule sees one
    ds = VOCSegmentation(
        str(label_root),
        cfg.train_split,
        transform=transform,
        strong_ids=None if mode.fixed else strong,
        boxes=mode.needs == "boxes",
    )
    # the sampler's split from the strong ids: in the fixed-label modes the data set reads every
    # image's labels as a mask, so its own strong_indices hold every image
    strong_idx = [i for i, k in enumerate(ids) if k in strong]
    weak_idx = [i for i, k in enumerate(ids) if k not in strong]
    if cfg.batch_size > len(ids):
        raise ValueError(
            f"--batch-size {cfg.batch_size} is larger than the {len(ids)} training images of split {cfg.train_split!r}"
        )
    local = cfg.batch_size // info.world_size
    if mode.fully_supervised:
        per_batch = local
    elif strong_idx:  # at least one image of each kind in every batch
        per_batch = max(1, min(local - 1, strong_per_batch(cfg.strong_share, local)))
    else:
        per_batch = 0
    sampler, loader = build_train_loader(
        ds,
        strong_idx,
        weak_idx,
        local,
        per_batch,
        seed=cfg.seed,
        start_step=start_step,
        rank=info.rank,
        world_size=info.world_size,
        workers=cfg.workers,
    )
    return TrainingData(ds, sampler, loader, len(strong_idx), len(weak_idx), per_batch * info.world_size)
