"""The training run's configuration: presets, :class:`TrainConfig`, the command line and its checks.

A preset (:mod:`emseg.presets`: ``synthetic``, ``cpu`` or ``voc``) fills every flag left unset; :func:`config_from_args` validates
the result (bad values end in ``parser.error``, exit code 2). The dense CRF's ``--crf-*`` flags
(:func:`add_crf_args`) are shared with the evaluation and prediction CLIs.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .cli import (
    add_crf_args,
    bars_wanted,
    check_crf_params,
    check_finite_flags,
    crf_params_from_args,
    parse_context,
    resolve_device,
)
from .crf import CRFParams
from .data.io import MissingDataError, read_id_list
from .data.synthetic import SYNTHETIC_DEFAULTS, SYNTHETIC_SPLITS
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .data.voc import find_list
from .estep import MODES, EStepConfig, get_mode
from .models import MODELS, TORCHVISION_VGG16, context_for_crop, torchvision_vgg16_path
from .presets import PRESETS, cpu_iterations, default_mode, working_scale


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the checkpoint as a plain dict."""

    preset: str = "synthetic"
    data_root: str | None = None
    synthetic_train: int = SYNTHETIC_DEFAULTS["num_train"]
    synthetic_val: int = SYNTHETIC_DEFAULTS["num_val"]
    synthetic_test: int = SYNTHETIC_DEFAULTS["num_test"]
    synthetic_size: int = SYNTHETIC_DEFAULTS["image_size"]
    synthetic_pretrain: int = SYNTHETIC_DEFAULTS["num_pretrain"]
    train_split: str = "train_aug"
    val_split: str = "val"
    mode: str = "em-adapt"
    mode_reason: str = ""  #: why the run trains in ``mode`` (given, or the default for its supervision)
    strong: int = 0
    strong_list: str | None = None
    strong_share: float = 0.5
    model: str = "small"
    width: int = 16
    pretrained: str | None = None
    init: str = "pretrain"
    context: tuple[int, int] | None = None
    pretrain_split: str | None = None
    pretrain_iterations: int = 1500
    pretrain_cache: str = "data/pretrain-cache"
    batch_size: int = 8
    crop_size: int = 64
    input_scale: float = 1.0
    scale_min: float = 0.75
    scale_max: float = 1.25
    iterations: int = 1500
    lr: float = 2e-2
    classifier_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_policy: str = "poly"
    warmup: int = 0
    clip_grad: float = 0.0
    spike_factor: float = 5.0
    estep_crf: bool = False
    estep_teacher: float = 0.0
    lr_step: int = 1000
    lr_gamma: float = 0.1
    poly_power: float = 0.9
    workers: int = 2
    seed: int = 0
    device: str | None = None
    amp: bool | None = None
    output_dir: str = "runs/demo"
    overwrite: bool = False
    resume: str | None = None
    log_interval: int = 20
    checkpoint_interval: int = 500
    eval_batch_size: int = 8
    eval_crf: bool = False
    num_pictures: int = 8
    eval_interval: int | None = None
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


