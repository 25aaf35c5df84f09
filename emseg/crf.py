"""Dense CRF: a batched torch module, its settings as a config record, and a drop-in for
pydensecrf's ``DenseCRF2D``.

All run :func:`emseg.ops.dense_crf` (mean-field inference on permutohedral lattices, CPU or CUDA).
The trainer and the CLIs build their CRF with :func:`make_crf` from :class:`CRFParams`. A CRF there
is any callable

    crf(unary [N, L, H, W] float32 = -log p, image [N, 3, H, W] uint8) -> Q [N, L, H, W]

(``Q`` are the mean-field marginals), so tests can pass a stand-in.

Switching from pydensecrf::

    # import pydensecrf.densecrf as dcrf
    import emseg.crf as dcrf

    d = dcrf.DenseCRF2D(W, H, L)
    d.setUnaryEnergy(U)                      # float32 [L, H*W], -log p
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=121, srgb=5, rgbim=image, compat=4)
    Q = np.array(d.inference(10))            # [L, H*W]
"""

from __future__ import annotations

from dataclasses import asdict, field, make_dataclass
from numbers import Number
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from . import ops
from .ops import CRF_DEFAULTS

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

# pydensecrf's enum values, so code passing them keeps working; only the defaults are supported.
CONST_KERNEL, DIAG_KERNEL, FULL_KERNEL = 0, 1, 2
NO_NORMALIZATION, NORMALIZE_BEFORE, NORMALIZE_AFTER, NORMALIZE_SYMMETRIC = 0, 1, 2, 3

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
        self.register_buffer(
            "compat", None if compat is None else torch.as_tensor(compat, dtype=torch.float32)
        )
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


def _label_compat(compat, num_labels: int) -> Tensor:
    """pydensecrf's compat argument as an [L, L] energy matrix (its label-compatibility classes)."""
    if isinstance(compat, Number):
        # PottsCompatibility(w): message -w * Q, i.e. the energy matrix -w * I.
        return -float(compat) * torch.eye(num_labels)
    c = torch.as_tensor(np.asarray(compat, dtype=np.float32))
    if c.dim() == 1:
        if c.numel() != num_labels:
            raise ValueError(f"compat vector must have {num_labels} entries, got {c.numel()}")
        return torch.diag(c)
    if c.dim() == 2:
        if c.shape != (num_labels, num_labels):
            raise ValueError(
                f"compat matrix must be [{num_labels}, {num_labels}], got {list(c.shape)}"
            )
        # MatrixCompatibility uses the symmetric part.
        return 0.5 * (c + c.t())
    raise ValueError("LabelCompatibility of dimension >2 not meaningful.")


class DenseCRF2D:
    """Drop-in for ``pydensecrf.densecrf.DenseCRF2D``: same methods, arguments and conventions.

    Supports one Gaussian and one bilateral pairwise term (each at most once) with the default
    ``DIAG_KERNEL`` / ``NORMALIZE_SYMMETRIC``, compat given as a number (Potts), a vector
    (diagonal) or a matrix. ``inference`` returns a float32 NumPy array ``[L, H*W]``.
    ``device`` (an extension) runs the inference on a CUDA device.
    """

    def __init__(self, W: int, H: int, L: int, device: str | torch.device = "cpu") -> None:
        self._w, self._h, self._l = int(W), int(H), int(L)
        self._device = torch.device(device)
        self._unary: Tensor | None = None
        self._pos: tuple[list[float], Tensor] | None = None
        self._bi: tuple[list[float], Tensor] | None = None
        self._image: Tensor | None = None

    def setUnaryEnergy(self, u, f=None) -> None:  # noqa: N802 (pydensecrf's name)
        if f is not None:
            raise NotImplementedError("setUnaryEnergy with a feature matrix is not supported")
        u = np.asarray(u)
        if u.shape != (self._l, self._w * self._h):
            raise ValueError(
                f"Bad shape for unary energy (Need {(self._l, self._w * self._h)}, got {u.shape})"
            )
        self._unary = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32))

    def _check_kernel(self, kernel: int, normalization: int) -> None:
        if kernel != DIAG_KERNEL or normalization != NORMALIZE_SYMMETRIC:
            raise NotImplementedError(
                "only kernel=DIAG_KERNEL and normalization=NORMALIZE_SYMMETRIC are supported"
            )

    def addPairwiseGaussian(  # noqa: N802
        self, sxy, compat, kernel: int = DIAG_KERNEL, normalization: int = NORMALIZE_SYMMETRIC
    ) -> None:
        self._check_kernel(kernel, normalization)
        if self._pos is not None:
            raise NotImplementedError("only one Gaussian pairwise term is supported")
        sxy = (sxy, sxy) if isinstance(sxy, Number) else tuple(sxy)
        self._pos = ([float(sxy[0]), float(sxy[1])], _label_compat(compat, self._l))

    def addPairwiseBilateral(  # noqa: N802
        self,
        sxy,
        srgb,
        rgbim,
        compat,
        kernel: int = DIAG_KERNEL,
        normalization: int = NORMALIZE_SYMMETRIC,
    ) -> None:
        self._check_kernel(kernel, normalization)
        if self._bi is not None:
            raise NotImplementedError("only one bilateral pairwise term is supported")
        rgbim = np.asarray(rgbim)
        if rgbim.shape[:2] != (self._h, self._w):
            raise ValueError(
                f"Bad shape for pairwise bilateral (Need {(self._h, self._w, 3)}, got {rgbim.shape})"
            )
        if rgbim.ndim != 3 or rgbim.shape[2] != 3 or rgbim.dtype != np.uint8:
            raise ValueError("addPairwiseBilateral only works for uint8 RGB images [H, W, 3]")
        sxy = (sxy, sxy) if isinstance(sxy, Number) else tuple(sxy)
        srgb = (srgb,) * 3 if isinstance(srgb, Number) else tuple(srgb)
        stds = [float(sxy[0]), float(sxy[1])] + [float(s) for s in srgb]
        self._bi = (stds, _label_compat(compat, self._l))
        self._image = torch.from_numpy(np.ascontiguousarray(rgbim.transpose(2, 0, 1)))

    def inference(self, n_iterations: int) -> np.ndarray:
        if self._unary is None:
            raise RuntimeError("setUnaryEnergy must be called before inference")
        L, H, W = self._l, self._h, self._w
        zero = torch.zeros(L, L)
        pos_std, pos_c = self._pos if self._pos is not None else ([1.0, 1.0], zero)
        bi_std, bi_c = self._bi if self._bi is not None else ([1.0] * 5, zero)
        image = self._image if self._image is not None else torch.zeros(3, H, W, dtype=torch.uint8)
        dev = self._device
        q = torch.ops.emseg.dense_crf(
            self._unary.reshape(1, L, H, W).to(dev),
            image[None].to(dev),
            torch.stack([pos_c, bi_c]).to(dev),
            pos_std,
            bi_std,
            int(n_iterations),
            None,
            False,
        )
        return q.reshape(L, H * W).cpu().numpy()
