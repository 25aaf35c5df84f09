"""Train a segmentation network with hard EM from weak (image labels, boxes) or strong labels.

    python -m emseg.train                        # offline demo: synthetic data, small model, CPU
    python -m emseg.train --data-root VOCdevkit/VOC2012 --mode em-fixed --strong 1464 \
        --pretrained vgg16-397923af.pth          # the paper's setting (VOC defaults)
    torchrun --nproc_per_node 4 -m emseg.train ...   # several GPUs / nodes

One iteration: a batch (strong images with masks, weak ones with image labels or boxes) -> the
network's scores at output stride 8 -> targets (masks for strong images; the E-step of the mode, on
the detached scores, for weak ones; see :mod:`emseg.estep`) -> softmax cross-entropy of the unbiased
scores -> SGD. Bbox-Rect and Bbox-Seg estimate their labels once before training and cache them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .estep import IGNORE, MODES, EStepConfig, get_mode, make_targets
from .models import MODELS, build_model
from .refine import CRFParams, add_crf_args, crf_params_from_args, make_crf

log = logging.getLogger("emseg")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Defaults that depend on the setting. ``voc`` is the paper's recipe (DeepLab's solver for the
#: weak nets: batch 20, crop 321, lr 1e-3 with x10 on the classifier, x0.1 every 2000 iterations,
#: 6000 iterations); ``synthetic`` is sized for a laptop CPU (about 10 minutes on 2 cores).
PRESETS: dict[str, dict] = {
    "voc": dict(
        model="deeplab-largefov", batch_size=20, crop_size=321, iterations=6000, lr=1e-3,
        lr_policy="step", lr_step=2000, scale_min=0.5, scale_max=1.5, mode="em-fixed",
        eval_batch_size=1, train_split="train_aug", val_split="val", log_interval=20,
        checkpoint_interval=1000, width=32, crf=CRFParams(),
    ),
    "synthetic": dict(
        model="small", batch_size=8, crop_size=64, iterations=1500, lr=2e-2,
        lr_policy="poly", lr_step=1000, scale_min=0.75, scale_max=1.25, mode="bbox-rect",
        eval_batch_size=8, train_split="train_aug", val_split="val", log_interval=20,
        checkpoint_interval=500, width=16,
        # DeepLab's VOC CRF scaled to 64-pixel images (VOC images are about 500 pixels wide)
        crf=CRFParams(bi_w=4.0, bi_xy_std=16.0, bi_rgb_std=5.0, pos_w=3.0, pos_xy_std=1.0, iterations=10),
    ),
}


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the checkpoint as a plain dict."""

    preset: str = "synthetic"
    data_root: str | None = None
    synthetic_train: int = 400
    synthetic_val: int = 100
    synthetic_size: int = 64
    train_split: str = "train_aug"
    val_split: str = "val"
    mode: str = "bbox-rect"
    strong: int = 0
    strong_list: str | None = None
    strong_share: float = 0.5
    model: str = "small"
    width: int = 16
    pretrained: str | None = None
    batch_size: int = 8
    crop_size: int = 64
    scale_min: float = 0.75
    scale_max: float = 1.25
    iterations: int = 1500
    lr: float = 2e-2
    classifier_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_policy: str = "poly"
    lr_step: int = 1000
    lr_gamma: float = 0.1
    poly_power: float = 0.9
    workers: int = 2
    seed: int = 0
    device: str | None = None
    amp: bool | None = None
    output_dir: str = "runs/demo"
    resume: str | None = None
    log_interval: int = 20
    checkpoint_interval: int = 500
    eval_batch_size: int = 8
    eval_crf: bool = False
    num_pictures: int = 8
    progress: bool = True
    estep: EStepConfig = field(default_factory=EStepConfig)
    crf: CRFParams = field(default_factory=CRFParams)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    label_cache: str = "data/label-cache"
    stop_after: int | None = None
    dropout: float | None = None
    data_root_resolved: str = ""  #: filled in by prepare_data


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m emseg.train",
        description="Weakly-/semi-supervised semantic segmentation with hard EM (Papandreou et al., "
        "ICCV 2015). With no arguments: builds a synthetic VOC-layout data set, trains a small "
        "network from boxes (Bbox-Rect) on the CPU, evaluates it and writes pictures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data-root", default=None, help="PASCAL VOC 2012 (+SBD) root in VOC layout; omitted: the synthetic set")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="defaults for the setting: 'voc' (the paper's recipe) when --data-root is given, else 'synthetic'")
    g.add_argument("--synthetic-dir", default="data/synthetic-voc", help="where the synthetic set is written (reused when complete)")
    g.add_argument("--synthetic-train", type=int, default=400, help="synthetic training images")
    g.add_argument("--synthetic-val", type=int, default=100, help="synthetic validation images")
    g.add_argument("--synthetic-size", type=int, default=64, help="side of the synthetic images in pixels")
    g.add_argument("--train-split", default=None, help="training image list (name under the root or a file)")
    g.add_argument("--val-split", default=None, help="validation image list")
    g.add_argument("--label-cache", default="data/label-cache", help="where Bbox-Rect / Bbox-Seg labels are cached (keyed by data, subset and parameters)")
    g.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per training process")

    g = p.add_argument_group("supervision")
    g.add_argument("--mode", choices=list(MODES), default=None,
                   help="; ".join(f"{m.name}: {m.summary}" for m in MODES.values()) + " (default: bbox-rect for synthetic, em-fixed for voc)")
    g.add_argument("--strong", type=int, default=0, help="semi-supervised: number of images whose masks are used (random, by --seed)")
    g.add_argument("--strong-list", default=None, help="semi-supervised: file listing the ids of the strong images (instead of --strong)")
    g.add_argument("--strong-share", type=float, default=0.5, help="fraction of each batch drawn from the strong images in a semi-supervised run")
    g.add_argument("--fg-bias", type=float, default=5.0, help="EM-Fixed / Bbox-EM-Fixed foreground bias b_fg")
    g.add_argument("--bg-bias", type=float, default=3.0, help="EM-Fixed / Bbox-EM-Fixed background bias b_bg")
    g.add_argument("--suppress-absent", action="store_true", help="EM-Fixed: absent classes cannot win the E-step's argmax")
    g.add_argument("--fg-portion", type=float, default=0.2, help="EM-Adapt: minimum share of pixels for each present foreground class")
    g.add_argument("--bg-portion", type=float, default=0.4, help="EM-Adapt: minimum share of pixels for background")
    g.add_argument("--center-portion", type=float, default=0.2, help="Bbox-Seg: share of each box fixed as foreground around its centre")
    g.add_argument("--seg-box-prob", type=float, default=0.6, help="Bbox-Seg: prior probability of the box's class inside the box (background gets the rest)")

    g = p.add_argument_group("model and optimisation")
    g.add_argument("--model", choices=MODELS, default=None, help="network (default: small for synthetic, deeplab-largefov for voc)")
    g.add_argument("--width", type=int, default=None, help="channel width of the small model")
    g.add_argument("--dropout", type=float, default=None, help="dropout rate of the head (default: 0.5 for deeplab-largefov, 0.1 for small)")
    g.add_argument("--pretrained", default=None, help="local ImageNet VGG16 state_dict in torchvision's layout (deeplab-largefov)")
    g.add_argument("--batch-size", type=int, default=None, help="global batch size (split over the processes)")
    g.add_argument("--crop-size", type=int, default=None, help="side of the random training crop")
    g.add_argument("--scale-min", type=float, default=None, help="smallest random rescaling factor")
    g.add_argument("--scale-max", type=float, default=None, help="largest random rescaling factor")
    g.add_argument("--iterations", type=int, default=None, help="SGD iterations")
    g.add_argument("--lr", type=float, default=None, help="base learning rate (backbone weights; biases x2, classifier x10/x20)")
    g.add_argument("--classifier-lr-mult", type=float, default=10.0, help="learning-rate multiplier of the final classifier")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (weights only, not biases)")
    g.add_argument("--lr-policy", choices=["step", "poly"], default=None, help="step: x gamma every --lr-step; poly: (1 - it/max)^power")
    g.add_argument("--lr-step", type=int, default=None, help="step policy: iterations between decays")
    g.add_argument("--lr-gamma", type=float, default=0.1, help="step policy: decay factor")
    g.add_argument("--poly-power", type=float, default=0.9, help="poly policy: power")
    g.add_argument("--seed", type=int, default=0, help="seed of the model init, the sampler and the strong subset")
    g.add_argument("--device", default=None, help="cpu or cuda; default: cuda when available (LOCAL_RANK picks the GPU under torchrun)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (default: on for CUDA)")

    g = p.add_argument_group("output")
    g.add_argument("--output-dir", default="runs/demo", help="checkpoints, log, metrics.csv, pictures")
    g.add_argument("--resume", default=None, help="checkpoint to resume from (continues exactly where it stopped)")
    g.add_argument("--stop-after", type=int, default=None, help="leave after this many iterations of this invocation, with a checkpoint (time-limited jobs; continue with --resume)")
    g.add_argument("--log-interval", type=int, default=None, help="iterations between log lines / CSV rows")
    g.add_argument("--checkpoint-interval", type=int, default=None, help="iterations between checkpoints")
    g.add_argument("--eval-batch-size", type=int, default=None, help="validation batch size (1 for images of varying size)")
    g.add_argument("--eval-crf", action="store_true", help="also evaluate with dense-CRF refinement at the end")
    g.add_argument("--num-pictures", type=int, default=8, help="validation images drawn as prediction pictures at the end (0: none)")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    add_crf_args(p, "the preset (synthetic: scaled to 64-pixel images; voc: DeepLab-LargeFOV's)")
    return p


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse and validate the command line; bad values end in ``parser.error`` (exit code 2)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    preset = a.preset or ("voc" if a.data_root else "synthetic")
    for key, value in PRESETS[preset].items():
        if key != "crf" and getattr(a, key, None) is None:
            setattr(a, key, value)
    err = parser.error
    if a.strong < 0:
        err("--strong must be >= 0")
    if a.strong and a.strong_list:
        err("--strong and --strong-list are exclusive: give the count or the list")
    if a.strong_list and not Path(a.strong_list).is_file():
        err(f"--strong-list {a.strong_list}: no such file")
    if not 0.0 < a.strong_share < 1.0:
        err("--strong-share must be in (0, 1): the rest of each batch is weak images")
    semi = bool(a.strong or a.strong_list)
    if semi and a.mode == "full":
        err("--strong/--strong-list make no sense with --mode full (every image uses its mask)")
    for name in ("batch_size", "crop_size", "iterations", "lr_step", "log_interval", "checkpoint_interval", "eval_batch_size", "width"):
        if getattr(a, name) < 1:
            err(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("lr", "momentum", "weight_decay", "scale_min", "classifier_lr_mult"):
        if getattr(a, name) < 0 or (name in ("lr", "scale_min") and getattr(a, name) == 0):
            err(f"--{name.replace('_', '-')} must be positive")
    if a.scale_max < a.scale_min:
        err("--scale-max must be >= --scale-min")
    if a.stop_after is not None and a.stop_after < 1:
        err("--stop-after must be >= 1")
    if a.dropout is not None and not 0 <= a.dropout < 1:
        err("--dropout must be in [0, 1)")
    if a.workers < 0:
        err("--workers must be >= 0")
    if not (0 < a.fg_portion < 1 and 0 < a.bg_portion < 1):
        err("--fg-portion and --bg-portion must be in (0, 1)")
    if not 0 < a.center_portion <= 1:
        err("--center-portion must be in (0, 1]")
    if not 0 < a.seg_box_prob < 1:
        err("--seg-box-prob must be in (0, 1)")
    if a.pretrained and a.model != "deeplab-largefov":
        err("--pretrained loads VGG16 weights: use it with --model deeplab-largefov")
    if a.pretrained and not Path(a.pretrained).is_file():
        err(f"--pretrained {a.pretrained}: no such file (give a local torchvision VGG16 state_dict)")
    if a.resume and not Path(a.resume).is_file():
        err(f"--resume {a.resume}: no such file")
    if a.data_root and not Path(a.data_root).is_dir():
        err(f"--data-root {a.data_root}: no such folder")
    if not a.data_root and min(a.synthetic_train, a.synthetic_val, a.synthetic_size) < 1:
        err("--synthetic-train, --synthetic-val and --synthetic-size must be >= 1")
    if a.device and a.device.startswith("cuda") and not torch.cuda.is_available():
        err(f"--device {a.device}: CUDA is not available here")
    return TrainConfig(
        preset=preset, data_root=a.data_root, synthetic_train=a.synthetic_train,
        synthetic_val=a.synthetic_val, synthetic_size=a.synthetic_size, train_split=a.train_split,
        val_split=a.val_split, mode=a.mode, strong=a.strong, strong_list=a.strong_list,
        strong_share=a.strong_share, model=a.model, width=a.width, pretrained=a.pretrained,
        batch_size=a.batch_size, crop_size=a.crop_size, scale_min=a.scale_min, scale_max=a.scale_max,
        iterations=a.iterations, lr=a.lr, classifier_lr_mult=a.classifier_lr_mult,
        momentum=a.momentum, weight_decay=a.weight_decay, lr_policy=a.lr_policy, lr_step=a.lr_step,
        lr_gamma=a.lr_gamma, poly_power=a.poly_power, workers=a.workers, seed=a.seed,
        device=a.device, amp=a.amp, output_dir=a.output_dir, resume=a.resume,
        log_interval=a.log_interval, checkpoint_interval=a.checkpoint_interval,
        eval_batch_size=a.eval_batch_size, eval_crf=a.eval_crf, num_pictures=a.num_pictures,
        progress=not a.no_progress, label_cache=a.label_cache, dropout=a.dropout,
        stop_after=a.stop_after,
        estep=EStepConfig(
            fg_bias=a.fg_bias, bg_bias=a.bg_bias, suppress_absent=a.suppress_absent,
            fg_portion=a.fg_portion, bg_portion=a.bg_portion, center_portion=a.center_portion,
            seg_box_prob=a.seg_box_prob,
        ),
        crf=crf_params_from_args(a, PRESETS[preset]["crf"]),
        data_root_resolved=str(Path(a.synthetic_dir)) if not a.data_root else str(a.data_root),
    )


def config_to_dict(cfg: TrainConfig) -> dict:
    """Plain types only (weights_only checkpoints)."""
    d = asdict(cfg)
    d["mean"], d["std"] = list(cfg.mean), list(cfg.std)
    return d


def config_from_dict(d: dict) -> TrainConfig:
    d = dict(d)
    d["estep"] = EStepConfig(**d["estep"])
    d["crf"] = CRFParams(**d["crf"])
    d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in known})