def build_parser(prog: str = "python -m emseg.train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Weakly-/semi-supervised semantic segmentation with hard EM (Papandreou et al., "
        "ICCV 2015). With no arguments: builds a synthetic VOC-layout data set, pretrains a small "
        "network on image labels (cached), trains it with EM-Adapt from image labels alone on the CPU, "
        "evaluates it and writes pictures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data-root", default=None, help="PASCAL VOC 2012 (+SBD) root in VOC layout; omitted: the synthetic set"
    )
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="defaults for the setting: with --data-root 'voc' (the paper's recipe) where a GPU is available and "
        "'cpu' (small model at a resolution set from the images) where not; without, 'synthetic'",
    )
    g.add_argument(
        "--synthetic-dir",
        default="data/synthetic-voc",
        help="where the synthetic set is written (reused when complete)",
    )
    g.add_argument(
        "--synthetic-train", type=int, default=SYNTHETIC_DEFAULTS["num_train"], help="synthetic training images"
    )
    g.add_argument(
        "--synthetic-val",
        type=int,
        default=SYNTHETIC_DEFAULTS["num_val"],
        help="synthetic validation images (settings are chosen on these)",
    )
    g.add_argument(
        "--synthetic-test",
        type=int,
        default=SYNTHETIC_DEFAULTS["num_test"],
        help="synthetic test images (--val-split test reports on them)",
    )
    g.add_argument(
        "--synthetic-size",
        type=int,
        default=SYNTHETIC_DEFAULTS["image_size"],
        help="side of the synthetic images in pixels",
    )
    g.add_argument(
        "--synthetic-pretrain",
        type=int,
        default=SYNTHETIC_DEFAULTS["num_pretrain"],
        help="synthetic images of the pretraining split (image labels only: ImageNet's part)",
    )
    g.add_argument("--train-split", default=None, help="training image list (name under the root or a file)")
    g.add_argument("--val-split", default=None, help="validation image list")
    g.add_argument(
        "--label-cache",
        default="data/label-cache",
        help="where Bbox-Rect / Bbox-Seg labels are cached (keyed by data, subset and parameters)",
    )
    g.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per training process")

    g = p.add_argument_group("supervision")
    g.add_argument(
        "--mode",
        choices=list(MODES),
        default=None,
        help="; ".join(f"{m.name}: {m.summary}" for m in MODES.values())
        + " (default: by the supervision given, emseg.presets.default_mode: em-adapt, or with strong images "
        "em-fixed under --preset voc)",
    )
    g.add_argument(
        "--strong",
        type=int,
        default=0,
        help="semi-supervised: number of images whose masks are used (random, by --seed)",
    )
    g.add_argument(
        "--strong-list",
        default=None,
        help="semi-supervised: file listing the ids of the strong images (instead of --strong)",
    )
    g.add_argument(
        "--strong-share",
        type=float,
        default=0.5,
        help="fraction of each batch drawn from the strong images in a semi-supervised run",
    )
    g.add_argument(
        "--fg-bias",
        type=float,
        default=None,
        help="EM-Fixed / Bbox-EM-Fixed foreground bias b_fg "
        "(default: the paper's 5 under --preset voc, else the preset's, fitted to its network's scores)",
    )
    g.add_argument(
        "--bg-bias",
        type=float,
        default=None,
        help="EM-Fixed / Bbox-EM-Fixed background bias b_bg "
        "(default: the paper's 3 under --preset voc, else the preset's)",
    )
    g.add_argument(
        "--suppress-absent", action="store_true", help="EM-Fixed: absent classes cannot win the E-step's argmax"
    )
    g.add_argument(
        "--fg-portion",
        type=float,
        default=0.2,
        help="EM-Adapt: minimum share of pixels for each present foreground class",
    )
    g.add_argument("--bg-portion", type=float, default=0.4, help="EM-Adapt: minimum share of pixels for background")
    g.add_argument(
        "--estep-crf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refine the online E-step's labels with the dense CRF (--crf-* settings) on the crop",
    )
    g.add_argument(
        "--estep-teacher",
        type=float,
        default=None,
        help="run the online E-step on a copy of the network "
        "whose weights follow the trained ones as an exponential moving average with this decay (0: the "
        "trained network itself)",
    )
    g.add_argument(
        "--center-portion",
        type=float,
        default=0.2,
        help="Bbox-Seg: share of each box fixed as foreground around its centre",
    )
    g.add_argument(
        "--seg-box-prob",
        type=float,
        default=0.6,
        help="Bbox-Seg: prior probability of the box's class inside the box (background gets the rest)",
    )

    g = p.add_argument_group("model and optimisation")
    g.add_argument(
        "--model", choices=MODELS, default=None, help="network (default: small for synthetic, deeplab-largefov for voc)"
    )
    g.add_argument("--width", type=int, default=None, help="channel width of the small model")
    g.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout rate of the head (default: 0.5 for deeplab-largefov, 0.1 for small)",
    )
    g.add_argument(
        "--pretrained",
        default=None,
        help="local ImageNet VGG16 state_dict in torchvision's layout (deeplab-largefov); "
        f"'{TORCHVISION_VGG16}': torchvision's own file in the torch hub cache ({torchvision_vgg16_path()})",
    )
    g.add_argument(
        "--init",
        default="pretrain",
        help="where the network starts when --pretrained is not given: 'pretrain' (classification pretraining on "
        "image labels, cached; see python -m emseg.pretrain), 'scratch' (random weights) or a file python -m emseg.pretrain wrote",
    )
    g.add_argument(
        "--pretrain-split",
        default=None,
        help="image list the pretraining learns from (default: 'pretrain' on the synthetic set, else the training list)",
    )
    g.add_argument("--pretrain-iterations", type=int, default=1500, help="iterations of the classification pretraining")
    g.add_argument(
        "--pretrain-cache",
        default="data/pretrain-cache",
        help="where pretrained starts are cached (keyed by data and settings)",
    )
    g.add_argument(
        "--context",
        default=None,
        help="the small model's two context dilations D1,D2 (0: a 1x1 convolution); default: "
        "a receptive field of 0.7 x --crop-size, as DeepLab-LargeFOV's 224 px on 321 px VOC crops",
    )
    g.add_argument("--batch-size", type=int, default=None, help="global batch size (split over the processes)")
    g.add_argument("--crop-size", type=int, default=None, help="side of the random training crop")
    g.add_argument(
        "--input-scale",
        type=float,
        default=None,
        help="factor every image is resized by before the network (training and "
        "evaluation; scores are brought back to full size); default 1, and for the cpu preset the crop size over the "
        "median longer side of the training images",
    )
    g.add_argument("--scale-min", type=float, default=None, help="smallest random rescaling factor")
    g.add_argument("--scale-max", type=float, default=None, help="largest random rescaling factor")
    g.add_argument("--iterations", type=int, default=None, help="SGD iterations")
    g.add_argument(
        "--lr", type=float, default=None, help="base learning rate (backbone weights; biases x2, classifier x10/x20)"
    )
    g.add_argument(
        "--classifier-lr-mult", type=float, default=10.0, help="learning-rate multiplier of the final classifier"
    )
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (weights only, not biases)")
    g.add_argument("--warmup", type=int, default=None, help="iterations of linear learning-rate warm-up")
    g.add_argument(
        "--clip-grad", type=float, default=None, help="clip the global gradient norm to this (0: no clipping)"
    )
    g.add_argument(
        "--spike-factor",
        type=float,
        default=5.0,
        help="a loss above this times the median of the last 50 "
        "skips its step; persistent spikes or a non-finite loss roll back with half the learning rate (0: off)",
    )
    g.add_argument(
        "--lr-policy",
        choices=["step", "poly"],
        default=None,
        help="step: x gamma every --lr-step; poly: (1 - it/max)^power",
    )
    g.add_argument("--lr-step", type=int, default=None, help="step policy: iterations between decays")
    g.add_argument("--lr-gamma", type=float, default=0.1, help="step policy: decay factor")
    g.add_argument("--poly-power", type=float, default=0.9, help="poly policy: power")
    g.add_argument("--seed", type=int, default=0, help="seed of the model init, the sampler and the strong subset")
    g.add_argument(
        "--device",
        default=None,
        help="cpu or cuda; default: cuda when available (LOCAL_RANK picks the GPU under torchrun)",
    )
    g.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (default: on for CUDA)"
    )

    g = p.add_argument_group("output")
    g.add_argument(
        "--output-dir",
        default="runs/demo",
        help="checkpoints, log, metrics.csv, pictures; one run per folder: a folder "
        "holding another run's checkpoint or summary is refused (see --resume, --overwrite), except the default: "
        "when runs/demo holds a run, the next free runs/demo-2, runs/demo-3, ... is used",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --output-dir (its checkpoints, logs and pictures are deleted)",
    )
    g.add_argument(
        "--resume",
        default=None,
        help="checkpoint to resume from (continues exactly where it stopped; without "
        "--output-dir, in the checkpoint's folder)",
    )
    g.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="leave after this many iterations of this invocation, with a checkpoint (time-limited jobs; continue with --resume)",
    )
    g.add_argument("--log-interval", type=int, default=None, help="iterations between log lines / CSV rows")
    g.add_argument("--checkpoint-interval", type=int, default=None, help="iterations between checkpoints")
    g.add_argument(
        "--eval-batch-size", type=int, default=None, help="validation batch size (1 for images of varying size)"
    )
    g.add_argument("--eval-crf", action="store_true", help="also evaluate with dense-CRF refinement at the end")
    g.add_argument(
        "--num-pictures",
        type=int,
        default=8,
        help="validation images drawn as prediction pictures at the end (0: none)",
    )
    g.add_argument(
        "--eval-interval",
        type=int,
        default=None,
        help="also evaluate on the validation split every N iterations (mIoU in metrics.csv; the best checkpoint is kept as best.pth)",
    )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no tqdm progress bars (there are none when stderr is not a terminal: log lines instead)",
    )
    add_crf_args(p, "the preset (synthetic: scaled to 64-pixel images; voc: DeepLab-LargeFOV's)")
    return p


