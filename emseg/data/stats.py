"""The statistics the paper's setting relies on, measured on any VOC-layout split.

``python -m emseg.data stats ROOT [--split train_aug]`` prints them; the synthetic set's docstring
compares its own with VOC 2012's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import IGNORE_INDEX, parse_voc_xml, read_id_list, read_mask_png
from .voc import PNG_MASK_DIRS, find_list, first_existing

__all__ = ["dataset_statistics"]


def dataset_statistics(root: str | Path, split: str = "train_aug") -> dict[str, float]:
    """Objects and classes per image, the share of one-class images, the foreground share and the
    share of the image a present class covers (median, 10th and 90th percentile), over the split's
    images that have a PNG mask (:data:`emseg.data.voc.PNG_MASK_DIRS`)."""
    root = Path(root)
    objects, classes, foreground, shares = [], [], [], []
    for image_id in read_id_list(find_list(root, split)):
        png = first_existing(root, image_id, PNG_MASK_DIRS)
        if png is None:
            continue
        labelled = read_mask_png(png)
        labelled = labelled[labelled != IGNORE_INDEX]
        if labelled.size == 0:
            continue
        present = [c for c in np.unique(labelled).tolist() if c != 0]
        classes.append(len(present))
        foreground.append(float((labelled != 0).mean()))
        shares += [float((labelled == c).mean()) for c in present]
        xml = root / "Annotations" / f"{image_id}.xml"
        if xml.is_file():
            objects.append(len(parse_voc_xml(xml).objects))
    if not classes:
        raise ValueError(f"{root}: no image of split {split!r} has a mask to measure")
    q10, q50, q90 = np.percentile(shares, [10, 50, 90]) if shares else (float("nan"),) * 3
    return {
        "images": len(classes),
        "objects_per_image": float(np.mean(objects)) if objects else float("nan"),
        "classes_per_image": float(np.mean(classes)),
        "one_class_images": float(np.mean(np.asarray(classes) == 1)),
        "foreground_share": float(np.mean(foreground)),
        "class_share_median": float(q50),
        "class_share_p10": float(q10),
        "class_share_p90": float(q90),
    }
