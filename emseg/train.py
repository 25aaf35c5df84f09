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
from .data import EvalTransform, VOCSegmentation, check_split, collate
from .distributed import DistInfo, init_distributed, setup_logging
from .estep import IGNORE_INDEX, Mode, get_mode, make_targets
from .evaluate import evaluate
from .metrics import ConfusionMatrix, MetricsLog
from .models import build_model
from .outputs import check_resume_data, check_work_folders, claim_output_dir, release_output_dir, stopped_at
from .pretrain import load_pretrained, pretrained_start_for
from .stop import StopRequests, agreed_signal, ignore_in_worker
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
    #: the mean loss of the current log window is running / window (kept on the device)
    running: torch.Tensor
    window: int = 0
    seconds_before: float = 0.0  #: training time of the invocations before a resume
    best_miou: float = -1.0  #: the best validation mIoU so far (best.pth holds its weights)
    data_fingerprint: str = ""  #: of the training data (a resumed run must train on the same)

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
    out = claim_output_dir(cfg, info)
    setup_logging(out, info)
    seed_everything(cfg.seed)

    mode = get_mode(cfg.mode)
    check_work_folders(cfg, fixed_labels=mode.fixed is not None)
    root = prepare_data(cfg, info)
    cfg.data_root_resolved = str(root)
    check_split(root, cfg.val_split, "--val-split")
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
            raise ValueError(f"--resume: the checkpoint's batches ({saved}) differ from this run's; "
                             "resume with the same --batch-size, --strong-share and number of processes")
    model = build_model(cfg.model, data.dataset.num_classes, pretrained=cfg.pretrained, width=cfg.width,
                        dropout=cfg.dropout, context=cfg.context, input_scale=cfg.input_scale)
    if not ckpt and not cfg.pretrained and cfg.init != "scratch":
        load_pretrained(model, cfg.init if cfg.init != "pretrain" else pretrained_start_for(cfg, root, info, device))
    model = model.to(device)
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
    run = Run(cfg, info, device, use_amp, mode, data, model, net, optimizer, scheduler, scaler, out,
              running=torch.zeros((), dtype=torch.float64, device=device), data_fingerprint=fingerprint)
    if ckpt and "loss_window" in ckpt:
        run.running.fill_(ckpt["loss_window"]["sum"])
        run.window = ckpt["loss_window"]["count"]
        run.seconds_before = ckpt["seconds"]
        run.best_miou = ckpt.get("best_miou", -1.0)
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
            "num_classes": run.data.dataset.num_classes,
            "class_names": list(run.data.dataset.class_names),
            "args": config_to_dict(run.cfg),
            "data": run.data_fingerprint,
        },
        path or run.checkpoint_path,
    )


def train_step(run: Run, batch: dict) -> torch.Tensor:
    """One EM iteration: scores, E-step targets on the detached scores, loss, SGD step."""
    image = batch["image"].to(run.device, non_blocking=True)
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.use_amp):
        scores = run.net(image)
    target = make_targets(run.mode, scores.detach().float(), batch, run.cfg.estep, run.model.output_stride)
    loss = segmentation_loss(scores, target, run.info)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return loss.detach()


