"""Train a segmentation network with hard EM from weak (image labels, boxes) or strong labels.

    python -m emseg.train                        # offline demo: synthetic data, small model, CPU
    python -m emseg.train --data-root VOCdevkit/VOC2012 --mode em-fixed --strong 1464 \
        --pretrained vgg16-397923af.pth          # the paper's setting (VOC defaults)
    torchrun --nproc_per_node 4 -m emseg.train ...   # several GPUs / nodes

One iteration: a batch (strong images with masks, weak ones with image labels or boxes) -> the
network's scores at output stride 8 -> targets (masks for strong images; the E-step of the mode, on
the detached scores, for weak ones; see :mod:`emseg.estep`) -> softmax cross-entropy of the unbiased
scores -> SGD. Bbox-Rect and Bbox-Seg estimate their labels once before training and cache them
(:mod:`emseg.data.fixed_labels`). The flags and presets are in :mod:`emseg.config`.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .cli import run as run_cli
from .checkpoint import TRAINING_KEYS, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, check_resume, config_from_args, config_to_dict
from .crf import CRF, make_crf
from .data import EvalTransform, VOCSegmentation, collate
from .distributed import DistInfo, init_distributed, setup_logging
from .estep import IGNORE_INDEX, Mode, get_mode, make_targets
from .evaluate import evaluate
from .metrics import ConfusionMatrix, MetricsLog
from .models import build_model
from .optim import SpikeGuard, lr_factor, param_groups
from .pretrain import load_pretrained, pretrained_start_for
from .training_data import TrainingData, prepare_data, training_data
from .visualize import draw_validation_pictures, plot_curves

log = logging.getLogger("emseg")


# ---------------------------------------------------------------------------------------------
# Loss and optimisation


def segmentation_loss(scores: torch.Tensor, target: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Cross-entropy averaged over the labelled pixels of the *global* batch.

    DDP averages gradients over processes; dividing each process's sum by the global pixel count
    (times the world size) makes that average the gradient of the global mean, so a run on k
    processes matches one process on the same global batch.
    """
    total = F.cross_entropy(scores.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (target != IGNORE_INDEX).sum().to(torch.float32)
    if info.world_size > 1:
        count = count.clone()
        dist.all_reduce(count)
    return total * info.world_size / count.clamp(min=1.0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# The run


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
    window: int = 0
    seconds_before: float = 0.0  #: training time of the invocations before a resume
    best_miou: float = -1.0  #: the best validation mIoU so far (best.pth holds its weights)
    start_miou: float | None = None  #: the validation mIoU of the start, before the first step
    clipped: int = 0  #: steps whose gradient norm was clipped in the current log window

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pth"


def setup(cfg: TrainConfig) -> tuple[Run, int]:
    """Processes, outputs, data, model and optimiser (restored from ``--resume``); returns the run
    and the iteration it starts at."""
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
    ckpt = load_checkpoint(cfg.resume, required=TRAINING_KEYS) if cfg.resume else None
    start = ckpt["iteration"] if ckpt else 0
    if ckpt:
        check_resume(cfg, ckpt)
    data = training_data(cfg, mode, root, info, start)
    if ckpt:
        saved = ckpt["sampler"]
        if (saved["batch_size"], saved["strong_per_batch"]) != (data.sampler.batch_size, data.sampler.strong_per_batch):
            raise ValueError(f"--resume: the checkpoint's batches ({saved}) differ from this run's; "
                             "resume with the same --batch-size, --strong-share and number of processes")
    model = build_model(cfg.model, data.dataset.num_classes, pretrained=cfg.pretrained, width=cfg.width,
                        dropout=cfg.dropout, context=cfg.context, input_scale=cfg.input_scale)
    if not ckpt and not cfg.pretrained and cfg.init != "scratch":
        load_pretrained(model, cfg.init if cfg.init != "pretrain" else pretrained_start_for(cfg, root, info, device))
    model = model.to(device)
    optimizer = torch.optim.SGD(param_groups(model, cfg.lr, cfg.weight_decay, cfg.classifier_lr_mult), lr=cfg.lr,
                                momentum=cfg.momentum)
    guard = SpikeGuard(cfg.spike_factor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: guard.lr_scale * lr_factor(
        it, cfg.iterations, cfg.lr_policy, cfg.warmup, cfg.lr_step, cfg.lr_gamma, cfg.poly_power))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"][info.rank] if info.rank < len(ckpt["rng"]) else ckpt["rng"][0])
        log.info(f"resumed from {cfg.resume} at iteration {start}")
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if info.world_size > 1 else model
    teacher = None
    if cfg.estep_teacher > 0 and mode.online is not None:
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        if ckpt:
            teacher.load_state_dict(ckpt["teacher"])
    estep_crf = make_crf(cfg.crf) if cfg.estep_crf and mode.online is not None else None
    run = Run(cfg, info, device, use_amp, mode, data, model, net, optimizer, scheduler, scaler, out, guard, teacher, estep_crf,
              running=torch.zeros((), dtype=torch.float64, device=device))
    if ckpt and "loss_window" in ckpt:
        run.running.fill_(ckpt["loss_window"]["sum"])
        run.window = ckpt["loss_window"]["count"]
        run.seconds_before = ckpt["seconds"]
        run.best_miou = ckpt.get("best_miou", -1.0)
        run.start_miou = ckpt.get("start_miou")
        guard.load_state_dict(ckpt["guard"])
    guard.snapshot(model, optimizer)
    log.info(
        f"mode {mode.name} ({mode.summary}); {data.num_strong} strong + {data.num_weak} weak images, "
        f"{data.strong_per_batch}/{cfg.batch_size} strong per batch; preset {cfg.preset}; model {cfg.model}"
        f"{f' (receptive field {model.receptive_field} px)' if hasattr(model, 'receptive_field') else ''}"
        f"{f', images x{cfg.input_scale:.3g}' if cfg.input_scale != 1 else ''}; {cfg.iterations} iterations "
        f"on {device}{' x' + str(info.world_size) if info.world_size > 1 else ''}{', amp' if use_amp else ''}"
    )
    return run, start


def save(run: Run, it: int, seconds: float, path: Path | None = None) -> None:
    """Checkpoint after ``it`` iterations: model, optimiser, schedule, sampler position, every
    process's RNG state, the open log window and the run's arguments (written by the main
    process, atomically). Parameters that are no longer finite are never written."""
    if not bool(torch.stack([torch.isfinite(p).all() for p in run.model.parameters()]).all()):  # one read
        raise FloatingPointError(f"the network's parameters are not finite after iteration {it}; stopped "
                                 f"without overwriting {run.checkpoint_path} (lower --lr)")
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
            "guard": run.guard.state_dict(),
            **({"teacher": run.teacher.state_dict()} if run.teacher is not None else {}),
            "num_classes": run.data.dataset.num_classes,
            "class_names": list(run.data.dataset.class_names),
            "args": config_to_dict(run.cfg),
        },
        path or run.checkpoint_path,
    )


