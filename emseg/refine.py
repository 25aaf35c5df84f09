"""Dense-CRF hook shared by Bbox-Seg label estimation, evaluation and prediction.

The trainer and the CLIs build their CRF with :func:`make_crf` from :class:`CRFParams` (set by the
``--crf-*`` flags). A CRF here is any callable

    crf(unary [N, L, H, W] float32 = -log p, image [N, 3, H, W] uint8) -> Q [N, L, H, W]

(``Q`` are the mean-field marginals), so tests can pass a stand-in.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .crf import DenseCRF
from .ops import CRF_DEFAULTS

CRF = Callable[[Tensor, Tensor], Tensor]


@dataclass
class CRFParams:
    """Fully connected CRF parameters (names as in DeepLab's CRF tool and pydensecrf).

    Defaults: DeepLab-v1 LargeFOV on PASCAL VOC (:data:`emseg.ops.CRF_DEFAULTS`; to be re-tuned
    on a held-out set for other data, as the paper did).
    """

    bi_w: float = CRF_DEFAULTS["bi_w"]
    bi_xy_std: float = CRF_DEFAULTS["bi_xy_std"]
    bi_rgb_std: float = CRF_DEFAULTS["bi_rgb_std"]
    pos_w: float = CRF_DEFAULTS["pos_w"]
    pos_xy_std: float = CRF_DEFAULTS["pos_xy_std"]
    iterations: int = CRF_DEFAULTS["iterations"]


def make_crf(params: CRFParams) -> CRF:
    """The dense CRF as a callable, built from ``params``."""
    return DenseCRF(**asdict(params))


def add_crf_args(parser: argparse.ArgumentParser, default_from: str = "the preset") -> None:
    """Add ``--crf-*`` flags for every :class:`CRFParams` field; unset flags stay None and are
    filled by :func:`crf_params_from_args` from ``default_from`` (a preset or a checkpoint)."""
    d = CRFParams()
    g = parser.add_argument_group(
        "dense CRF (test-time refinement and Bbox-Seg labels)",
        f"unset values come from {default_from}; DeepLab-LargeFOV's VOC values are "
        f"bi_w {d.bi_w}, bi_xy_std {d.bi_xy_std}, bi_rgb_std {d.bi_rgb_std}, pos_w {d.pos_w}, "
        f"pos_xy_std {d.pos_xy_std}, {d.iterations} iterations",
    )
    g.add_argument("--crf-bi-w", type=float, help="weight of the bilateral (appearance) kernel")
    g.add_argument("--crf-bi-xy-std", type=float, help="spatial std (pixels) of the bilateral kernel")
    g.add_argument("--crf-bi-rgb-std", type=float, help="colour std of the bilateral kernel")
    g.add_argument("--crf-pos-w", type=float, help="weight of the Gaussian (smoothness) kernel")
    g.add_argument("--crf-pos-xy-std", type=float, help="spatial std (pixels) of the Gaussian kernel")
    g.add_argument("--crf-iterations", type=int, help="mean-field iterations")


def crf_params_from_args(args: argparse.Namespace, base: CRFParams | None = None) -> CRFParams:
    """The flags given on the command line over ``base`` (default: :class:`CRFParams`)."""
    out = CRFParams(**asdict(base)) if base is not None else CRFParams()
    for name in asdict(out):
        value = getattr(args, f"crf_{name}", None)
        if value is not None:
            setattr(out, name, value)
    return out


@torch.no_grad()
def crf_refine(crf: CRF, logits: Tensor, image_uint8: Tensor) -> Tensor:
    """Refine full-resolution class scores with the CRF; returns labels ``[N, H, W]``.

    The unary is ``-log softmax(logits)`` in float32, as DeepLab feeds its CRF.
    """
    unary = -F.log_softmax(logits.float(), dim=1)
    q = crf(unary.contiguous(), image_uint8.contiguous())
    return q.argmax(1)
