"""Dense CRF: a batched torch module and its settings as a config record (``DenseCRF2D`` and
pydensecrf's constants are re-exported from :mod:`emseg.pydensecrf.densecrf`, the whole pydensecrf
API).

All run :func:`emseg.ops.dense_crf` (mean-field inference on permutohedral lattices, CPU or CUDA).
The trainer and the CLIs build their CRF with :func:`make_crf` from :class:`CRFParams`. A CRF there
is any callable

    crf(unary [N, L, H, W] float32 = -log p, image [N, 3, H, W] uint8) -> Q [N, L, H, W]

(``Q`` are the mean-field marginals), so tests can pass a stand-in.

Switching from pydensecrf::

    # import pydensecrf.densecrf as dcrf
    import emseg.pydensecrf.densecrf as dcrf

    d = dcrf.DenseCRF2D(W, H, L)
    d.setUnaryEnergy(U)                      # float32 [L, H*W], -log p
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=121, srgb=5, rgbim=image, compat=4)
    Q = np.array(d.inference(10))            # [L, H*W]
"""

from __future__ import annotations

from dataclasses import asdict, field, make_dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from . import ops
from .ops import CRF_DEFAULTS
from .pydensecrf.densecrf import (  # noqa: F401  (the pydensecrf drop-in, re-exported)
    CONST_KERNEL,
    DIAG_KERNEL,
    FULL_KERNEL,
    NO_NORMALIZATION,
    NORMALIZE_AFTER,
    NORMALIZE_BEFORE,
    NORMALIZE_SYMMETRIC,
    DenseCRF2D,
)

__all__ = [
    "CRF",
    "CRFParams",
    "make_crf",
    "DenseCRF",
    "DenseCRF2D",
    "CONST_KERNEL",
    "DIAG_KERNEL",
    "FULL_KERNEL",
    "NO_NORMALIZATION",
    "NORMALIZE_BEFORE",
    "NORMALIZE_AFTER",
    "NORMALIZE_SYMMETRIC",
]

CRF = Callable[[Tensor, Tensor], Tensor]

# A field per entry of CRF_DEFAULTS, so the defaults have one home.
CRFParams = make_dataclass(
    "CRFParams", [(name, type(value), field(default=value)) for name, value in CRF_DEFAULTS.items()]
)
CRFParams.__module__ = __name__
CRFParams.__doc__ = """Fully connected CRF parameters (names as in DeepLab's CRF tool and pydensecrf), as a
run stores them. Defaults: DeepLab-v1 LargeFOV on PASCAL VOC (:data:`emseg.ops.CRF_DEFAULTS`; to be
re-tuned on a held-out set for other data, as the paper did)."""


class DenseCRF(nn.Module):
    """Fully connected CRF over batches of images, on the device of its inputs.

    The kernel settings (weights, standard deviations, optional ``[L, L]`` compatibility) are held
    as buffers, so they follow ``.to()`` and are saved in ``state_dict``. Defaults are DeepLab's
    PASCAL VOC values (:data:`emseg.ops.CRF_DEFAULTS`); see :func:`emseg.ops.dense_crf` for the
    energy and the meaning of each setting.

    ``forward(unary, image, sizes=None)``: float32 ``[N, L, H, W]`` unaries (``unary_kind`` says
    whether they are ``-log p`` or logits), uint8 ``[N, 3, H, W]`` images, optional int64
    ``[N, 2]`` valid sizes; returns the marginals ``[N, L, H, W]``.
    """

    def __init__(
        self,
        pos_w: float = CRF_DEFAULTS["pos_w"],
        pos_xy_std: float = CRF_DEFAULTS["pos_xy_std"],
        bi_w: float = CRF_DEFAULTS["bi_w"],
        bi_xy_std: float = CRF_DEFAULTS["bi_xy_std"],
        bi_rgb_std: float = CRF_DEFAULTS["bi_rgb_std"],
        iterations: int = CRF_DEFAULTS["iterations"],
        compat: Tensor | None = None,
        unary_kind: str = "neg_log_prob",
    ) -> None:
        super().__init__()
        if unary_kind not in ("neg_log_prob", "logits"):
            raise ValueError(f'unary_kind must be "neg_log_prob" or "logits", got {unary_kind!r}')
        self.register_buffer("pos_w", torch.tensor(float(pos_w)))
        self.register_buffer("pos_xy_std", torch.tensor(float(pos_xy_std)))
        self.register_buffer("bi_w", torch.tensor(float(bi_w)))
        self.register_buffer("bi_xy_std", torch.tensor(float(bi_xy_std)))
        self.register_buffer("bi_rgb_std", torch.tensor(float(bi_rgb_std)))
        self.register_buffer("compat", None if compat is None else torch.as_tensor(compat, dtype=torch.float32))
        self.iterations = int(iterations)
        self.unary_kind = unary_kind

    def forward(self, unary: Tensor, image: Tensor, sizes: Tensor | None = None) -> Tensor:
        return ops.dense_crf(
            unary,
            image,
            pos_w=float(self.pos_w),
            pos_xy_std=float(self.pos_xy_std),
            bi_w=float(self.bi_w),
            bi_xy_std=float(self.bi_xy_std),
            bi_rgb_std=float(self.bi_rgb_std),
            iterations=self.iterations,
            compat=self.compat,
            sizes=sizes,
            unary_kind=self.unary_kind,
        )

    def extra_repr(self) -> str:
        return (
            f"pos_w={float(self.pos_w)}, pos_xy_std={float(self.pos_xy_std)}, "
            f"bi_w={float(self.bi_w)}, bi_xy_std={float(self.bi_xy_std)}, "
            f"bi_rgb_std={float(self.bi_rgb_std)}, iterations={self.iterations}, "
            f"compat={'Potts' if self.compat is None else 'matrix'}, unary_kind={self.unary_kind}"
        )


def make_crf(params: CRFParams) -> CRF:
    """The dense CRF as a callable, built from ``params``."""
    return DenseCRF(**asdict(params))
