"""Evaluate a checkpoint: mIoU from a confusion matrix, with and without dense-CRF refinement.

    python -m emseg.evaluate --checkpoint runs/demo/checkpoint.pth [--data-root VOC] [--crf]

Scores are upsampled to the image size on the network's own grid (score cell ``(i, j)`` sits on
pixel ``(8 i, 8 j)``), the prediction is their argmax; with ``--crf`` the dense CRF refines the
softmax of the same scores. Pixels labelled 255 are ignored. Under torchrun each process evaluates
every ``world_size``-th image and the confusion matrices are summed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import load_model_from_checkpoint
from .cli import add_crf_args, bars_wanted, check_finite_flags, crf_for_checkpoint, resolve_device
from .cli import run as run_cli
from .crf import CRF
from .data import EvalTransform, VOCSegmentation, collate
from .inference import crf_refine, predict_batch
from .metrics import ConfusionMatrix

log = logging.getLogger("emseg")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    num_classes: int,
    device: torch.device,
    crf: CRF | None = None,
    amp: bool = False,
    progress: bool = True,
) -> tuple[ConfusionMatrix, ConfusionMatrix | None]:
    """Confusion matrices of the plain prediction and (when ``crf`` is given) the CRF-refined one,
    summed over all processes."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    cm_crf = ConfusionMatrix(num_classes) if crf is not None else None
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False, dynamic_ncols=True):
        image = batch["image"].to(device, non_blocking=True)
        logits = predict_batch(model, image, amp)
        target = batch["mask"]
        cm.update(target, logits.argmax(1).cpu())
        if cm_crf is not None:
            for rows, h, w in crf_groups(batch["size"] if "size" in batch else None, tuple(target.shape[-2:])):
                # images of another size than the batch's are refined on their own pixels, not the padding
                refined = crf_refine(
                    crf, logits[rows, :, :h, :w].cpu(), batch["image_uint8"][rows, :, :h, :w].contiguous()
                )
                cm_crf.update(target[rows, :h, :w], refined)
    cm.reduce_from_all_processes()
    if cm_crf is not None:
        cm_crf.reduce_from_all_processes()
    return cm, cm_crf


def crf_groups(sizes: torch.Tensor | None, padded: tuple[int, int]) -> list[tuple[slice | list[int], int, int]]:
    """The batch's images as (rows, height, width): all at once when none is padded, else one by
    one at their own size (the CRF over a small image padded to a large one costs the large one)."""
    if sizes is None or bool((sizes == torch.tensor(padded)).all()):
        return [(slice(None), *padded)]
    return [([k], int(h), int(w)) for k, (h, w) in enumerate(sizes.tolist())]


def check_classes(checkpoint: str, train_args: dict, names: list[str], root) -> None:
    """The checkpoint's network must predict the classes of the data it is evaluated on."""
    want = train_args.get("class_names") or None
    if train_args["num_classes"] != len(names) or (
        want is not None and [n.lower() for n in want] != [n.lower() for n in names]
    ):
        shown = ", ".join(want) if want else f"{train_args['num_classes']} classes"
        raise ValueError(
            f"--checkpoint {checkpoint}: its network predicts {train_args['num_classes']} classes ({shown}) "
            f"but {root} has {len(names)} ({', '.join(names)}); evaluate on the data it was trained for"
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m emseg.evaluate",
        description="Mean IoU of a trained checkpoint on a VOC-layout split (21 VOC classes, or the "
        "classes of the data set's classes.txt), with the per-class IoU table.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint written by python -m emseg.train")
    p.add_argument(
        "--data-root", default=None, help="VOC-layout root; default: the one the checkpoint was trained with"
    )
    p.add_argument("--split", default=None, help="image list name or file; default: the training run's --val-split")
    p.add_argument("--batch-size", type=int, default=1, help="images per batch (>1 only when all images have one size)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--device", default=None, help="cpu or cuda[:k]; default: cuda when available")
    p.add_argument("--crf", action="store_true", help="also report the dense-CRF-refined mIoU")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (quick checks)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    add_crf_args(p, "the checkpoint's training run")
    return p


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    check_finite_flags(parser, args)
    device = resolve_device(parser, args.device)
    model, train_args = load_model_from_checkpoint(args.checkpoint, device)
    root = args.data_root or train_args["data_root_resolved"]
    split = args.split or train_args["val_split"]
    ds = VOCSegmentation(
        root, split, transform=EvalTransform(tuple(train_args["mean"]), tuple(train_args["std"])), boxes=False
    )
    if args.limit is not None:
        ds = torch.utils.data.Subset(ds, range(min(args.limit, len(ds))))
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate)
    crf = crf_for_checkpoint(parser, args, train_args)
    names = list(getattr(ds, "class_names", None) or getattr(ds.dataset, "class_names"))
    check_classes(args.checkpoint, train_args, names, root)
    cm, cm_crf = evaluate(model, loader, len(names), device, crf, progress=bars_wanted(args.no_progress))
    print(f"{split}: {len(ds)} images")
    print(cm.table(names))
    result = {"miou": cm.miou(), "iou": cm.iou().tolist()}
    if cm_crf is not None:
        print("\nwith dense CRF:")
        print(cm_crf.table(names))
        result["miou_crf"] = cm_crf.miou()
    return result


if __name__ == "__main__":
    run_cli(main, "python -m emseg.evaluate")
