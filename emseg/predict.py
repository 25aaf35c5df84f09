"""Predict segmentations for a folder of images: palette PNGs and side-by-side overlays.

    python -m emseg.predict --checkpoint runs/demo/checkpoint.pth --input photos/ --output preds/ [--crf]

For each image ``<name>.<ext>`` writes ``<name>.png`` (class indices, VOC palette) and
``<name>_overlay.jpg`` (the image | the prediction blended over it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .cli import add_crf_args, bars_wanted, check_finite_flags, crf_for_checkpoint, resolve_device, run as run_cli
from .checkpoint import load_model_from_checkpoint
from .data.io import read_image, write_mask_png
from .inference import predict_image
from .visualize import overlay, side_by_side, write_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


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
    check_finite_flags(parser, args)
    device = resolve_device(parser, args.device)
    model, train_args = load_model_from_checkpoint(args.checkpoint, device)
    crf = crf_for_checkpoint(parser, args, train_args)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in tqdm(files, desc="predict", disable=not bars_wanted(False), dynamic_ncols=True):
        image = read_image(f)
        labels = predict_image(model, image, train_args["mean"], train_args["std"], device, crf)
        write_mask_png(out / f"{f.stem}.png", labels)
        write_rgb(out / f"{f.stem}_overlay.jpg", side_by_side([image, overlay(image, labels)]))
        written.append(out / f"{f.stem}.png")
    print(f"{len(written)} predictions written to {out}", file=sys.stderr)
    return written


if __name__ == "__main__":
    run_cli(main, "python -m emseg.predict")
