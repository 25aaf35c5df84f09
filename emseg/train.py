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
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .cli import run as run_cli
from .config import TrainConfig, config_from_args
from .crf import CRF, make_crf
from .data import EvalTransform, VOCSegmentation, collate
from .distributed import DistInfo
from .estep import IGNORE_INDEX, make_targets
from .evaluate import evaluate
from .metrics import ConfusionMatrix, MetricsLog
from .optim import update_teacher
from .outputs import release_output_dir, stopped_at
from .run import CLIPPED, ESTEP_CELLS, ESTEP_FG, Run, save, setup
from .stop import StopRequests, agreed_signal, ignore_in_worker
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
    if run.mode.online is not None:
        weak = target[~batch["strong"].to(target.device)]
        labelled = weak != IGNORE_INDEX
        run.window_counts[ESTEP_FG] += (labelled & (weak > 0)).sum()
        run.window_counts[ESTEP_CELLS] += labelled.sum()
    loss = segmentation_loss(scores, target, run.info)
    action = run.guard.check(float(run.info.sum_over_processes(loss.detach())) / run.info.world_size, it)
    run.optimizer.zero_grad(set_to_none=True)
    if action == "step":
        run.scaler.scale(loss).backward()
        if run.cfg.clip_grad > 0:
            run.scaler.unscale_(run.optimizer)
            norm = nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip_grad)
            run.window_counts[CLIPPED] += (norm > run.cfg.clip_grad).long()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        if run.teacher is not None:
            update_teacher(run.teacher, run.model, run.cfg.estep_teacher)
    elif action == "rollback":
        run.guard.restore(run.model, run.optimizer)
    run.scheduler.step()
    return loss.detach(), action == "step"


def train_steps(run: Run, start: int, end: int, metrics: MetricsLog, stop: StopRequests | None = None) -> float:
    """Iterations ``start..end-1`` with log rows and checkpoints; returns the training seconds of
    the whole run so far. The spike guard (:class:`emseg.optim.SpikeGuard`) skips or rolls back
    the steps whose loss runs away, and stops the run when that does not help. A stop signal
    (``stop``) ends the iteration, writes a checkpoint and raises :class:`Stopped`."""
    cfg, info = run.cfg, run.info
    run.net.train()
    t0 = time.time() - run.seconds_before
    data_iter = iter(run.data.loader)
    bar = tqdm(
        total=cfg.iterations,
        initial=start,
        desc=f"train {run.mode.name}",
        disable=not (cfg.progress and info.main),
        dynamic_ncols=True,
    )
    for it in range(start, end):
        done = it + 1
        loss, taken = train_step(run, next(data_iter), done)
        signum = agreed_signal(stop, info, run.device)
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
        if done % cfg.checkpoint_interval == 0 or done == end or signum:
            save(run, done, time.time() - t0)
            run.guard.snapshot(run.model, run.optimizer)
        if signum:
            raise stopped_at(signum, done, cfg.iterations, run.checkpoint_path, info.world_size)
    bar.close()
    return time.time() - t0


def log_row(run: Run, done: int, metrics: MetricsLog, bar, seconds: float) -> None:
    """One row of the log and metrics.csv: the mean loss of the window's steps, the learning rate,
    the window's clipped steps and the online E-step's foreground share of the weak images."""
    cfg = run.cfg
    lr = run.optimizer.param_groups[0]["lr"]
    mean_loss = float(run.running) / max(run.window, 1)
    bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}")
    if not (cfg.progress and run.info.main):
        clipped_steps, fg, cells = run.window_counts[[CLIPPED, ESTEP_FG, ESTEP_CELLS]].tolist()
        clipped = f"  clipped {clipped_steps}/{run.window}" if clipped_steps else ""
        estep = f"  E-step foreground {100 * fg / cells:.0f} %" if cells else ""
        log.info(f"it {done}/{cfg.iterations}  loss {mean_loss:.4f}  lr {lr:.2e}{estep}{clipped}")
    metrics.write(iteration=done, loss=mean_loss, lr=lr, seconds=round(seconds, 2))
    run.running.zero_()
    run.window = 0
    run.window_counts.zero_()


def validate(run: Run, crf: CRF | None = None) -> tuple[VOCSegmentation, ConfusionMatrix, ConfusionMatrix | None]:
    """Confusion matrices on the validation split (every world_size-th image per process, summed),
    also after refinement with ``crf`` when given."""
    cfg, info = run.cfg, run.info
    val = VOCSegmentation(
        cfg.data_root_resolved, cfg.val_split, transform=EvalTransform(cfg.mean, cfg.std), boxes=False
    )
    part = torch.utils.data.Subset(val, range(info.rank, len(val), info.world_size))
    # its own generator: validating must not draw from the training's random stream
    vloader = torch.utils.data.DataLoader(
        part,
        batch_size=cfg.eval_batch_size,
        num_workers=cfg.workers,
        collate_fn=collate,
        generator=torch.Generator(),
        worker_init_fn=ignore_in_worker,
    )
    cm, cm_crf = evaluate(
        run.model,
        vloader,
        run.data.dataset.num_classes,
        run.device,
        crf,
        amp=run.use_amp,
        progress=cfg.progress and info.main,
    )
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
    summary = {
        "checkpoint": str(run.checkpoint_path),
        "miou": cm.miou(),
        "start_miou": run.start_miou,
        "iou": cm.iou().tolist(),
        "train_seconds": train_seconds,
        "skipped_steps": run.guard.skipped,
        "rollbacks": run.guard.rollbacks,
        "pretraining": run.pretraining,
    }
    metrics.write(iteration=cfg.iterations, miou=cm.miou(), miou_crf=cm_crf.miou() if cm_crf else "")
    if not info.main:
        return summary
    log.info(f"\n{cfg.val_split} ({len(val)} images), mode {run.mode.name}:\n" + cm.table(list(val.class_names)))
    log.info(
        f"{cfg.val_split} mIoU {100 * cm.miou():.1f} %, start {100 * run.start_miou:.1f} % "
        f"({100 * (cm.miou() - run.start_miou):+.1f})"
    )
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
    else:
        log.info("no curves.png: matplotlib is not installed (pip install matplotlib)")
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
