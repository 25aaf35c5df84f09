"""A training run's state: the :class:`Run` the steps act on, built by :func:`setup` (processes,
outputs, data, model, optimiser, E-step network; restored from ``--resume``), and :func:`save`,
the checkpoint that holds all of it."""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import TRAINING_KEYS, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, check_resume, config_to_dict
from .crf import CRF, make_crf
from .data import check_split
from .distributed import DistInfo, init_distributed, setup_logging
from .estep import Mode, get_mode
from .models import build_model
from .optim import SpikeGuard, lr_factor, param_groups
from .outputs import check_resume_data, check_work_folders, claim_output_dir
from .pretrain import load_pretrained, pretrained_start_for
from .training_data import TrainingData, prepare_data, training_data

log = logging.getLogger("emseg")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: the entries of Run.window_counts
CLIPPED, ESTEP_FG, ESTEP_CELLS = range(3)


@dataclass
class Run:
    """What the training steps act on and a checkpoint holds."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    use_amp: bool
    mode: Mode
    data: TrainingData
    model: nn.Module
    net: nn.Module  #: the model, wrapped for DDP in a multi-process run
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    out: Path
    guard: SpikeGuard
    #: the E-step's network: a slowly updated average of ``model`` (--estep-teacher), or None (the
    #: E-step then reads the training forward's own scores)
    teacher: nn.Module | None
    estep_crf: CRF | None  #: the dense CRF that refines the E-step's labels (--estep-crf)
    #: the mean loss of the current log window is running / window (kept on the device)
    running: torch.Tensor
    #: the current log window's counters, kept on the device so that a step does not wait for
    #: them: steps whose gradient norm was clipped, and the online E-step's foreground and
    #: labelled cells of the weak images (this process's; a collapse to background shows as a
    #: falling share)
    window_counts: torch.Tensor  #: indexed by CLIPPED, ESTEP_FG, ESTEP_CELLS
    window: int = 0
    seconds_before: float = 0.0  #: training time of the invocations before a resume
    best_miou: float = -1.0  #: the best validation mIoU so far (best.pth holds its weights)
    start_miou: float | None = None  #: the validation mIoU of the start, before the first step
    data_fingerprint: str = ""  #: of the training data (a resumed run must train on the same)
    #: the pretrained start's path and health (image-label mAP against the prior's), when one was made
    pretraining: dict | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pth"


def setup(cfg: TrainConfig) -> tuple[Run, int]:
    """Processes, outputs, data, model and optimiser (restored from ``--resume``); returns the run
    and the iteration it starts at."""
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = init_distributed(device.type)
    if cfg.batch_size % info.world_size:
        raise ValueError(
            f"--batch-size {cfg.batch_size} must be a multiple of the number of processes ({info.world_size})"
        )
    if device.type == "cuda" and info.world_size > 1:
        device = torch.device("cuda", info.local_rank)
    use_amp = device.type == "cuda" if cfg.amp is None else (cfg.amp and device.type == "cuda")
    out = claim_output_dir(cfg, info)
    setup_logging(out, info)
    seed_everything(cfg.seed)

    mode = get_mode(cfg.mode)
    check_work_folders(cfg, fixed_labels=mode.fixed is not None)
    root = prepare_data(cfg, info)
    cfg.data_root_resolved = str(root)
    check_split(root, cfg.val_split, "--val-split", boxes=False)
    ckpt = load_checkpoint(cfg.resume, required=TRAINING_KEYS) if cfg.resume else None
    start = ckpt["iteration"] if ckpt else 0
    if ckpt:
        check_resume(cfg, ckpt)
    data = training_data(cfg, mode, root, info, start)
    fingerprint = data.dataset.fingerprint()
    if ckpt:
        check_resume_data(cfg, ckpt, fingerprint)
        saved = ckpt["sampler"]
        if (saved["batch_size"], saved["strong_per_batch"]) != (data.sampler.batch_size, data.sampler.strong_per_batch):
            raise ValueError(
                f"--resume: the checkpoint's batches ({saved}) differ from this run's; "
                "resume with the same --batch-size, --strong-share and number of processes"
            )
    model, pretraining = starting_model(cfg, data.dataset.num_classes, root, info, device, resumed=ckpt is not None)
    model = model.to(device)
    optimizer, scheduler, guard = optimisation(cfg, model)
    net = (
        nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if info.world_size > 1
        else model
    )
    online = mode.online is not None
    teacher = copy.deepcopy(model).eval().requires_grad_(False) if cfg.estep_teacher > 0 and online else None
    run = Run(
        cfg,
        info,
        device,
        use_amp,
        mode,
        data,
        model,
        net,
        optimizer,
        scheduler,
        torch.amp.GradScaler("cuda", enabled=use_amp),
        out,
        guard,
        teacher,
        estep_crf=make_crf(cfg.crf) if cfg.estep_crf and online else None,
        running=torch.zeros((), dtype=torch.float64, device=device),
        window_counts=torch.zeros(3, dtype=torch.int64, device=device),
        data_fingerprint=fingerprint,
        pretraining=pretraining,
    )
    if ckpt:
        restore(run, ckpt)
    guard.snapshot(model, optimizer)
    log.info(describe(run))
    return run, start


def starting_model(cfg: TrainConfig, num_classes: int, root, info, device, resumed: bool):
    """The network before its first step: built, then loaded from the pretrained start (made or
    found in the cache, used only where it learnt), from ``--init FILE`` or left random; with the
    pretraining's health (None where none was made). A resumed run's weights come later."""
    model = build_model(
        cfg.model,
        num_classes,
        pretrained=cfg.pretrained,
        width=cfg.width,
        dropout=cfg.dropout,
        context=cfg.context,
        input_scale=cfg.input_scale,
    )
    pretraining = None
    if not resumed and not cfg.pretrained and cfg.init == "pretrain":
        made = pretrained_start_for(cfg, root, info, device)
        pretraining = {"path": str(made.path), "map": made.map, "prior_map": made.prior, "learnt": made.learnt}
        if made.learnt:
            load_pretrained(model, made.path)
    elif not resumed and not cfg.pretrained and cfg.init != "scratch":
        load_pretrained(model, cfg.init)
    return model, pretraining


def describe(run: Run) -> str:
    """The log's first line about a run: its mode and why, its data, its model and schedule."""
    cfg, data, model = run.cfg, run.data, run.model
    reason = f"; {cfg.mode_reason}" if cfg.mode_reason else ""
    field = f" (receptive field {model.receptive_field} px)" if hasattr(model, "receptive_field") else ""
    scale = f", images x{cfg.input_scale:.3g}" if cfg.input_scale != 1 else ""
    processes = f" x{run.info.world_size}" if run.info.world_size > 1 else ""
    return (
        f"mode {run.mode.name} ({run.mode.summary}{reason}); {data.num_strong} strong + {data.num_weak} weak images, "
        f"{data.strong_per_batch}/{cfg.batch_size} strong per batch; preset {cfg.preset}; model {cfg.model}{field}"
        f"{scale}; {cfg.iterations} iterations on {run.device}{processes}{', amp' if run.use_amp else ''}"
    )