# ---------------------------------------------------------------------------------------------
# Distributed


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """DDP from the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK); nccl on GPU, gloo on CPU."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return info


# ---------------------------------------------------------------------------------------------
# Data


def prepare_data(cfg: TrainConfig, info: DistInfo) -> Path:
    """The VOC-layout root: the given one, or the synthetic set (written by rank 0, once)."""
    if cfg.data_root:
        return Path(cfg.data_root)
    from .data import make_synthetic_voc

    root = Path(cfg.data_root_resolved)
    if info.main:
        log.info(f"synthetic data set: {root} ({cfg.synthetic_train} train / {cfg.synthetic_val} val, {cfg.synthetic_size}px)")
        make_synthetic_voc(root, cfg.synthetic_train, cfg.synthetic_val, cfg.synthetic_size, seed=cfg.seed, progress=cfg.progress)
    if info.world_size > 1:
        dist.barrier()
    return root


def strong_ids_for(cfg: TrainConfig, ids: list[str]) -> set[str]:
    from .data import select_strong

    mode = get_mode(cfg.mode)
    if mode.name == "full":
        return set(ids)
    if cfg.strong or cfg.strong_list:
        chosen = select_strong(ids, count=cfg.strong or None, list_file=cfg.strong_list, seed=cfg.seed)
        if not chosen:
            raise ValueError("the strong subset is empty")
        return set(chosen)
    return set()


def fixed_labels_key(cfg: TrainConfig, root: Path, ids: list[str], strong: set[str]) -> str:
    """Cache key of Bbox-Rect / Bbox-Seg labels: everything that changes them."""
    mode = get_mode(cfg.mode)

    def digest(xs) -> str:
        return hashlib.sha1("\n".join(xs).encode()).hexdigest()

    payload = {"mode": mode.name, "root": str(root.resolve()), "ids": digest(ids), "strong": digest(sorted(strong))}
    if mode.name == "bbox-seg":
        payload["estep"] = {k: v for k, v in asdict(cfg.estep).items() if k in ("center_portion", "seg_box_prob")}
        payload["crf"] = asdict(cfg.crf)
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


_MASK_DIRS = {"SegmentationClass", "SegmentationClassAug", "SegmentationObject", "cls", "inst"}


def build_fixed_label_root(cfg: TrainConfig, root: Path, split: str, strong: set[str], info: DistInfo) -> Path:
    """Estimate the fixed labels of a Bbox-Rect / Bbox-Seg run once and cache them on disk.

    The cache is a VOC-layout folder ``<label_cache>/<mode>-<key>`` whose
    ``SegmentationClassAug/<id>.png`` holds the estimated labels (at image resolution, before any
    augmentation), or the true mask for the images of the strong subset, and whose other entries link to the original root, so the ordinary loader and
    transforms read the estimates as masks. Labels are built by rank 0; others wait.
    """
    from .data import EvalTransform, VOCSegmentation
    from .data.io import write_mask_png

    mode = get_mode(cfg.mode)
    src = VOCSegmentation(str(root), split, transform=None)
    ids = list(src.ids)
    key = fixed_labels_key(cfg, root, ids, strong)
    out = Path(cfg.label_cache) / f"{mode.name}-{key}"
    done = out / "COMPLETE"
    if info.main and not done.exists():
        log.info(f"{mode.name}: estimating labels of {len(ids)} images before training -> {out}")
        (out / "SegmentationClassAug").mkdir(parents=True, exist_ok=True)
        for entry in root.iterdir():
            if entry.name in _MASK_DIRS or entry.name.startswith("."):
                continue
            link = out / entry.name
            if not link.exists():
                link.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        ds = VOCSegmentation(str(root), split, transform=EvalTransform(cfg.mean, cfg.std), strong_ids=strong)
        crf = make_crf(cfg.crf) if mode.needs_crf else None
        from tqdm import tqdm

        for i in tqdm(range(len(ds)), desc=mode.name, disable=not cfg.progress, dynamic_ncols=True):
            s = ds[i]
            if s["id"] in strong:
                labels = s["mask"]
            else:
                labels = mode.fixed(s["boxes"], s["image_uint8"], ds.num_classes, cfg.estep, crf)
            write_mask_png(out / "SegmentationClassAug" / f"{s['id']}.png", labels.numpy().astype(np.uint8))
        done.write_text(json.dumps({"mode": mode.name, "images": len(ids)}))
    if info.world_size > 1:
        dist.barrier()
    return out


class SeededSamples(torch.utils.data.Dataset):
    """Makes each sample's random augmentation a pure function of its key ``(index, seed)``.

    The transforms draw from torch's global generator; seeding it per sample (inside
    ``fork_rng``, so the caller's stream is untouched) makes the augmentations independent of
    worker processes, prefetching and restarts: a resumed run and a run split over DDP processes
    see exactly the crops an uninterrupted single-process run sees.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class SeededBatches:
    """Wraps the strong/weak batch sampler: numbers the steps from a start position and gives each
    sample a seed from ``(run seed, step, slot in the global batch)``."""

    def __init__(self, sampler, seed: int, start_step: int, rank: int):
        self.sampler, self.seed, self.start, self.rank = sampler, seed, start_step, rank

    def __iter__(self):
        sp, wp = self.sampler.strong_per_batch, self.sampler.weak_per_batch
        gs = sp * self.sampler.num_replicas
        for step, batch in enumerate(self.sampler, start=self.start):
            slots = [self.rank * sp + j for j in range(sp)] + [gs + self.rank * wp + j for j in range(wp)]
            yield [(i, _sample_seed(self.seed, step, slot)) for i, slot in zip(batch, slots)]


