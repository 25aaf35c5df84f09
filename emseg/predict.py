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

from .checkpoint import load_model_from_checkpoint
from .cli import add_crf_args, bars_wanted, check_finite_flags, crf_for_checkpoint, resolve_device
from .cli import run as run_cli
from .data.io import DataError, read_image, write_mask_png
from .files import check_folder
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


def output_names(files: list[Path], out: Path) -> list[Path]:
    """The mask each input gives (``<stem>.png``); refused (``ValueError``) when two inputs would
    give one file (``a.jpg`` and ``a.png``) or an output would replace an input."""
    masks = [out / f"{f.stem}.png" for f in files]
    by_mask: dict[Path, Path] = {}
    for f, mask in zip(files, masks):
        if mask in by_mask:
            raise ValueError(
                f"--input: {by_mask[mask].name} and {f.name} would both be written as {mask.name}; "
                "rename one of them or predict them separately"
            )
        by_mask[mask] = f
    inputs = {f.resolve() for f in files}
    for mask in masks:
        for written in (mask, mask.with_name(f"{mask.stem}_overlay.jpg")):
            if written.resolve() in inputs:
                raise ValueError(
                    f"--output {out}: writing {written.name} there would replace the input "
                    f"{written}; choose an --output folder apart from the images"
                )
    return masks


def main(argv: list[str] | None = None) -> list[Path]:
    parser = build_parser()
    args = parser.parse_args(argv)
    src = Path(args.input)
    if not src.exists():
        parser.error(f"--input {src}: no such file or folder")
    if not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    # regular files only: a folder named like an image (dir.png) is not one
    files = (
        [src]
        if src.is_file()
        else sorted(f for f in src.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    )
    if not files:
        parser.error(f"--input {src}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    check_finite_flags(parser, args)
    device = resolve_device(parser, args.device)
    out = Path(args.output)
    if src.is_dir() and out.resolve() == src.resolve():
        parser.error(
            f"--output {out} is the --input folder: its images would be mixed with (and a second run would "
            "read) the predictions; choose another --output folder"
        )
    masks = output_names(files, out)
    check_folder(out, "--output")
    model, train_args = load_model_from_checkpoint(args.checkpoint, device)
    crf = crf_for_checkpoint(parser, args, train_args)
    written, failed = [], []
    for f, mask in zip(tqdm(files, desc="predict", disable=not bars_wanted(False), dynamic_ncols=True), masks):
        try:
            image = read_image(f)
        except DataError as err:  # one unreadable file does not cost the others their predictions
            failed.append(err)
            print(f"skipped {err}", file=sys.stderr)
            continue
        labels = predict_image(model, image, train_args["mean"], train_args["std"], device, crf)
        write_mask_png(mask, labels)
        write_rgb(out / f"{f.stem}_overlay.jpg", side_by_side([image, overlay(image, labels)]))
        written.append(mask)
    print(f"{len(written)} predictions written to {out}", file=sys.stderr)
    if failed:
        raise DataError(
            failed[0].path,
            f"{failed[0].reason} ({len(failed)} of {len(files)} images could not be "
            "read and have no prediction; the others were written)",
        )
    return written


if __name__ == "__main__":
    run_cli(main, "python -m emseg.predict")