def config_from_args(argv: list[str] | None = None, prog: str = "python -m emseg.train") -> TrainConfig:
    """Parse and validate the command line; bad values end in ``parser.error`` (exit code 2)."""
    parser = build_parser(prog)
    a = parser.parse_args(argv)
    if a.preset:
        preset = a.preset
    elif a.data_root:
        preset = "voc" if resolve_device(parser, a.device).type == "cuda" else "cpu"
    else:
        preset = "synthetic"
    given_train_split, given_iterations = a.train_split, a.iterations
    for key, value in PRESETS[preset].items():
        if key not in ("crf", "input_scale") and getattr(a, key, None) is None:
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
    a.mode_reason = "--mode given"
    if a.mode is None:
        a.mode, a.mode_reason = default_mode(preset, semi)
    for key in ("estep_crf", "estep_teacher", "fg_bias", "bg_bias"):  # a preset may fit these to the mode
        if isinstance(getattr(a, key), dict):
            setattr(a, key, getattr(a, key)[a.mode])
    if semi and get_mode(a.mode).fully_supervised:
        err("--strong/--strong-list make no sense with --mode full (every image uses its mask)")
    for name in (
        "batch_size",
        "crop_size",
        "iterations",
        "lr_step",
        "log_interval",
        "checkpoint_interval",
        "eval_batch_size",
        "width",
    ):
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
    if a.pretrained == TORCHVISION_VGG16:
        a.pretrained = str(torchvision_vgg16_path())
        if not Path(a.pretrained).is_file():
            err(
                f"--pretrained {TORCHVISION_VGG16}: torchvision's VGG16 ImageNet weights are expected at {a.pretrained} "
                "(nothing is downloaded: copy vgg16-397923af.pth there from a machine where torchvision fetched it)"
            )
    if a.pretrained and not Path(a.pretrained).is_file():
        err(f"--pretrained {a.pretrained}: no such file (give a local torchvision VGG16 state_dict)")
    if a.init not in ("pretrain", "scratch") and not Path(a.init).is_file():
        err(f"--init {a.init}: expected 'pretrain', 'scratch' or a file written by python -m emseg.pretrain")
    if a.pretrain_iterations < 1 or a.synthetic_pretrain < 0 or a.synthetic_test < 0:
        err("--pretrain-iterations must be >= 1, --synthetic-pretrain and --synthetic-test >= 0")
    if (
        not a.data_root
        and a.init == "pretrain"
        and not a.pretrained
        and a.synthetic_pretrain < 1
        and a.pretrain_split is None
    ):
        err("--synthetic-pretrain 0 leaves the pretraining no images: give --init scratch or --pretrain-split")
    if a.context is not None:
        if a.model != "small":
            err("--context sets the small model's dilations: use it with --model small")
        a.context = parse_context(parser, a.context)
    elif a.model == "small":
        a.context = context_for_crop(a.crop_size)
    if a.eval_interval is not None and a.eval_interval < 1:
        err("--eval-interval must be >= 1")
    if a.resume and not Path(a.resume).is_file():
        err(f"--resume {a.resume}: no such file")
    if a.data_root and not Path(a.data_root).is_dir():
        err(f"--data-root {a.data_root}: no such folder")
    if not a.data_root and min(a.synthetic_train, a.synthetic_val, a.synthetic_size) < 1:
        err("--synthetic-train, --synthetic-val and --synthetic-size must be >= 1")
    resolve_device(parser, a.device)
    check_finite_flags(parser, a)
    if Path(a.output_dir).exists() and not Path(a.output_dir).is_dir():
        err(f"--output-dir {a.output_dir}: exists and is not a folder")
    if (
        a.data_root
        and a.train_split == "train_aug"
        and given_train_split is None
        and not _has_list(a.data_root, "train_aug")
    ):
        # VOC 2012 without SBD: its own segmentation training list
        if _has_list(a.data_root, "train"):
            print(f"emseg: {a.data_root} has no train_aug list (SBD's augmented set): training on 'train' instead")
            a.train_split = "train"
    for flag, split in (("--train-split", a.train_split), ("--val-split", a.val_split)):
        _check_split(err, flag, split, a.data_root)
    if preset == "cpu" and given_iterations is None:
        a.iterations = cpu_iterations(len(read_id_list(find_list(a.data_root, a.train_split))), a.batch_size)
    if a.input_scale is None:
        a.input_scale = PRESETS[preset]["input_scale"] or (
            working_scale(a.data_root, a.train_split, a.crop_size) if a.data_root else 1.0
        )
    if not 0 < a.input_scale <= 4:
        err(f"--input-scale must be in (0, 4], got {a.input_scale}")
    _check_crop_memory(err, a.batch_size, a.crop_size)
    estep = EStepConfig(**{f.name: getattr(a, f.name) for f in fields(EStepConfig) if hasattr(a, f.name)})
    given = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if hasattr(a, f.name)}
    given.update(
        preset=preset,
        progress=bars_wanted(a.no_progress),
        estep=estep,
        crf=crf_params_from_args(a, PRESETS[preset]["crf"]),
        data_root_resolved=str(Path(a.synthetic_dir)) if not a.data_root else str(a.data_root),
    )
    check_crf_params(parser, given["crf"])
    return TrainConfig(**given)