def train_steps(run: Run, start: int, end: int, metrics: MetricsLog, stop: StopRequests | None = None) -> float:
    """Iterations ``start..end-1`` with log rows and checkpoints; returns the training seconds of
    the whole run so far. A loss that is not finite stops the run at the next log row or
    checkpoint, before anything is written, naming the iteration. A stop signal (``stop``) ends
    the iteration, writes a checkpoint and raises :class:`Stopped`."""
    cfg, info = run.cfg, run.info
    run.net.train()
    t0 = time.time() - run.seconds_before
    # The running loss and the first non-finite iteration stay on the device: reading them back
    # every step would synchronise the GPU each iteration; they are read at log and checkpoint
    # time only.
    bad_at = torch.zeros((), dtype=torch.int64, device=run.device)
    data_iter = iter(run.data.loader)
    bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {run.mode.name}", disable=not (cfg.progress and info.main), dynamic_ncols=True)
    for it in range(start, end):
        loss = train_step(run, next(data_iter))
        run.running += loss.double() / info.world_size
        run.window += 1
        bad_at = torch.where((bad_at == 0) & ~torch.isfinite(loss), it + 1, bad_at)
        bar.update(1)
        done = it + 1
        signum = agreed_signal(stop, info, run.device)
        log_row = done % cfg.log_interval == 0 or done == cfg.iterations
        checkpoint = done % cfg.checkpoint_interval == 0 or done == end or bool(signum)
        if (log_row or checkpoint) and (bad := int(info.max_over_processes(bad_at))):
            raise FloatingPointError(f"the loss is not finite at iteration {bad}; stopped without writing a "
                                     f"checkpoint (the last good one, if any: {run.checkpoint_path}); lower --lr")
        if log_row:
            lr = run.optimizer.param_groups[0]["lr"]
            mean_loss = float(run.running) / run.window
            bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}")
            if not (cfg.progress and info.main):
                log.info(f"it {done}/{cfg.iterations}  loss {mean_loss:.4f}  lr {lr:.2e}")
            metrics.write(iteration=done, loss=mean_loss, lr=lr, seconds=round(time.time() - t0, 2))
            run.running.zero_()
            run.window = 0
        if cfg.eval_interval and done % cfg.eval_interval == 0 and done < cfg.iterations:
            _, cm, _ = validate(run)
            metrics.write(iteration=done, miou=cm.miou())
            keep_best(run, done, cm.miou(), time.time() - t0)
            log.info(f"it {done}/{cfg.iterations}  {cfg.val_split} mIoU {100 * cm.miou():.1f} %")
            run.net.train()
        if checkpoint:
            save(run, done, time.time() - t0)
        if signum:
            raise stopped_at(signum, done, cfg.iterations, run.checkpoint_path, info.world_size)
    bar.close()
    return time.time() - t0


def validate(run: Run, crf: CRF | None = None) -> tuple[VOCSegmentation, ConfusionMatrix, ConfusionMatrix | None]:
    """Confusion matrices on the validation split (every world_size-th image per process, summed),
    also after refinement with ``crf`` when given."""
    cfg, info = run.cfg, run.info
    val = VOCSegmentation(cfg.data_root_resolved, cfg.val_split, transform=EvalTransform(cfg.mean, cfg.std))
    part = torch.utils.data.Subset(val, range(info.rank, len(val), info.world_size))
    # its own generator: validating must not draw from the training's random stream
    vloader = torch.utils.data.DataLoader(part, batch_size=cfg.eval_batch_size, num_workers=cfg.workers,
                                          collate_fn=collate, generator=torch.Generator(), worker_init_fn=ignore_in_worker)
    cm, cm_crf = evaluate(run.model, vloader, run.data.dataset.num_classes, run.device, crf, amp=run.use_amp,
                          progress=cfg.progress and info.main)
    return val, cm, cm_crf


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
    summary = {"checkpoint": str(run.checkpoint_path), "miou": cm.miou(), "iou": cm.iou().tolist(), "train_seconds": train_seconds}
    metrics.write(iteration=cfg.iterations, miou=cm.miou(), miou_crf=cm_crf.miou() if cm_crf else "")
    if not info.main:
        return summary
    log.info(f"\n{cfg.val_split} ({len(val)} images), mode {run.mode.name}:\n" + cm.table(list(val.class_names)))
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
    end = cfg.iterations if cfg.stop_after is None else min(cfg.iterations, start + cfg.stop_after)
    with StopRequests() as stop:
        train_seconds = train_steps(run, start, end, metrics, stop)
    ckpt_path = run.checkpoint_path
    log.info(f"trained {end - start} iterations in {train_seconds - run.seconds_before:.0f} s; checkpoint: {ckpt_path}")
    if end < cfg.iterations:
        log.info(f"stopped at iteration {end} of {cfg.iterations} (--stop-after); continue with --resume {ckpt_path}")
        summary = {"checkpoint": str(ckpt_path), "iteration": end, "train_seconds": train_seconds}
    else:
        summary = final_evaluation(run, metrics, train_seconds)
    metrics.close()
    release_output_dir(run.out)
    if run.info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(argv: list[str] | None = None) -> dict:
    return train(config_from_args(argv))


if __name__ == "__main__":
    run_cli(main, "python -m emseg.train")
