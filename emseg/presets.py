"""The recipes a run starts from, and the rules that fit them to the data.

:class:`emseg.config.TrainConfig` holds every setting's default: the recipe of the built-in
synthetic set (the ``synthetic`` preset). A preset names only what it changes from those, and what
it changes for one mode; :func:`emseg.config.config_from_args` lays the flags a user gave over both.
``voc`` is the paper's recipe; ``synthetic`` and ``cpu`` are sized for a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .crf import CRFParams
from .data.io import read_id_list
from .data.voc import find_list

#: The small network's online E-step and biases where they differ from TrainConfig's by mode: what
#: measured best on the built-in set's validation split (seeds 0-2; the README's results). The
#: CRF-refined E-step keeps EM-Adapt's and EM-Fixed's labels on the objects' outlines. Bbox-EM-Fixed
#: with the CRF alone collapses to background (the CRF spreads the certain background outside the
#: boxes into them); its E-step on a slowly updated copy of the network (decay 0.9999: the copy
#: keeps most of the start) holds. The paper's b_fg = 5, b_bg = 3 were set for DeepLab's VOC
#: scores; against this network's scores their +2 for foreground labels most of EM-Fixed semi's weak
#: pixels foreground, and +1 (4 and 3) measures best there.
SMALL_NETWORK_BY_MODE: dict[str, dict] = {
    "em-adapt": dict(estep_crf=True),
    "em-fixed": dict(estep_crf=True, fg_bias=4.0),
    "bbox-em-fixed": dict(estep_crf=True, estep_teacher=0.9999),
}


@dataclass(frozen=True)
class Preset:
    """What a preset changes from :class:`emseg.config.TrainConfig`'s defaults."""

    summary: str
    #: setting -> value, only where it differs from TrainConfig's
    settings: dict = field(default_factory=dict)
    #: mode -> {setting: value}: the defaults that depend on the mode
    by_mode: dict[str, dict] = field(default_factory=dict)
    #: the input scale (:func:`working_scale`) and the iterations (:func:`cpu_iterations`) come
    #: from the training list unless given
    fit_to_data: bool = False


PRESETS: dict[str, Preset] = {
    "synthetic": Preset("the built-in synthetic set on a CPU (TrainConfig's defaults)", by_mode=SMALL_NETWORK_BY_MODE),
    # a user's VOC-layout data on a CPU: the synthetic recipe, the images resized so that their
    # median longer side is the crop, as many iterations as the training list needs
    "cpu": Preset(
        "a VOC-layout set on a CPU: the small network, the images resized to the crop",
        settings=dict(eval_batch_size=1),
        by_mode=SMALL_NETWORK_BY_MODE,
        fit_to_data=True,
    ),
    # DeepLab's solver for the weak nets: batch 20, crop 321, lr 1e-3 with x10 on the classifier,
    # x0.1 every 2000 iterations, 6000 iterations; the paper's E-step and biases in every mode
    "voc": Preset(
        "the paper's recipe: DeepLab-LargeFOV on PASCAL VOC, on a GPU",
        settings=dict(
            model="deeplab-largefov",
            batch_size=20,
            crop_size=321,
            iterations=6000,
            lr=1e-3,
            lr_policy="step",
            lr_step=2000,
            warmup=0,
            clip_grad=0.0,
            scale_min=0.5,
            scale_max=1.5,
            eval_batch_size=1,
            checkpoint_interval=1000,
            width=32,  # the small network's width, should --model small be asked for
            crf=CRFParams(),
        ),
    ),
}


def default_mode(preset: str, semi: bool) -> tuple[str, str]:
    """The mode of a run that names none, for its preset and supervision, and why (the log prints
    it). From image labels alone EM-Adapt everywhere: EM-Fixed's fixed biases let background take
    every pixel (the paper: 38.2 against 20.8). With strong images, ``voc`` takes the paper's
    EM-Fixed semi; the small network's presets take EM-Adapt semi, which measures above EM-Fixed
    semi on every seed of the built-in set's validation split (the README's results)."""
    if not semi:
        return "em-adapt", (
            "no --mode: from image labels alone, EM-Adapt (EM-Fixed's fixed biases let background take every pixel)"
        )
    if preset == "voc":
        return "em-fixed", "no --mode: with strong images, EM-Fixed semi (the paper's best semi-supervised setting)"
    return "em-adapt", (
        "no --mode: with strong images, EM-Adapt semi (on this preset's small network it measures above EM-Fixed semi)"
    )


def working_scale(root: str, split: str, crop_size: int, sample: int = 200) -> float:
    """The cpu preset's resolution rule: the factor that brings the median longer side of (up to
    ``sample`` of) the split's images to ``crop_size``, so a crop holds about a whole image; never
    an enlargement."""
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