# ---------------------------------------------------------------------------------------------
# Checks shared by the CLIs


def _has_list(root: str, split: str) -> bool:
    try:
        find_list(root, split)
    except MissingDataError:
        return False
    return True


def _check_split(err, flag: str, split: str, data_root: str | None) -> None:
    if data_root is None:  # the synthetic set writes these lists
        if split not in SYNTHETIC_SPLITS and not Path(split).is_file():
            err(f"{flag} {split}: the synthetic set has the splits {', '.join(SYNTHETIC_SPLITS)} (or give a list file)")
        return
    try:
        find_list(data_root, split)
    except MissingDataError as e:
        err(f"{flag} {split}: {e.reason}")


def _check_crop_memory(err, batch_size: int, crop_size: int) -> None:
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


#: TrainConfig fields a resumed run may change: they do not change what it computes.
RESUME_MAY_CHANGE = frozenset(
    {
        "resume",
        "overwrite",
        "stop_after",
        "workers",
        "progress",
        "output_dir",
        "num_pictures",
        "eval_crf",
        "eval_batch_size",
        "eval_interval",
        "log_interval",
        "checkpoint_interval",
        "label_cache",
        "pretrain_cache",
        "device",
        "data_root",
        "data_root_resolved",
    }
)


def resume_conflicts(cfg: TrainConfig, saved: dict) -> list[str]:
    """The flags whose value differs from the checkpoint's run, as ``--flag saved -> now``."""
    now = config_to_dict(cfg)
    out = []
    for key, value in now.items():
        if key in RESUME_MAY_CHANGE or key not in saved:
            continue
        if isinstance(value, dict):
            prefix = "crf-" if key == "crf" else ""
            out += [
                f"--{prefix}{k.replace('_', '-')} {saved[key].get(k)!r} -> {v!r}"
                for k, v in value.items()
                if saved[key].get(k) != v
            ]
        elif saved[key] != value:
            out.append(f"--{key.replace('_', '-')} {saved[key]!r} -> {value!r}")
    return out


def check_resume(cfg: TrainConfig, ckpt: dict) -> None:
    """A resumed run continues the checkpoint's run exactly: refuse any flag that would change it."""
    changed = resume_conflicts(cfg, ckpt["args"])
    if changed:
        raise ValueError(
            f"--resume {cfg.resume}: this run differs from the checkpoint's in {'; '.join(changed)}; "
            "resume with the same settings (a resumed run continues the original exactly)"
        )
    if ckpt["iteration"] >= cfg.iterations:
        raise ValueError(
            f"--resume {cfg.resume}: the checkpoint is at iteration {ckpt['iteration']} of "
            f"{cfg.iterations}: nothing is left to train"
        )


def config_to_dict(cfg: TrainConfig) -> dict:
    """Plain types only (weights_only checkpoints)."""
    d = asdict(cfg)
    d["mean"], d["std"] = list(cfg.mean), list(cfg.std)
    if cfg.context is not None:
        d["context"] = list(cfg.context)
    return d


def config_from_dict(d: dict) -> TrainConfig:
    d = dict(d)
    d["estep"] = EStepConfig(**d["estep"])
    d["crf"] = CRFParams(**d["crf"])
    d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
    if d.get("context") is not None:
        d["context"] = tuple(d["context"])
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in known})
