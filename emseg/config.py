"""The training run's configuration: :class:`TrainConfig`, the command line, and how they meet.

Every setting's default is written once, in :class:`TrainConfig` (the built-in synthetic set's
recipe) or :class:`emseg.estep.EStepConfig` (the paper's E-step); a preset
(:data:`emseg.presets.PRESETS`) names only what it changes, for every mode or for one. A run's
settings are those defaults, then its preset's, then the flags given (:func:`config_from_args`:
parse, merge, check; bad values end in ``parser.error``, exit code 2). The dense CRF's ``--crf-*``
flags (:func:`emseg.cli.add_crf_args`) are shared with the evaluation and prediction CLIs.
"""

from __future__ import annotations

import argparse
import logging
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
from .config_checks import (
    check_crop_memory,
    check_numbers,
    check_paths,
    check_split,
    check_start,
    check_supervision,
    has_list,
)
from .config_flags import FLAGS
from .crf import CRFParams
from .data.io import read_id_list
from .data.synthetic import SYNTHETIC_DEFAULTS
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .data.voc import find_list
from .estep import EStepConfig
from .models import context_for_crop
from .presets import PRESETS, cpu_iterations, default_mode, working_scale

log = logging.getLogger("emseg")


def small_image_crf() -> CRFParams:
    """DeepLab's VOC CRF with its spatial widths scaled to 64-pixel images (VOC's are about 500)."""
    return CRFParams(bi_xy_std=16.0, pos_xy_std=1.0)


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the checkpoint as a plain dict. The defaults are the
    built-in set's recipe, the ``synthetic`` preset."""

    preset: str = "synthetic"
    data_root: str | None = None
    synthetic_dir: str = "data/synthetic-voc"
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
    context: tuple[int, int] | None = None  #: None: from the crop (models.context_for_crop)
    pretrain_split: str | None = None
    pretrain_iterations: int = 1500
    pretrain_cache: str = "data/pretrain-cache"
    batch_size: int = 8
    crop_size: int = 64
    input_scale: float = 1.0
    scale_min: float = 0.75
    scale_max: float = 1.25
    iterations: int = 1500
    lr: float = 1e-2
    classifier_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_policy: str = "poly"
    warmup: int = 100
    clip_grad: float = 10.0
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
    crf: CRFParams = field(default_factory=small_image_crf)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    label_cache: str = "data/label-cache"
    stop_after: int | None = None
    dropout: float | None = None
    data_root_resolved: str = ""  #: filled in by prepare_data


# ---------------------------------------------------------------------------------------------
# Command line: the flags are emseg.config_flags.FLAGS; an unset flag is None, and the help shows
# the default it takes (default_text).

#: the cpu preset's rules for the settings it fits to the data (Preset.fit_to_data)
_FITTED = {
    "input_scale": "the crop size over the median longer side of the training images",
    "iterations": "30 passes over the training list, 1500 to 6000",
}


def base_settings() -> dict:
    """Every setting's default before a preset: TrainConfig's fields with EStepConfig's flat
    beside them (``estep`` itself left out)."""
    base = TrainConfig()
    values = {f.name: getattr(base, f.name) for f in fields(TrainConfig) if f.name != "estep"}
    return values | asdict(base.estep)


def settings_for(preset: str, mode: str) -> dict:
    """The defaults of a run of ``mode`` under ``preset``: TrainConfig's and EStepConfig's, then the
    preset's changes, then its changes for the mode."""
    return base_settings() | PRESETS[preset].settings | PRESETS[preset].by_mode.get(mode, {})


def default_text(dest: str) -> str:
    """The help's account of a setting's default: the base value, the modes and presets that
    change it ('' for settings whose help says it)."""
    base = base_settings().get(dest)
    if base is None or dest in ("mode", "preset"):
        return ""
    parts = [f"default: {base}"]
    changed = {}  # value -> where
    for name, preset in PRESETS.items():
        for mode, values in preset.by_mode.items():
            if dest in values:
                changed.setdefault(values[dest], {}).setdefault(mode, []).append(name)
        if preset.fit_to_data and dest in _FITTED:
            parts.append(f"--preset {name}: {_FITTED[dest]}")
        elif dest in preset.settings:
            parts.append(f"--preset {name}: {preset.settings[dest]}")
    for value, modes in changed.items():
        presets = sorted({p for names in modes.values() for p in names})
        parts.append(f"{', '.join(modes)} under {' and '.join(presets)}: {value}")
    if base is False and len(parts) == 1:  # a switch that is off unless given
        return ""
    return f" ({'; '.join(parts)})"


