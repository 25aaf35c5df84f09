"""Dense-CRF hook shared by Bbox-Seg label estimation, evaluation and prediction.

The trainer and the CLIs never import a CRF directly: they call :func:`make_crf`, the one place
that knows where the dense CRF lives. A CRF here is any callable

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

CRF = Callable[[Tensor, Tensor], Tensor]


@dataclass
class CRFParams:
    """Fully connected CRF parameters (names as in DeepLab's CRF tool and pydensecrf).

    Defaults: DeepLab-v1 LargeFOV on PASCAL VOC (see notes/paper.md; to be re-tuned on a held-out
    set for other data, as the paper did).
    """

    bi_w: float = 4.0
    bi_xy_std: float = 121.0
    bi_rgb_std: float = 5.0
    pos_w: float = 3.0
    pos_xy_std: float = 3.0
    iterations: int = 10


class CRFUnavailable(RuntimeError):
    """Raised when a CRF is asked for but emseg.crf is not part of this build."""


def make_crf(params: CRFParams) -> CRF:
    """The dense CRF as a callable, built from ``params``; imports :mod:`emseg.crf` lazily."""
    try:
        from emseg.crf import DenseCRF  # noqa: PLC0415  (optional until the CRF branch lands)
    except ImportError as exc:
        raise CRFUnavailable(
            "the dense CRF (emseg.crf) is not available in this build; run without --crf / use a "
            f"mode other than bbox-seg ({exc})"
        ) from None
    return DenseCRF(**asdict(params))


def crf_available() -> bool:
    try:
        import emseg.crf  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


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
