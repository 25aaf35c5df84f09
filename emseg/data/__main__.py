"""Data utilities: ``python -m emseg.data synthetic|photo|stats|check --help``.

``synthetic`` writes the synthetic VOC-layout set, ``photo`` the set made of photo textures;
``check`` reads every file of a split once and reports what is missing or broken, so a long
training run does not find it at hour three.
"""

from __future__ import annotations

import argparse
from collections import Counter

from ..cli import bars_wanted
from ..cli import run as run_cli
from .photo import make_photo_voc
from .stats import dataset_statistics
from .synthetic import SYNTHETIC_DEFAULTS, make_synthetic_voc
from .voc import VOCSegmentation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emseg.data", description="Data utilities: write the synthetic set, check a VOC tree."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    syn = sub.add_parser("synthetic", help="write the synthetic VOC-layout data set")
    syn.add_argument("root", help="output folder (reused when it already holds the same set)")
    # the defaults are the trainer's, so this writes the set that `python -m emseg.train` reads
    syn.add_argument(
        "--train", type=int, default=SYNTHETIC_DEFAULTS["num_train"], help="training images (train_aug.txt)"
    )
    syn.add_argument("--val", type=int, default=SYNTHETIC_DEFAULTS["num_val"], help="validation images (val.txt)")
    syn.add_argument("--test", type=int, default=SYNTHETIC_DEFAULTS["num_test"], help="test images (test.txt)")
    syn.add_argument(
        "--pretrain",
        type=int,
        default=SYNTHETIC_DEFAULTS["num_pretrain"],
        help="images of the pretraining split (image labels only)",
    )
    syn.add_argument("--size", type=int, default=SYNTHETIC_DEFAULTS["image_size"], help="image side in pixels")
    syn.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical files")

    photo = sub.add_parser("photo", help="write the VOC-layout set of photo textures (needs scikit-image)")
    photo.add_argument("root", help="output folder (reused when it already holds the same set)")
    photo.add_argument("--train", type=int, default=400, help="training images (train_aug.txt)")
    photo.add_argument("--val", type=int, default=100, help="validation images (val.txt)")
    photo.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical files")
    photo.add_argument(
        "--object-share",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="range of the first object's share of its image (default 0.12 0.45: a present class covers 8-40 %%)",
    )

    st = sub.add_parser("stats", help="objects and classes per image, foreground and class shares of a split")
    st.add_argument("root", help="VOC-layout root with masks")
    st.add_argument("--split", default="train_aug", help="list name under ImageSets/Segmentation/ or a path")

    chk = sub.add_parser("check", help="read every image and annotation of a split and report problems")
    chk.add_argument("root", help="VOC-layout root (JPEGImages/, Annotations/, SegmentationClass[Aug]/, cls/)")
    chk.add_argument("--split", default="train_aug", help="list name under ImageSets/Segmentation/ or a path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "synthetic":
        root = make_synthetic_voc(
            args.root,
            args.train,
            args.val,
            args.size,
            args.seed,
            progress=bars_wanted(False),
            num_pretrain=args.pretrain,
            num_test=args.test,
        )
        print(f"synthetic set ready: {root}")
        return 0

    if args.command == "stats":
        for key, value in dataset_statistics(args.root, args.split).items():
            print(f"{key:20s} {value:.3f}" if isinstance(value, float) else f"{key:20s} {value}")
        return 0

    if args.command == "photo":
        print(f"photo set ready: {make_photo_voc(args.root, args.train, args.val, args.seed, args.object_share)}")
        return 0

    ds = VOCSegmentation(args.root, args.split, skip_corrupt=True, progress=bars_wanted(False))
    print(ds)
    for image_id, path, reason in ds.skipped:
        print(f"  {image_id}: {path}: {reason}")
    reasons = Counter(reason for _, _, reason in ds.skipped)
    for reason, count in reasons.most_common():
        print(f"{count:6d} x {reason}")
    return 1 if ds.skipped else 0


if __name__ == "__main__":
    run_cli(main, "python -m emseg.data")