def train_step(run: Run, batch: dict, it: int) -> tuple[torch.Tensor, bool]:
    """One EM iteration (``it`` counts from 1): scores, E-step targets on the detached scores, loss,
    and the SGD step with its gradient clipped, unless the spike guard skips it or rolls back."""
    image = batch["image"].to(run.device, non_blocking=True)
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.use_amp):
        scores = run.net(image)
        if run.teacher is not None:
            with torch.no_grad():
                estep_scores = run.teacher(image)
        else:
            estep_scores = scores.detach()
    target = make_targets(run.mode, estep_scores.float(), batch, run.cfg.estep, run.model.output_stride, run.estep_crf)
    loss = segmentation_loss(scores, target, run.info)
    action = run.guard.check(float(run.info.sum_over_processes(loss.detach())) / run.info.world_size, it)
    run.optimizer.zero_grad(set_to_none=True)
    if action == "step":
        run.scaler.scale(loss).backward()
        if run.cfg.clip_grad > 0:
            run.scaler.unscale_(run.optimizer)
            norm = nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip_grad)
            run.clipped += int(norm > run.cfg.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.teacher is not None:
            update_teacher(run.teacher, run.model, run.cfg.estep_teacher)
    elif action == "rollback":
        run.guard.restore(run.model, run.optimizer)
    run.scheduler.step()
    return loss.detach(), action == "step"


@torch.no_grad()
def update_teacher(teacher: nn.Module, model: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * model, parameter by parameter."""
    for t, p in zip(teacher.parameters(), model.parameters()):
        t.lerp_(p, 1.0 - decay)


def train_steps(run: Run, start: int, end: int, metrics: MetricsLog) -> float:
    """Iterations ``start..end-1`` with log rows and checkpoints; returns the training seconds of
    the whole run so far. The spike guard (:class:`emseg.optim.SpikeGuard`) skips or rolls back
    the steps whose loss runs away, and stops the run when that does not help."""
    cfg, info = run.cfg, run.info
    run.net.train()
    t0 = time.time() - run.seconds_before
    data_iter = iter(run.data.loader)
    bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {run.mode.name}", disable=not (cfg.progress and info.main), dynamic_ncols=True)
    for it in range(start, end):
        done = it + 1
        loss, taken = train_step(run, next(data_iter), done)
        if taken:  # the log's mean is over the steps taken; a skipped spike is logged on its own
            run.running += loss.double() / info.world_size
            run.window += 1
        bar.update(1)
        if done % cfg.log_interval == 0 or done == cfg.iterations:
            log_row(run, done, metrics, bar, time.time() - t0)
        if cfg.eval_interval and done % cfg.eval_interval == 0 and done < cfg.iterations:
            _, cm, _ = validate(run)
            metrics.write(iteration=done, miou=cm.miou())
            keep_best(run, done, cm.miou(), time.time() - t0)
            log.info(f"it {done}/{cfg.iterations}  {cfg.val_split} mIoU {100 * cm.miou():.1f} %")
            run.net.train()
        if done % cfg.checkpoint_interval == 0 or done == end:
            save(run, done, time.time() - t0)
            run.guard.snapshot(run.model, run.optimizer)
    bar.close()
    return time.time() - t0


def log_row(run: Run, done: int, metrics: MetricsLog, bar, seconds: float) -> None:
    """One row of the log and metrics.csv: the mean loss of the window's steps, the learning rate,
    and the window's clipped steps."""
    cfg = run.cfg
    lr = run.optimizer.param_groups[0]["lr"]
    mean_loss = float(run.running) / max(run.window, 1)
    bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}")
    if not (cfg.progress and run.info.main):
        clipped = f"  clipped {run.clipped}/{run.window}" if run.clipped else ""
        log.info(f"it {done}/{cfg.iterations}  loss {mean_loss:.4f}  lr {lr:.2e}{clipped}")
    metrics.write(iteration=done, loss=mean_loss, lr=lr, seconds=round(seconds, 2))
    run.running.zero_()
    run.window = 0
    run.clipped = 0


def validate(run: Run, crf: CRF | None = None) -> tuple[VOCSegmentation, ConfusionMatrix, ConfusionMatrix | None]:
    """Confusion matrices on the validation split (every world_size-th image per process, summed),
    also after refinement with ``crf`` when given."""
    cfg, info = run.cfg, run.info
    val = VOCSegmentation(cfg.data_root_resolved, cfg.val_split, transform=EvalTransform(cfg.mean, cfg.std))
    part = torch.utils.data.Subset(val, range(info.rank, len(val), info.world_size))
    # its own generator: validating must not draw from the training's random stream
    vloader = torch.utils.data.DataLoader(part, batch_size=cfg.eval_batch_size, num_workers=cfg.workers,
                                          collate_fn=collate, generator=torch.Generator())
    cm, cm_crf = evaluate(run.model, vloader, run.data.dataset.num_classes, run.device, crf, amp=run.use_amp,
                          progress=cfg.progress and info.main)
    return val, cm, cm_crf


def evaluate_start(run: Run, metrics: MetricsLog) -> None:
    """The validation mIoU of the network the run starts from, before the first step (row 0 of
    metrics.csv): what the final figure is measured against."""
    _, cm, _ = validate(run)
    run.start_miou = cm.miou()
    metrics.write(iteration=0, miou=run.start_miou)
    log.info(f"start: {run.cfg.val_split} mIoU {100 * run.start_miou:.1f} % before the first step")
    run.net.train()


def keep_best(run: Run, it: int, miou: float, seconds: float) -> None:
    """best.pth beside checkpoint.pth: the weights of the best validation mIoU so far."""
    if miou > run.best_miou:
        run.best_miou = miou
        save(run, it, seconds, run.out / "best.pth")


def final_evaluation(run: Run, metrics: MetricsLog, train_seconds: float) -> dict:
    """mIoU on the validation split, with the CRF when asked, plus the pictures, curves.png and
    summary.json; returns the summary."""
    cfg, info, out = run.cfg, run.info, run.out
    crf = make_crf(cfg.crf) if cfg.eval_crf else None
    val, cm, cm_crf = validate(run, crf)
    if cfg.eval_interval:
        keep_best(run, cfg.iterations, cm.miou(), train_seconds)
    summary = {"checkpoint": str(run.checkpoint_path), "miou": cm.miou(), "start_miou": run.start_miou,
               "iou": cm.iou().tolist(), "train_seconds": train_seconds, "skipped_steps": run.guard.skipped,
               "rollbacks": run.guard.rollbacks}
    metrics.write(iteration=cfg.iterations, miou=cm.miou(), miou_crf=cm_crf.miou() if cm_crf else "")
    if not info.main:
        return summary
    log.info(f"\n{cfg.val_split} ({len(val)} images), mode {run.mode.name}:\n" + cm.table(list(val.class_names)))
    log.info(f"{cfg.val_split} mIoU {100 * cm.miou():.1f} %, start {100 * run.start_miou:.1f} % "
             f"({100 * (cm.miou() - run.start_miou):+.1f})")
    if cm_crf is not None:
        summary["miou_crf"] = cm_crf.miou()
        log.info("\nwith dense CRF:\n" + cm_crf.table(list(val.class_names)))
    if cfg.num_pictures > 0:
        pics = out / "pictures"
        draw_validation_pictures(run.model, val, range(min(cfg.num_pictures, len(val))), pics, run.device, crf)
        summary["pictures"] = str(pics)
        log.info(f"pictures (image | ground truth | prediction): {pics}")
    if cfg.eval_interval:
        summary.update(best_miou=run.best_miou, best_checkpoint=str(out / "best.pth"))
        log.info(f"best {cfg.val_split} mIoU {100 * run.best_miou:.1f} %: {out / 'best.pth'}")
    if plot_curves(metrics.path, out / "curves.png"):  # each row is flushed as it is written
        summary["curves"] = str(out / "curves.png")
        log.info(f"loss and mIoU curves: {out / 'curves.png'}")
    log.info(f"checkpoint: {run.checkpoint_path}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def train(cfg: TrainConfig) -> dict:
    """Run training (and the final evaluation); returns a summary dict (rank 0 has the metrics)."""
    run, start = setup(cfg)
    metrics = MetricsLog(run.out, run.info.main, resume_at=start if cfg.resume else None)
    if start == 0:
        evaluate_start(run, metrics)
    end = cfg.iterations if cfg.stop_after is None else min(cfg.iterations, start + cfg.stop_after)
    train_seconds = train_steps(run, start, end, metrics)
    ckpt_path = run.checkpoint_path
    log.info(f"trained {end - start} iterations in {train_seconds - run.seconds_before:.0f} s; checkpoint: {ckpt_path}")
    if end < cfg.iterations:
        log.info(f"stopped at iteration {end} of {cfg.iterations} (--stop-after); continue with --resume {ckpt_path}")
        summary = {"checkpoint": str(ckpt_path), "iteration": end, "train_seconds": train_seconds}
    else:
        summary = final_evaluation(run, metrics, train_seconds)
    metrics.close()
    if run.info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(argv: list[str] | None = None) -> dict:
    return train(config_from_args(argv))


if __name__ == "__main__":
    run_cli(main, "python -m emseg.train")
