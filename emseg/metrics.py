"""Confusion matrix, IoU and the per-class table (as in torchvision's segmentation references), and
the training run's metrics.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor


class ConfusionMatrix:
    """Accumulates ``mat[true, pred]`` over pixels whose true label is in ``[0, num_classes)``;
    every other label (255 = ignore) is skipped."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, target: Tensor, pred: Tensor) -> None:
        n = self.num_classes
        target = target.flatten().to(torch.int64)
        pred = pred.flatten().to(torch.int64)
        keep = (target >= 0) & (target < n)
        pred = pred[keep]
        lo, hi = (int(v) for v in torch.aminmax(pred)) if pred.numel() else (0, 0)
        if lo < 0 or hi >= n:
            bad = hi if hi >= n else lo
            raise ValueError(
                f"a prediction is class {bad}, outside the {n} classes 0..{n - 1} of the confusion "
                "matrix: the network predicts other classes than the data set has"
            )
        idx = n * target[keep] + pred
        counts = torch.bincount(idx, minlength=n * n).reshape(n, n)
        self.mat += counts.to(self.mat.device)

    def reduce_from_all_processes(self) -> None:
        """Sum the matrices of all DDP processes (a no-op without torch.distributed)."""
        if dist.is_available() and dist.is_initialized():
            mat = self.mat.to(_dist_device())
            dist.all_reduce(mat)
            self.mat = mat.cpu()

    def iou(self) -> Tensor:
        """Per-class IoU as float64; NaN for a class absent from both target and prediction."""
        mat = self.mat.double()
        tp = mat.diag()
        union = mat.sum(0) + mat.sum(1) - tp
        return tp / union  # 0/0 -> NaN: the class is left out of the mean

    def miou(self) -> float:
        return float(torch.nanmean(self.iou()))

    def pixel_accuracy(self) -> float:
        total = self.mat.sum()
        return float(self.mat.diag().sum() / total) if total > 0 else float("nan")

    def table(self, class_names: list[str] | None = None) -> str:
        """A readable per-class IoU table in percent, ending with the mean."""
        return format_iou_table(self.iou(), class_names, self.pixel_accuracy())


def format_iou_table(iou: Tensor, class_names: list[str] | None = None, pixel_acc: float | None = None) -> str:
    names = list(class_names) if class_names else [str(i) for i in range(len(iou))]
    width = max(len("mean IoU"), *(len(n) for n in names))
    lines = [f"{'class':<{width}}  IoU %", f"{'-' * width}  -----"]
    for name, v in zip(names, iou.tolist()):
        lines.append(f"{name:<{width}}  " + ("  n/a" if v != v else f"{100 * v:5.1f}"))
    lines.append(f"{'-' * width}  -----")
    lines.append(f"{'mean IoU':<{width}}  {100 * float(torch.nanmean(iou)):5.1f}")
    if pixel_acc is not None:
        lines.append(f"{'pixel acc':<{width}}  {100 * pixel_acc:5.1f}")
    return "\n".join(lines)


def _dist_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class MetricsLog:
    """metrics.csv (one row per log interval and per evaluation), and TensorBoard when installed.

    ``resume_at``: the iteration a resumed run continues from. Rows the interrupted run wrote
    after its checkpoint (and its evaluation rows) are dropped, so the file reads as if the run
    had never stopped.
    """

    COLUMNS = ["iteration", "loss", "lr", "seconds", "miou", "miou_crf"]

    def __init__(self, out: Path, enabled: bool, resume_at: int | None = None):
        self.enabled = enabled
        self.path = out / "metrics.csv"
        self.tb = None
        if enabled:
            kept = self._rows_up_to(resume_at) if resume_at is not None else None
            if kept is not None or not self.path.exists() or self.path.stat().st_size == 0:
                tmp = self.path.with_suffix(".csv.tmp")
                with open(tmp, "w", newline="") as f:
                    writer = csv.DictWriter(f, self.COLUMNS)
                    writer.writeheader()
                    writer.writerows(kept or [])
                tmp.replace(self.path)  # the header is on disk before the first row
            self.file = open(self.path, "a", newline="")
            self.writer = csv.DictWriter(self.file, self.COLUMNS)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # tensorboard is optional
                self.tb = None

    def _rows_up_to(self, iteration: int) -> list[dict] | None:
        if not self.path.exists():
            return None
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        return [r for r in rows if r.get("iteration", "").isdigit() and int(r["iteration"]) <= iteration]

    def write(self, **row) -> None:
        if not self.enabled:
            return
        self.writer.writerow({k: row.get(k, "") for k in self.COLUMNS})
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "iteration" and v not in ("", None):
                    self.tb.add_scalar(k, v, row["iteration"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()