def _sample_seed(seed: int, step: int, slot: int) -> int:
    return int(np.random.SeedSequence([seed, step, slot]).generate_state(1, dtype=np.uint64)[0] >> 1)


def build_train_loader(cfg: TrainConfig, root: Path, info: DistInfo, start_step: int):
    """The training set and an endless loader driven by the strong/weak batch sampler, positioned
    at global step ``start_step``."""
    from .data import StrongWeakBatchSampler, TrainTransform, VOCSegmentation, collate

    probe = VOCSegmentation(str(root), cfg.train_split, transform=None, strong_ids=())
    ids = list(probe.ids)
    strong = strong_ids_for(cfg, ids)
    mode = get_mode(cfg.mode)
    label_root = root
    if mode.fixed is not None:
        label_root = build_fixed_label_root(cfg, root, cfg.train_split, strong, info)
    transform = TrainTransform(
        cfg.crop_size, scale_range=(cfg.scale_min, cfg.scale_max), flip=True, mean=cfg.mean, std=cfg.std, ignore_index=IGNORE
    )
    # Fixed-label modes read every image's "mask" (estimates for weak images, ground truth for
    # strong ones), so all are "strong" to the dataset; the sampler still knows which is which.
    ds = VOCSegmentation(str(label_root), cfg.train_split, transform=transform, strong_ids=None if mode.fixed else strong)
    strong_idx = [i for i, k in enumerate(ids) if k in strong]
    weak_idx = [i for i, k in enumerate(ids) if k not in strong]
    local = cfg.batch_size // info.world_size
    if mode.name == "full":
        per_batch = local
    elif strong_idx:
        per_batch = max(1, min(local - 1, round(cfg.strong_share * local)))
    else:
        per_batch = 0
    sampler = StrongWeakBatchSampler(
        strong_idx, weak_idx, local, per_batch, seed=cfg.seed, drop_last=True,
        num_replicas=info.world_size, rank=info.rank, infinite=True,
    )
    sampler.set_position(0, start_step)
    loader = torch.utils.data.DataLoader(
        SeededSamples(ds), batch_sampler=SeededBatches(sampler, cfg.seed, start_step, info.rank),
        num_workers=cfg.workers, collate_fn=collate, pin_memory=torch.cuda.is_available(),
        # its own generator: creating the iterator must not draw from the global stream (resume)
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    return ds, sampler, loader, len(strong_idx), len(weak_idx), per_batch * info.world_size


# ---------------------------------------------------------------------------------------------
# Optimisation


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """DeepLab's Caffe multipliers: weights x1 with decay, biases x2 without; the classifier x10 / x20."""
    groups = {k: [] for k in ("w", "b", "cw", "cb")}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = name.startswith("classifier.")
        groups[("c" if head else "") + ("b" if name.endswith("bias") else "w")].append(p)
    m = cfg.classifier_lr_mult
    spec = {"w": (1.0, cfg.weight_decay), "b": (2.0, 0.0), "cw": (m, cfg.weight_decay), "cb": (2.0 * m, 0.0)}
    return [
        {"params": ps, "lr": cfg.lr * spec[k][0], "weight_decay": spec[k][1], "lr_mult": spec[k][0], "name": k}
        for k, ps in groups.items() if ps
    ]


def lr_factor(cfg: TrainConfig, it: int) -> float:
    if cfg.lr_policy == "step":
        return cfg.lr_gamma ** (it // cfg.lr_step)
    return (1.0 - min(it, cfg.iterations) / cfg.iterations) ** cfg.poly_power


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def segmentation_loss(scores: torch.Tensor, target: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Cross-entropy averaged over the labelled pixels of the *global* batch.

    DDP averages gradients over processes; dividing each process's sum by the global pixel count
    (times the world size) makes that average the gradient of the global mean, so a run on k
    processes matches one process on the same global batch.
    """
    total = F.cross_entropy(scores.float(), target, ignore_index=IGNORE, reduction="sum")
    count = (target != IGNORE).sum().to(torch.float32)
    if info.world_size > 1:
        count = count.clone()
        dist.all_reduce(count)
    return total * info.world_size / count.clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# Checkpoints and outputs


def load_model_from_checkpoint(path: str, device: torch.device) -> tuple[nn.Module, dict]:
    """The network of a training checkpoint (eval mode) and the run's arguments."""
    ckpt = load_checkpoint(path)
    args = ckpt["args"]
    model = build_model(args["model"], ckpt["num_classes"], width=args["width"], dropout=args.get("dropout"))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), args


class MetricsLog:
    """metrics.csv (one row per log interval and per evaluation), and TensorBoard when installed."""

    COLUMNS = ["iteration", "loss", "lr", "seconds", "miou", "miou_crf"]

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.path = out / "metrics.csv"
        self.tb = None
        if enabled:
            new = not self.path.exists()
            self.file = open(self.path, "a", newline="")
            self.writer = csv.DictWriter(self.file, self.COLUMNS)
            if new:
                self.writer.writeheader()
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # tensorboard is optional
                self.tb = None

    def write(self, **row) -> None:
        if not self.enabled:
            return
        self.writer.writerow({k: row.get(k, "") for k in self.COLUMNS})
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "iteration" and v not in ("", None):
                    self.tb.add_scalar(k, v, row["iteration"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def setup_logging(out: Path, info: DistInfo) -> None:
    log.setLevel(logging.INFO if info.main else logging.WARNING)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(fmt)
    log.addHandler(h)
    if info.main:
        fh = logging.FileHandler(out / "train.log")
        fh.setFormatter(fmt)
        log.addHandler(fh)


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg: TrainConfig) -> dict:
    """Run training (and the final evaluation); returns a summary dict (rank 0 has the metrics)."""
    from tqdm import tqdm

    from .data import EvalTransform, VOCSegmentation, collate
    from .evaluate import evaluate

    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = init_distributed(device.type)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes ({info.world_size})")
    if device.type == "cuda" and info.world_size > 1:
        device = torch.device("cuda", info.local_rank)
    use_amp = device.type == "cuda" if cfg.amp is None else (cfg.amp and device.type == "cuda")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out, info)
    seed_everything(cfg.seed)

    mode = get_mode(cfg.mode)
    root = prepare_data(cfg, info)
    cfg.data_root_resolved = str(root)

    ckpt = load_checkpoint(cfg.resume) if cfg.resume else None
    start = ckpt["iteration"] if ckpt else 0
    ds, sampler, loader, n_strong, n_weak, per_batch = build_train_loader(cfg, root, info, start)
    if ckpt:
        saved = ckpt["sampler"]
        if (saved["batch_size"], saved["strong_per_batch"]) != (sampler.batch_size, sampler.strong_per_batch):
            raise ValueError(f"--resume: the checkpoint's batches ({saved}) differ from this run's; "
                             "resume with the same --batch-size, --strong-share and number of processes")
    num_classes = ds.num_classes
    model = build_model(cfg.model, num_classes, pretrained=cfg.pretrained, width=cfg.width, dropout=cfg.dropout).to(device)
    stride = model.output_stride
    optimizer = torch.optim.SGD(param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(cfg, it))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"][info.rank] if info.rank < len(ckpt["rng"]) else ckpt["rng"][0])
        log.info(f"resumed from {cfg.resume} at iteration {start}")
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if info.world_size > 1 else model

    log.info(
        f"mode {mode.name} ({mode.summary}); {n_strong} strong + {n_weak} weak images, "
        f"{per_batch}/{cfg.batch_size} strong per batch; model {cfg.model}; {cfg.iterations} iterations "
        f"on {device}{' x' + str(info.world_size) if info.world_size > 1 else ''}{', amp' if use_amp else ''}"
    )
    metrics = MetricsLog(out, info.main)
    ckpt_path = out / "checkpoint.pth"

    def sampler_state(it: int) -> dict:
        # the position after ``it`` consumed steps (the loader prefetches, so not sampler.batch)
        epoch, batch = divmod(it, len(sampler))
        return dict(sampler.state_dict(), epoch=epoch, batch=batch)

    def checkpoint(it: int) -> None:
        rngs = [rng_state()]
        if info.world_size > 1:
            gathered = [None] * info.world_size
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if info.main:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "sampler": sampler_state(it),
                    "rng": rngs,
                    "iteration": it,
                    "num_classes": num_classes,
                    "class_names": list(ds.class_names),
                    "args": config_to_dict(cfg),
                },
                ckpt_path,
            )

    net.train()
    t0 = time.time()
    # The running loss stays on the device (float64, as a Python float would sum it): reading it
    # back every step would synchronise the GPU each iteration; it is read at log time only.
    running, n_run = torch.zeros((), dtype=torch.float64, device=device), 0
    data_iter = iter(loader)
    bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {mode.name}", disable=not (cfg.progress and info.main), dynamic_ncols=True)
    end = cfg.iterations if cfg.stop_after is None else min(cfg.iterations, start + cfg.stop_after)
    for it in range(start, end):
        batch = next(data_iter)
        image = batch["image"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            scores = net(image)
        target = make_targets(mode, scores.detach().float(), batch, cfg.estep, stride)
        loss = segmentation_loss(scores, target, info)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        running += loss.detach().double() / info.world_size
        n_run += 1
        bar.update(1)
        done = it + 1
        if done % cfg.log_interval == 0 or done == cfg.iterations:
            lr = optimizer.param_groups[0]["lr"]
            mean_loss = float(running) / n_run
            bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}")
            if not (cfg.progress and info.main):
                log.info(f"it {done}/{cfg.iterations}  loss {mean_loss:.4f}  lr {lr:.2e}")
            metrics.write(iteration=done, loss=mean_loss, lr=lr, seconds=round(time.time() - t0, 2))
            running.zero_()
            n_run = 0
        if done % cfg.checkpoint_interval == 0 or done == end:
            checkpoint(done)
    bar.close()
    train_seconds = time.time() - t0
    log.info(f"trained {end - start} iterations in {train_seconds:.0f} s; checkpoint: {ckpt_path}")
    if end < cfg.iterations:
        log.info(f"stopped at iteration {end} of {cfg.iterations} (--stop-after); continue with --resume {ckpt_path}")
        if info.world_size > 1:
            dist.destroy_process_group()
        return {"checkpoint": str(ckpt_path), "iteration": end, "train_seconds": train_seconds}

    # Evaluation on the validation split, every world_size-th image per process.
    val = VOCSegmentation(str(root), cfg.val_split, transform=EvalTransform(cfg.mean, cfg.std))
    part = torch.utils.data.Subset(val, range(info.rank, len(val), info.world_size))
    vloader = torch.utils.data.DataLoader(part, batch_size=cfg.eval_batch_size, num_workers=cfg.workers, collate_fn=collate)
    crf = make_crf(cfg.crf) if cfg.eval_crf else None
    cm, cm_crf = evaluate(model, vloader, num_classes, device, crf, amp=use_amp, progress=cfg.progress and info.main)
    summary = {"checkpoint": str(ckpt_path), "miou": cm.miou(), "iou": cm.iou().tolist(), "train_seconds": train_seconds}
    metrics.write(iteration=cfg.iterations, miou=cm.miou(), miou_crf=cm_crf.miou() if cm_crf else "")
    metrics.close()
    if info.main:
        log.info(f"\n{cfg.val_split} ({len(val)} images), mode {mode.name}:\n" + cm.table(list(val.class_names)))
        if cm_crf is not None:
            summary["miou_crf"] = cm_crf.miou()
            log.info("\nwith dense CRF:\n" + cm_crf.table(list(val.class_names)))
        if cfg.num_pictures > 0:
            from .predict import draw_validation_pictures

            pics = out / "pictures"
            draw_validation_pictures(model, val, range(min(cfg.num_pictures, len(val))), pics, device, crf)
            summary["pictures"] = str(pics)
            log.info(f"pictures (image | ground truth | prediction): {pics}")
        log.info(f"checkpoint: {ckpt_path}")
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(argv: list[str] | None = None) -> dict:
    cfg = config_from_args(argv)
    return train(cfg)


if __name__ == "__main__":
    main()
