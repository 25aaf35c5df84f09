"""Classification pretraining from image-level labels: the start every training mode shares.

    python -m emseg.pretrain                     # the start python -m emseg.train uses
    python -m emseg.pretrain --data-root VOC2012 --pretrain-split train_aug

It takes ``emseg.train``'s flags and makes the start that training run would make (the
``--pretrain-*`` flags, the model and its crop size, the seed, the data).

The paper starts every network from ImageNet-trained VGG16. Offline there is no ImageNet, so
emseg makes that start itself: the segmentation network, with its scores pooled over the image by
log-sum-exp (LSE, Pinheiro & Collobert, CVPR 2015), learns the image-level labels of a split with
a multi-label logistic loss. Only images and the class names of their annotations are read
(:class:`emseg.data.image_labels.ImageLabelSet`), never a mask or a box. On the synthetic set a
separate ``pretrain`` split plays ImageNet's part; on a VOC-layout set the training images do.

The result is cached under a key of the data (the image files' bytes and labels) and every setting,
so ``emseg.train`` pays for it once; a run prints what it cost. Deterministic for a given seed,
device and thread count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import cached_entry, check_state_fits, load_checkpoint
from .cli import run as run_cli
from .config import TrainConfig, config_from_args
from .data.image_labels import ImageLabelSet
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .distributed import DistInfo
from .models import build_model
from .outputs import check_work_folders
from .training_data import prepare_data

log = logging.getLogger("emseg")

#: Changes whenever the procedure changes, so an old cache entry is not mistaken for a new one.
_PRETRAIN_VERSION = 1


@dataclass(frozen=True)
class PretrainConfig:
    """Every setting a pretrained start depends on (all of them enter the cache key)."""

    model: str = "small"
    width: int = 16
    context: tuple[int, int] = (0, 1)
    size: int = 64  #: images are scaled so their longer side is this, padded to a square
    iterations: int = 1500
    batch_size: int = 16
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lse_r: float = 4.0  #: LSE sharpness: 0 would be the mean of the scores, infinity their maximum
    scale_min: float = 0.7  #: random down-scaling of the image on its canvas (never a crop)
    seed: int = 0


def cache_key(cfg: PretrainConfig, data_digest: str, class_names: tuple[str, ...]) -> str:
    blob = json.dumps(
        {"version": _PRETRAIN_VERSION, "config": asdict(cfg), "data": data_digest, "classes": list(class_names)},
        sort_keys=True,
    )
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def lse_pool(scores: torch.Tensor, r: float) -> torch.Tensor:
    """``[N, K, h, w] -> [N, K]``: ``(1/r) log mean exp(r s)`` over the positions."""
    flat = scores.flatten(2)
    return (torch.logsumexp(r * flat, dim=-1) - math.log(flat.shape[-1])) / r


def _batch(data: ImageLabelSet, cfg: PretrainConfig, gen: torch.Generator, device: torch.device):
    idx = torch.randint(len(data), (cfg.batch_size,), generator=gen)
    image = torch.from_numpy(data.images[idx.numpy()]).permute(0, 3, 1, 2).float().div_(255)
    flip = torch.rand(cfg.batch_size, generator=gen) < 0.5
    image[flip] = image[flip].flip(-1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    image = (image - mean) / std
    # one random down-scaling per batch, placed at random on the canvas (padding is the mean: 0)
    side = cfg.size
    small = max(8, round(side * (cfg.scale_min + (1 - cfg.scale_min) * torch.rand((), generator=gen).item())))
    if small < side:
        shrunk = F.interpolate(image, size=(small, small), mode="bilinear", align_corners=False, antialias=True)
        y0, x0 = (int(torch.randint(side - small + 1, (), generator=gen)) for _ in range(2))
        image = torch.zeros_like(image)
        image[:, :, y0 : y0 + small, x0 : x0 + small] = shrunk
    labels = torch.from_numpy(data.labels[idx.numpy()][:, 1:]).float()
    return image.to(device), labels.to(device)


@torch.no_grad()
def image_label_map(state: dict, cfg: PretrainConfig, data: ImageLabelSet, device: torch.device) -> tuple[float, float]:
    """How well a pretrained network tells which classes an image shows: the mean average
    precision of its pooled class scores on ``data`` (images it did not learn from), over the
    classes that occur there, and the same of the class-frequency prior (a constant score, whose
    average precision is the class's frequency)."""
    model = build_model(cfg.model, data.num_classes, width=cfg.width, context=cfg.context).to(device)
    model.load_state_dict(state)
    model.eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pooled = []
    for i in range(0, len(data), 64):
        image = (torch.from_numpy(data.images[i : i + 64]).permute(0, 3, 1, 2).float() / 255 - mean) / std
        pooled.append(lse_pool(model(image.to(device))[:, 1:], cfg.lse_r).cpu())
    return mean_average_precision(torch.cat(pooled), torch.from_numpy(data.labels[:, 1:]))


def mean_average_precision(scores: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Mean over classes of the average precision of ``scores`` ``[N, C]`` for the bool labels
    ``truth`` ``[N, C]`` (ties broken by image order), and the mean of the classes' frequencies (the
    class-frequency prior's). Classes that every image or no image shows are left out (no ranking
    to judge); nan when none is left."""
    aps, prior = [], []
    for c in range(truth.shape[1]):
        positives = truth[:, c]
        if positives.all() or not positives.any():
            continue
        order = torch.argsort(scores[:, c], descending=True, stable=True)
        hits = positives[order].double()
        precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
        aps.append(float((precision * hits).sum() / hits.sum()))
        prior.append(float(positives.double().mean()))
    if not aps:
        return float("nan"), float("nan")
    return sum(aps) / len(aps), sum(prior) / len(prior)


def pretrain(
    cfg: PretrainConfig, data: ImageLabelSet, device: torch.device, progress: bool = False
) -> tuple[dict, list[float]]:
    """Train the network on ``data``'s image labels; returns its state_dict and the loss curve
    (mean of every 100 iterations)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.num_classes, width=cfg.width, context=cfg.context).to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    rest = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=cfg.momentum,
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    curve, window = [], 0.0
    for it in range(cfg.iterations):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (1 - it / cfg.iterations) ** 0.9
        image, labels = _batch(data, cfg, gen, device)
        pooled = lse_pool(model(image)[:, 1:], cfg.lse_r)  # background is not an image label
        loss = F.binary_cross_entropy_with_logits(pooled, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window += loss.item()
        if (it + 1) % 100 == 0 or it + 1 == cfg.iterations:
            curve.append(window / ((it % 100) + 1))
            window = 0.0
            if progress:
                log.info(f"pretrain it {it + 1}/{cfg.iterations}  loss {curve[-1]:.4f}")
        if not math.isfinite(window):
            raise FloatingPointError(f"the pretraining loss is not finite at iteration {it + 1} (lower --lr)")
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, curve


#: A pretraining whose image-label mAP on held-out images is not this far above the class-frequency
#: prior's has learnt no more than how often each class occurs: it is no start for a run.
MIN_MAP_GAIN = 0.1


@dataclass(frozen=True)
class PretrainedStart:
    path: Path
    map: float  #: image-label mAP on the health split's images
    prior: float  #: the class-frequency prior's mAP there
    images: int

    @property
    def learnt(self) -> bool:
        return not self.map < self.prior + MIN_MAP_GAIN  # a split without both kinds of image: nan, no verdict

    def describe(self, split: str) -> str:
        return (
            f"image-label mAP {self.map:.3f} on the {self.images} images of {split!r} (class-frequency "
            f"prior {self.prior:.3f})"
        )


def pretrained_start(
    root: str | Path,
    split: str,
    cfg: PretrainConfig,
    cache_dir: str | Path,
    device: torch.device,
    build: bool = True,
    health_split: str | None = None,
) -> PretrainedStart:
    """The cached pretrained state for ``root``'s ``split`` and ``cfg``, made first if missing, and
    its health: the image-label mAP on ``health_split``'s images (default ``split``) against the
    class-frequency prior's. ``build=False`` (the other processes of a DDP run) only finds the path."""
    fill = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)
    start = time.perf_counter()
    data = ImageLabelSet(root, split, cfg.size, fill)
    path = Path(cache_dir) / f"pretrain-{cfg.model}-{cache_key(cfg, data.digest, data.class_names)}.pth"
    config = {**asdict(cfg), "context": list(cfg.context)}
    held_out = ImageLabelSet(root, health_split, cfg.size, fill) if health_split else data

    def make() -> dict:
        log.info(
            f"pretraining on the image labels of {len(data)} images of {split!r} ({cfg.iterations} iterations, "
            f"{cfg.model} at {cfg.size} px) -> {path}"
        )
        state, curve = pretrain(cfg, data, device, progress=True)
        return {
            "model": state,
            "config": config,
            "loss": curve,
            "seconds": time.perf_counter() - start,
            "images": len(data),
            "split": split,
            "class_names": list(data.class_names),
            "health": {health_split or split: image_label_map(state, cfg, held_out, device)},
        }

    fits = build_model(cfg.model, data.num_classes, width=cfg.width, context=cfg.context)
    entry, made = cached_entry(path, config, fits, "--pretrain-cache", make if build else None)
    if entry is None:
        return PretrainedStart(path, float("nan"), float("nan"), len(held_out))
    if made:
        log.info(f"pretraining took {entry['seconds']:.0f} s (final loss {entry['loss'][-1]:.4f}); cached: {path}")
    else:
        log.info(
            f"pretrained start (image labels of {len(data)} images of {split!r}): {path}, "
            f"cached (it took {entry.get('seconds', 0):.0f} s to make)"
        )
    measured = entry.get("health", {}).get(health_split or split)
    if measured is None:  # an entry made before its health was recorded
        measured = image_label_map(entry["model"], cfg, held_out, device)
    result = PretrainedStart(path, *measured, len(held_out))
    log.info(f"pretraining health: {result.describe(health_split or split)}")
    return result


