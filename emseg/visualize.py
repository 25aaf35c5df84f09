"""Pictures of predictions: the VOC palette, overlays, side-by-side panels, validation pictures."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch

from .crf import CRF
from .data.io import voc_palette, write_mask_png
from .inference import crf_refine, predict_batch


def colorize(labels: np.ndarray) -> np.ndarray:
    """Class indices ``[H, W]`` -> RGB ``[H, W, 3]`` with the VOC palette (255 = cream border)."""
    return voc_palette()[labels.astype(np.uint8)]


def overlay(image_rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The prediction's colours blended over the image; background pixels stay as they were."""
    color = colorize(labels)
    blend = cv2.addWeighted(image_rgb, 1.0 - alpha, color, alpha, 0.0)
    keep = (labels == 0)[..., None]
    return np.where(keep, image_rgb, blend)


def side_by_side(panels: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """RGB panels of one height in a row, separated by white gaps."""
    h = panels[0].shape[0]
    sep = np.full((h, gap, 3), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for i, p in enumerate(panels):
        row += ([sep] if i else []) + [p]
    return cv2.hconcat(row)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"cannot write {path}")


@torch.no_grad()
def draw_validation_pictures(model, dataset, indices: Iterable[int], out: Path, device, crf: CRF | None = None) -> None:
    """Pictures of dataset samples: image | ground truth | prediction (| CRF prediction)."""
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    for i in indices:
        s = dataset[i]
        image = s["image_uint8"].permute(1, 2, 0).numpy()
        logits = predict_batch(model, s["image"][None].to(device)).cpu()
        pred = logits.argmax(1)[0].numpy().astype(np.uint8)
        panels = [image, overlay(image, s["mask"].numpy()), overlay(image, pred)]
        if crf is not None:
            refined = crf_refine(crf, logits, s["image_uint8"][None])[0].numpy().astype(np.uint8)
            panels.append(overlay(image, refined))
        write_mask_png(out / f"{s['id']}.png", pred)
        write_rgb(out / f"{s['id']}_overlay.jpg", side_by_side(panels))


def plot_curves(metrics_csv: Path, out: Path) -> bool:
    """``out``: the training loss and the validation mIoU over the iterations of a metrics.csv.
    Needs matplotlib; returns False (and draws nothing) without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    loss = [(int(r["iteration"]), float(r["loss"])) for r in rows if r.get("loss")]
    miou = [(int(r["iteration"]), 100 * float(r["miou"])) for r in rows if r.get("miou")]
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, points, title in ((ax_loss, loss, "training loss"), (ax_miou, miou, "validation mIoU %")):
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(points) < 20 else None)
        ax.set_xlabel("iteration")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True