def optimisation(cfg: TrainConfig, model: nn.Module):
    """SGD with DeepLab's multipliers, its schedule (warm-up, step or poly, times the spike guard's
    learning-rate scale) and the guard."""
    optimizer = torch.optim.SGD(
        param_groups(model, cfg.lr, cfg.weight_decay, cfg.classifier_lr_mult), lr=cfg.lr, momentum=cfg.momentum
    )
    guard = SpikeGuard(cfg.spike_factor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda it: (
            guard.lr_scale
            * lr_factor(it, cfg.iterations, cfg.lr_policy, cfg.warmup, cfg.lr_step, cfg.lr_gamma, cfg.poly_power)
        ),
    )
    return optimizer, scheduler, guard


def restore(run: Run, ckpt: dict) -> None:
    """Everything a checkpoint holds back into the run (:func:`save` wrote it)."""
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    if run.teacher is not None:
        run.teacher.load_state_dict(ckpt["teacher"])
    rank = run.info.rank
    set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
    run.running.fill_(ckpt["loss_window"]["sum"])
    run.window = ckpt["loss_window"]["count"]
    run.seconds_before = ckpt["seconds"]
    run.best_miou = ckpt.get("best_miou", -1.0)
    run.start_miou = ckpt.get("start_miou")
    run.pretraining = ckpt.get("pretraining")
    run.guard.load_state_dict(ckpt["guard"])
    log.info(f"resumed from {run.cfg.resume} at iteration {ckpt['iteration']}")


def save(run: Run, it: int, seconds: float, path: Path | None = None) -> None:
    """Checkpoint after ``it`` iterations: model, optimiser, schedule, sampler position, every
    process's RNG state, the open log window and the run's arguments (written by the main
    process, atomically). Parameters that are no longer finite are never written."""
    if not bool(torch.stack([torch.isfinite(p).all() for p in run.model.parameters()]).all()):  # one read
        raise FloatingPointError(
            f"the network's parameters are not finite after iteration {it}; stopped "
            f"without overwriting {run.checkpoint_path} (lower --lr)"
        )
    rngs = [rng_state()]
    if run.info.world_size > 1:
        gathered = [None] * run.info.world_size
        dist.all_gather_object(gathered, rngs[0])
        rngs = gathered
    if not run.info.main:
        return
    # the position after ``it`` consumed steps (the loader prefetches, so not sampler.batch)
    epoch, batch = divmod(it, len(run.data.sampler))
    save_checkpoint(
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "sampler": dict(run.data.sampler.state_dict(), epoch=epoch, batch=batch),
            "rng": rngs,
            "iteration": it,
            "loss_window": {"sum": float(run.running), "count": run.window},
            "seconds": seconds,
            "best_miou": run.best_miou,
            "start_miou": run.start_miou,
            "pretraining": run.pretraining,
            "guard": run.guard.state_dict(),
            **({"teacher": run.teacher.state_dict()} if run.teacher is not None else {}),
            "num_classes": run.data.dataset.num_classes,
            "class_names": list(run.data.dataset.class_names),
            "args": config_to_dict(run.cfg),
            "data": run.data_fingerprint,
        },
        path or run.checkpoint_path,
    )