def pretrained_start_for(cfg: TrainConfig, root: Path, info: DistInfo, device: torch.device) -> PretrainedStart:
    """The pretrained start of a training run, made by the main process once per data and
    settings. When it learnt no more than the class frequencies, the log says so and ``learnt``
    is False on every process: the run then starts from random weights, which train better than
    such a start."""
    split = cfg.pretrain_split or ("pretrain" if not cfg.data_root else cfg.train_split)
    pcfg = PretrainConfig(
        model=cfg.model,
        width=cfg.width,
        context=tuple(cfg.context or PretrainConfig.context),
        size=cfg.crop_size,
        iterations=cfg.pretrain_iterations,
        seed=cfg.seed,
    )
    start = pretrained_start(root, split, pcfg, cfg.pretrain_cache, device, build=info.main, health_split=cfg.val_split)
    info.barrier()
    if info.main and not start.learnt:
        log.warning(
            f"the pretraining did not learn: {start.describe(cfg.val_split)}, not {MIN_MAP_GAIN} above the "
            "prior; this run starts from random weights instead (as --init scratch). A larger --crop-size "
            "(with --input-scale) shows the network larger objects"
        )
    if info.world_size > 1:  # every process takes the main one's verdict
        verdict = torch.tensor([start.map, start.prior], dtype=torch.float64, device=device)
        torch.distributed.broadcast(verdict, 0)
        start = replace(start, map=float(verdict[0]), prior=float(verdict[1]))
    return start


def load_pretrained(model: nn.Module, path: str | Path, classifier: bool = True) -> None:
    """Copy a pretrained state into ``model``; ``classifier=False`` keeps its own final layer."""
    state = load_checkpoint(path, required=("model",))["model"]
    check_state_fits(model, state, path, skip=None if classifier else "classifier.")
    if not classifier:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=False)


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> Path:
    """Make (or find) the pretrained start ``python -m emseg.train`` with the same flags uses."""
    cfg = config_from_args(argv, prog="python -m emseg.pretrain")
    if cfg.pretrained or cfg.init != "pretrain":
        raise ValueError("--pretrained / --init other than 'pretrain' leave nothing to pretrain")
    check_work_folders(cfg)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = DistInfo()
    start = pretrained_start_for(cfg, prepare_data(cfg, info), info, device)
    print(f"pretrained start: {start.path}" + ("" if start.learnt else " (it did not learn: see above)"))
    return start.path


if __name__ == "__main__":
    run_cli(main, "python -m emseg.pretrain")
