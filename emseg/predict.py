"""Predict segmentations for a folder of images: palette PNGs and side-by-side overlays.

    python -m emseg.predict --checkpoint runs/demo/checkpoint.pth --input photos/ --output preds/ [--crf]

For each image ``<name>.<ext>`` writes ``<name>.png`` (class indices, VOC palette) and
``<name>_overlay.jpg`` (the image | the prediction blended over it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch
from torch import nn

from .refine import CRFParams, add_crf_args, crf_params_from_args, crf_refine, make_crf

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def colorize(labels: np.ndarray) -> np.ndarray:
    """Class indices ``[H, W]`` -> RGB ``[H, W, 3]`` with the VOC palette (255 = cream border)."""
    from .data.io import voc_palette

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
def predict_image(model: nn.Module, image_rgb: np.ndarray, mean, std, device, crf=None) -> np.ndarray:
    """Labels ``[H, W]`` (uint8) for one RGB uint8 image."""
    from .evaluate import predict_batch

    x = torch.from_numpy(image_rgb).permute(2, 0, 1).float().div(255.0)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    logits = predict_batch(model, x[None].to(device))
    if crf is not None:
        labels = crf_refine(crf, logits.cpu(), torch.from_numpy(image_rgb).permute(2, 0, 1)[None].contiguous())
    else:
        labels = logits.argmax(1)
    return labels[0].cpu().numpy().astype(np.uint8)


@torch.no_grad()
def draw_validation_pictures(model, dataset, indices: Iterable[int], out: Path, device, crf=None) -> None:
    """Pictures of dataset samples: image | ground truth | prediction (| CRF prediction)."""
    from .data.io import write_mask_png
    from .evaluate import predict_batch

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m emseg.predict",
        description="Segment every image of a folder with a trained checkpoint; writes palette PNGs "
        "and side-by-side overlays (image | prediction).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint written by python -m emseg.train")
    p.add_argument("--input", required=True, help="folder of images (jpg, png, ...) or a single image")
    p.add_argument("--output", required=True, help="folder for <name>.png and <name>_overlay.jpg")
    p.add_argument("--device", default=None, help="cpu or cuda[:k]; default: cuda when available")
    p.add_argument("--crf", action="store_true", help="refine with the dense CRF")
    add_crf_args(p, "the checkpoint's training run")
    return p


def main(argv: list[str] | None = None) -> list[Path]:
    from tqdm import tqdm

    from .data.io import read_image, write_mask_png
    from .train import load_model_from_checkpoint

    parser = build_parser()
    args = parser.parse_args(argv)
    src = Path(args.input)
    if not src.exists():
        parser.error(f"--input {src}: no such file or folder")
    if not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    files = [src] if src.is_file() else sorted(f for f in src.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        parser.error(f"--input {src}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, train_args = load_model_from_checkpoint(args.checkpoint, device)
    crf = make_crf(crf_params_from_args(args, CRFParams(**train_args["crf"]))) if args.crf else None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in tqdm(files, desc="predict", dynamic_ncols=True):
        image = read_image(f)
        labels = predict_image(model, image, train_args["mean"], train_args["std"], device, crf)
        write_mask_png(out / f"{f.stem}.png", labels)
        write_rgb(out / f"{f.stem}_overlay.jpg", side_by_side([image, overlay(image, labels)]))
        written.append(out / f"{f.stem}.png")
    print(f"{len(written)} predictions written to {out}", file=sys.stderr)
    return written


if __name__ == "__main__":
    main()