def build_parser(prog: str = "python -m emseg.train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Weakly-/semi-supervised semantic segmentation with hard EM (Papandreou et al., "
        "ICCV 2015). With no arguments: builds a synthetic VOC-layout data set, pretrains a small "
        "network on image labels (cached), trains it with EM-Adapt from image labels alone on the CPU, "
        "evaluates it and writes pictures.",
    )
    for group, flags in FLAGS.items():
        g = p.add_argument_group(group)
        for flag, keywords, help_text in flags:
            dest = flag[2:].replace("-", "_")
            g.add_argument(flag, default=None, help=help_text + default_text(dest), **keywords)
    add_crf_args(p, "the preset (synthetic and cpu: scaled to 64-pixel images; voc: DeepLab-LargeFOV's)")
    return p


def config_from_args(argv: list[str] | None = None, prog: str = "python -m emseg.train") -> TrainConfig:
    """Parse, merge (defaults, preset, flags) and check the command line."""
    parser = build_parser(prog)
    parsed = parser.parse_args(argv)
    check_finite_flags(parser, parsed)
    preset = choose_preset(parser, parsed)
    a = merge(preset, parsed)
    check(parser, a)
    fit_to_data(parser, a, preset, parsed)
    values = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if hasattr(a, f.name)}
    values.update(
        preset=preset,
        progress=bars_wanted(bool(parsed.no_progress)),
        estep=EStepConfig(**{f.name: getattr(a, f.name) for f in fields(EStepConfig)}),
        crf=crf_params_from_args(parsed, settings_for(preset, a.mode)["crf"]),
        data_root_resolved=str(Path(a.synthetic_dir)) if not a.data_root else str(a.data_root),
    )
    check_crf_params(parser, values["crf"])
    return TrainConfig(**values)


def choose_preset(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> str:
    if parsed.preset:
        return parsed.preset
    if parsed.data_root:
        return "voc" if resolve_device(parser, parsed.device).type == "cuda" else "cpu"
    return "synthetic"


def merge(preset: str, parsed: argparse.Namespace) -> argparse.Namespace:
    """The run's settings: its mode's defaults under ``preset`` with the flags given over them;
    ``mode`` from the supervision when not given, ``mode_reason`` saying which."""
    given = {k: v for k, v in vars(parsed).items() if v is not None}
    if "mode" in given:
        mode, reason = given["mode"], "--mode given"
    else:
        mode, reason = default_mode(preset, bool(given.get("strong") or given.get("strong_list")))
    values = settings_for(preset, mode)
    values.update({k: v for k, v in given.items() if k in values})
    values.update(mode=mode, mode_reason=reason)
    return argparse.Namespace(**values)


def check(parser: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every setting in range, every file named there (``a.pretrained``, ``a.context`` resolved)."""
    err = parser.error
    check_supervision(err, a)
    check_numbers(err, a)
    check_start(err, a)
    check_paths(err, a)
    if a.context is not None:
        if a.model != "small":
            err("--context sets the small model's dilations: use it with --model small")
        a.context = parse_context(parser, a.context)
    elif a.model == "small":
        a.context = context_for_crop(a.crop_size)
    resolve_device(parser, a.device)


def fit_to_data(parser: argparse.ArgumentParser, a: argparse.Namespace, preset: str, parsed) -> None:
    """What depends on the data root's lists: VOC 2012 without SBD trains on 'train', the splits
    must exist, and a ``fit_to_data`` preset sets the iterations and the input scale from the
    training list unless they were given."""
    err = parser.error
    if a.data_root and parsed.train_split is None and a.train_split == "train_aug":
        if not has_list(a.data_root, "train_aug") and has_list(a.data_root, "train"):
            log.warning(f"emseg: {a.data_root} has no train_aug list (SBD's augmented set): training on 'train'")
            a.train_split = "train"
    for flag, split in (("--train-split", a.train_split), ("--val-split", a.val_split)):
        check_split(err, flag, split, a.data_root)
    if PRESETS[preset].fit_to_data and a.data_root:
        if parsed.iterations is None:
            a.iterations = cpu_iterations(len(read_id_list(find_list(a.data_root, a.train_split))), a.batch_size)
        if parsed.input_scale is None:
            a.input_scale = working_scale(a.data_root, a.train_split, a.crop_size)
    if not 0 < a.input_scale <= 4:
        err(f"--input-scale must be in (0, 4], got {a.input_scale}")
    check_crop_memory(err, a.batch_size, a.crop_size)


# ---------------------------------------------------------------------------------------------
# Resuming


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
        "synthetic_dir",
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
