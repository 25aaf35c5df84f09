"""The training command line's flags by group, as (flag, argparse keywords, help).

No default is written here: :func:`emseg.config.build_parser` leaves every flag None when unset
and appends to each help the default it takes (TrainConfig's, EStepConfig's or a preset's).
"""

from __future__ import annotations

import argparse

from .estep import MODES
from .models import MODELS, TORCHVISION_VGG16
from .presets import PRESETS

_MODE_HELP = "; ".join(f"{m.name}: {m.summary}" for m in MODES.values())
FLAGS: dict[str, list[tuple[str, dict, str]]] = {
    "data": [
        ("--data-root", {}, "PASCAL VOC 2012 (+SBD) root in VOC layout; omitted: the synthetic set"),
        (
            "--preset",
            dict(choices=sorted(PRESETS)),
            "defaults for the setting: with --data-root 'voc' (the paper's "
            "recipe) where a GPU is available and 'cpu' (small model at a resolution set from the images) where not; "
            "without, 'synthetic'",
        ),
        ("--synthetic-dir", {}, "where the synthetic set is written (reused when complete)"),
        ("--synthetic-train", dict(type=int), "synthetic training images"),
        ("--synthetic-val", dict(type=int), "synthetic validation images (settings are chosen on these)"),
        ("--synthetic-test", dict(type=int), "synthetic test images (--val-split test reports on them)"),
        ("--synthetic-size", dict(type=int), "side of the synthetic images in pixels"),
        (
            "--synthetic-pretrain",
            dict(type=int),
            "synthetic images of the pretraining split (image labels only: ImageNet's part)",
        ),
        (
            "--train-split",
            {},
            "training image list (name under the root or a file); VOC 2012 without SBD's train_aug: train",
        ),
        ("--val-split", {}, "validation image list"),
        ("--label-cache", {}, "where Bbox-Rect / Bbox-Seg labels are cached (keyed by data, subset and parameters)"),
        ("--workers", dict(type=int), "DataLoader worker processes per training process"),
    ],
    "supervision": [
        (
            "--mode",
            dict(choices=list(MODES)),
            f"{_MODE_HELP}; unset: by the supervision given "
            "(emseg.presets.default_mode: em-adapt, or with strong images em-fixed under --preset voc)",
        ),
        ("--strong", dict(type=int), "semi-supervised: number of images whose masks are used (random, by --seed)"),
        ("--strong-list", {}, "semi-supervised: file listing the ids of the strong images (instead of --strong)"),
        (
            "--strong-share",
            dict(type=float),
            "fraction of each batch drawn from the strong images in a semi-supervised run",
        ),
        ("--fg-bias", dict(type=float), "EM-Fixed / Bbox-EM-Fixed foreground bias b_fg"),
        ("--bg-bias", dict(type=float), "EM-Fixed / Bbox-EM-Fixed background bias b_bg"),
        ("--suppress-absent", dict(action="store_true"), "EM-Fixed: absent classes cannot win the E-step's argmax"),
        ("--fg-portion", dict(type=float), "EM-Adapt: minimum share of pixels for each present foreground class"),
        ("--bg-portion", dict(type=float), "EM-Adapt: minimum share of pixels for background"),
        (
            "--estep-crf",
            dict(action=argparse.BooleanOptionalAction),
            "refine the online E-step's labels with the dense CRF (--crf-* settings) on the crop",
        ),
        (
            "--estep-teacher",
            dict(type=float),
            "run the online E-step on a copy of the network whose weights follow "
            "the trained ones as an exponential moving average with this decay (0: the trained network itself)",
        ),
        ("--center-portion", dict(type=float), "Bbox-Seg: share of each box fixed as foreground around its centre"),
        (
            "--seg-box-prob",
            dict(type=float),
            "Bbox-Seg: prior probability of the box's class inside the box (background gets the rest)",
        ),
    ],
    "model and optimisation": [
        ("--model", dict(choices=MODELS), "network"),
        ("--width", dict(type=int), "channel width of the small model"),
        ("--dropout", dict(type=float), "dropout rate of the head (unset: 0.5 for deeplab-largefov, 0.1 for small)"),
        (
            "--pretrained",
            {},
            "local ImageNet VGG16 state_dict in torchvision's layout (deeplab-largefov); "
            f"'{TORCHVISION_VGG16}': torchvision's own file in the torch hub cache "
            "($TORCH_HOME/hub/checkpoints/vgg16-397923af.pth, TORCH_HOME by default ~/.cache/torch)",
        ),
        (
            "--init",
            {},
            "where the network starts when --pretrained is not given: 'pretrain' (classification "
            "pretraining on image labels, cached; see python -m emseg.pretrain), 'scratch' (random weights) or a file "
            "python -m emseg.pretrain wrote",
        ),
        (
            "--pretrain-split",
            {},
            "image list the pretraining learns from (unset: 'pretrain' on the synthetic set, else the training list)",
        ),
        ("--pretrain-iterations", dict(type=int), "iterations of the classification pretraining"),
        ("--pretrain-cache", {}, "where pretrained starts are cached (keyed by data and settings)"),
        (
            "--context",
            {},
            "the small model's two context dilations D1,D2 (0: a 1x1 convolution); unset: a receptive "
            "field of 0.7 x --crop-size, as DeepLab-LargeFOV's 224 px on 321 px VOC crops",
        ),
        ("--batch-size", dict(type=int), "global batch size (split over the processes)"),
        ("--crop-size", dict(type=int), "side of the random training crop"),
        (
            "--input-scale",
            dict(type=float),
            "factor every image is resized by before the network (training and "
            "evaluation; scores are brought back to full size)",
        ),
        ("--scale-min", dict(type=float), "smallest random rescaling factor"),
        ("--scale-max", dict(type=float), "largest random rescaling factor"),
        ("--iterations", dict(type=int), "SGD iterations"),
        ("--lr", dict(type=float), "base learning rate (backbone weights; biases x2, classifier x10/x20)"),
        ("--classifier-lr-mult", dict(type=float), "learning-rate multiplier of the final classifier"),
        ("--momentum", dict(type=float), "SGD momentum"),
        ("--weight-decay", dict(type=float), "weight decay (weights only, not biases)"),
        ("--warmup", dict(type=int), "iterations of linear learning-rate warm-up"),
        ("--clip-grad", dict(type=float), "clip the global gradient norm to this (0: no clipping)"),
        (
            "--spike-factor",
            dict(type=float),
            "a loss above this times the median of the last 50 (and 0.05 above "
            "it) skips its step; persistent spikes or a non-finite loss roll back with half the learning rate (0: off)",
        ),
        ("--lr-policy", dict(choices=["step", "poly"]), "step: x gamma every --lr-step; poly: (1 - it/max)^power"),
        ("--lr-step", dict(type=int), "step policy: iterations between decays"),
        ("--lr-gamma", dict(type=float), "step policy: decay factor"),
        ("--poly-power", dict(type=float), "poly policy: power"),
        ("--seed", dict(type=int), "seed of the model init, the sampler and the strong subset"),
        ("--device", {}, "cpu or cuda; unset: cuda when available (LOCAL_RANK picks the GPU under torchrun)"),
        ("--amp", dict(action=argparse.BooleanOptionalAction), "mixed precision (unset: on for CUDA)"),
    ],
    "output": [
        (
            "--output-dir",
            {},
            "checkpoints, log, metrics.csv, pictures; one run per folder: a folder holding another "
            "run's checkpoint or summary is refused (see --resume, --overwrite), except the default: when runs/demo "
            "holds a run, the next free runs/demo-2, runs/demo-3, ... is used",
        ),
        (
            "--overwrite",
            dict(action="store_true"),
            "replace the run in --output-dir (its checkpoints, logs and pictures are deleted)",
        ),
        (
            "--resume",
            {},
            "checkpoint to resume from (continues exactly where it stopped; without --output-dir, in "
            "the checkpoint's folder)",
        ),
        (
            "--stop-after",
            dict(type=int),
            "leave after this many iterations of this invocation, with a checkpoint "
            "(time-limited jobs; continue with --resume)",
        ),
        ("--log-interval", dict(type=int), "iterations between log lines / CSV rows"),
        ("--checkpoint-interval", dict(type=int), "iterations between checkpoints"),
        ("--eval-batch-size", dict(type=int), "validation batch size (1 for images of varying size)"),
        ("--eval-crf", dict(action="store_true"), "also evaluate with dense-CRF refinement at the end"),
        ("--num-pictures", dict(type=int), "validation images drawn as prediction pictures at the end (0: none)"),
        (
            "--eval-interval",
            dict(type=int),
            "also evaluate on the validation split every N iterations (mIoU in "
            "metrics.csv; the best checkpoint is kept as best.pth)",
        ),
        (
            "--no-progress",
            dict(action="store_true"),
            "no tqdm progress bars (there are none when stderr is not a terminal: log lines instead)",
        ),
    ],
}
