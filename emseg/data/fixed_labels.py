"""The labels of the fixed-label modes (Bbox-Rect, Bbox-Seg), estimated once and cached on disk.

The cache is a VOC-layout folder ``<cache_dir>/<mode>-<key>`` whose ``SegmentationClassAug/<id>.png``
holds the estimated labels (at image resolution, before any augmentation), or the true mask for the
images of the strong subset, and whose other entries link to the original root, so the ordinary
loader and transforms read the estimates as masks. The key covers everything that changes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from ..crf import CRF, CRFParams
from ..estep import EStepConfig, Mode
from ..files import build_folder, check_folder
from .io import files_digest, write_mask_png
from .transforms import EvalTransform
from .voc import MASK_FOLDERS, VOCSegmentation

log = logging.getLogger("emseg")


def fixed_labels_key(
    mode: Mode,
    root: Path,
    ids: Sequence[str],
    strong: set[str],
    estep: EStepConfig,
    crf: CRFParams,
    files: Sequence[Path | None] = (),
) -> str:
    """Cache key of a fixed-label mode's labels: the data (the bytes of ``files``: every image, XML
    and mask the labels are made from, so an edited box makes new labels), the strong subset and the
    parameters the mode's labels depend on (:attr:`Mode.fixed_params`, the CRF's when it needs one)."""

    def digest(xs) -> str:
        return hashlib.sha1("\n".join(xs).encode()).hexdigest()

    payload = {
        "mode": mode.name,
        "root": str(root.resolve()),
        "ids": digest(ids),
        "strong": digest(sorted(strong)),
        "files": files_digest(files),
    }
    if mode.fixed_params:
        payload["estep"] = {k: v for k, v in asdict(estep).items() if k in mode.fixed_params}
    if mode.needs_crf:
        payload["crf"] = asdict(crf)
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def fixed_label_root(
    mode: Mode,
    root: Path,
    split: str,
    strong: set[str],
    *,
    estep: EStepConfig,
    crf_params: CRFParams,
    crf: CRF | None,
    cache_dir: str | Path,
    mean: Sequence[float],
    std: Sequence[float],
    build: bool = True,
    progress: bool = True,
) -> Path:
    """The cached label root of ``mode`` on ``split``, estimated first when it is not complete.

    ``crf`` is the CRF that labels the images (when ``mode.needs_crf``), built from ``crf_params``;
    ``build=False`` only computes the path (the other processes of a distributed run, which wait
    for the first to build it). The folder is built under a temporary name and renamed when
    complete (:func:`emseg.files.build_folder`), one builder at a time.
    """
    listed = VOCSegmentation(str(root), split, transform=None)
    ids = listed.ids
    files = [p for entry in listed.files() for p in entry]
    out = Path(cache_dir) / f"{mode.name}-{fixed_labels_key(mode, root, ids, strong, estep, crf_params, files)}"
    if not build or (out / "COMPLETE").exists():
        return out
    check_folder(cache_dir, "--label-cache")

    def estimate(folder: Path) -> None:
        log.info(f"{mode.name}: estimating labels of {len(ids)} images before training -> {out}")
        (folder / "SegmentationClassAug").mkdir()
        for entry in root.iterdir():
            if entry.name not in MASK_FOLDERS and not entry.name.startswith("."):
                (folder / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        ds = VOCSegmentation(str(root), split, transform=EvalTransform(mean, std), strong_ids=strong)
        for i in tqdm(range(len(ds)), desc=mode.name, disable=not progress, dynamic_ncols=True):
            s = ds[i]
            if s["id"] in strong:
                labels = s["mask"]
            else:
                labels = mode.fixed(s["boxes"], s["image_uint8"], ds.num_classes, estep, crf)
            write_mask_png(folder / "SegmentationClassAug" / f"{s['id']}.png", labels.numpy().astype(np.uint8))
        (folder / "COMPLETE").write_text(json.dumps({"mode": mode.name, "images": len(ids)}))

    return build_folder(out, lambda folder: (folder / "COMPLETE").exists(), estimate)
