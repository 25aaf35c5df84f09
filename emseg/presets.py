"""The recipes a run starts from, and the rules that fit them to the data.

``voc`` is the paper's; ``synthetic`` and ``cpu`` are sized for a laptop CPU. A preset fills every
flag a user leaves unset (:func:`emseg.config.config_from_args`).
"""

from __future__ import annotations

from pathlib import Path

from .crf import CRFParams
from .data.io import read_id_list
from .data.voc import find_list

#: The online E-step options of the small-network presets, by mode: what measured best on the
#: built-in set's validation split (seeds 0-2; docs in the README's results). The CRF-refined E-step
#: keeps EM-Adapt's labels on the objects' outlines; Bbox-EM-Fixed with it alone collapses to
#: background (the CRF spreads the certain background outside the boxes into them), and its E-step on
#: a slowly updated copy of the network (decay 0.9999: the copy keeps most of the start) holds.
ESTEP_CRF = {
    "full": False,
    "em-fixed": True,
    "em-adapt": True,
    "bbox-rect": False,
    "bbox-seg": False,
    "bbox-em-fixed": True,
}
ESTEP_TEACHER = {
    "full": 0.0,
    "em-fixed": 0.0,
    "em-adapt": 0.0,
    "bbox-rect": 0.0,
    "bbox-seg": 0.0,
    "bbox-em-fixed": 0.9999,
}


#: The fixed biases of the small network's presets, by mode. The paper's b_fg = 5, b_bg = 3 were set
#: for DeepLab's VOC scores; against this network's scores their +2 for foreground labels most of
#: EM-Fixed semi's weak pixels foreground, and +1 (4 and 3) measures best there. Bbox-EM-Fixed,
#: whose boxes bound the foreground, keeps the paper's.
FG_BIAS = {mode: 5.0 for mode in ESTEP_CRF} | {"em-fixed": 4.0}
BG_BIAS = {mode: 3.0 for mode in ESTEP_CRF}


def default_mode(preset: str, semi: bool) -> tuple[str, str]:
    """The mode of a run that names none, for its preset and supervision, and why (the log prints
    it). From image labels alone EM-Adapt everywhere: EM-Fixed's fixed biases let background take
    every pixel (the paper: 38.2 against 20.8; here 20.3 against 69.6, seed 0). With strong images,
    ``voc`` takes the paper's EM-Fixed semi; the small network's presets take EM-Adapt semi, which
    measures above EM-Fixed semi on every seed of the built-in set's validation split (74.6, 74.5,
    77.1 against 73.8, 74.0, 73.3 with the presets' biases; 58.8 with the paper's, seed 0)."""
    if not semi:
        return "em-adapt", (
            "no --mode: from image labels alone, EM-Adapt (EM-Fixed's fixed biases let background take every pixel)"
        )
    if preset == "voc":
        return "em-fixed", "no --mode: with strong images, EM-Fixed semi (the paper's best semi-supervised setting)"
    return "em-adapt", (
        "no --mode: with strong images, EM-Adapt semi (on this preset's small network it measures above EM-Fixed semi)"
    )


#: Defaults that depend on the setting. ``voc`` is the paper's recipe (DeepLab's solver for the
#: weak nets: batch 20, crop 321, lr 1e-3 with x10 on the classifier, x0.1 every 2000 iterations,
#: 6000 iterations); ``synthetic`` is sized for a laptop CPU (about 10 minutes on 2 cores).
PRESETS: dict[str, dict] = {
    "voc": dict(
        model="deeplab-largefov",
        batch_size=20,
        crop_size=321,
        iterations=6000,
        lr=1e-3,
        lr_policy="step",
        lr_step=2000,
        warmup=0,
        clip_grad=0.0,
        estep_crf=False,
        estep_teacher=0.0,
        fg_bias=5.0,
        bg_bias=3.0,
        scale_min=0.5,
        scale_max=1.5,
        eval_batch_size=1,
        train_split="train_aug",
        val_split="val",
        log_interval=20,
        checkpoint_interval=1000,
        width=32,
        input_scale=1.0,
        crf=CRFParams(),
    ),
    # a user's VOC-layout data on a CPU: the synthetic recipe, the images resized so that their
    # median longer side is the crop (input_scale None: set by that rule from the training list),
    # and as many iterations as cpu_iterations gives for the training list
    "cpu": dict(
        model="small",
        batch_size=8,
        crop_size=64,
        iterations=1500,
        lr=1e-2,
        lr_policy="poly",
        lr_step=1000,
        warmup=100,
        clip_grad=10.0,
        estep_crf=ESTEP_CRF,
        estep_teacher=ESTEP_TEACHER,
        fg_bias=FG_BIAS,
        bg_bias=BG_BIAS,
        scale_min=0.75,
        scale_max=1.25,
        eval_batch_size=1,
        train_split="train_aug",
        val_split="val",
        log_interval=20,
        checkpoint_interval=500,
        width=16,
        input_scale=None,
        crf=CRFParams(bi_w=4.0, bi_xy_std=16.0, bi_rgb_std=5.0, pos_w=3.0, pos_xy_std=1.0, iterations=10),
    ),
    "synthetic": dict(
        model="small",
        batch_size=8,
        crop_size=64,
        iterations=1500,
        lr=1e-2,
        lr_policy="poly",
        lr_step=1000,
        warmup=100,
        clip_grad=10.0,
        estep_crf=ESTEP_CRF,
        estep_teacher=ESTEP_TEACHER,
        fg_bias=FG_BIAS,
        bg_bias=BG_BIAS,
        scale_min=0.75,
        scale_max=1.25,
        eval_batch_size=8,
        train_split="train_aug",
        val_split="val",
        log_interval=20,
        checkpoint_interval=500,
        width=16,
        input_scale=1.0,
        # DeepLab's VOC CRF scaled to 64-pixel images (VOC images are about 500 pixels wide)
        crf=CRFParams(bi_w=4.0, bi_xy_std=16.0, bi_rgb_std=5.0, pos_w=3.0, pos_xy_std=1.0, iterations=10),
    ),
}


def working_scale(root: str, split: str, crop_size: int, sample: int = 200) -> float:
    """The cpu preset's resolution rule: the factor that brings the median longer side of (up to
    ``sample`` of) the split's images to ``crop_size``, so a crop holds about a whole image and its
    image labels stay true; never an enlargement."""
    from PIL import Image  # only the headers are read

    ids = read_id_list(find_list(root, split))
    step = max(1, len(ids) // sample)
    sides = []
    for image_id in ids[::step][:sample]:
        path = Path(root) / "JPEGImages" / f"{image_id}.jpg"
        try:
            with Image.open(path) as im:
                sides.append(max(im.size))
        except (OSError, ValueError):
            continue  # a broken file is reported where it is read
    if not sides:
        return 1.0
    return min(1.0, crop_size / float(sorted(sides)[len(sides) // 2]))


def cpu_iterations(num_images: int, batch_size: int, epochs: int = 30, low: int = 1500, high: int = 6000) -> int:
    """The cpu preset's schedule: ``epochs`` passes over the training list (the synthetic preset's
    1500 iterations of 8 are 30 passes over its 400 images), at least ``low`` iterations and at
    most ``high`` (the paper's 6000, about 100 minutes of the small network on two cores)."""
    return int(min(high, max(low, round(epochs * num_images / batch_size))))
