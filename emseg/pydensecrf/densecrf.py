"""``pydensecrf.densecrf`` on emseg's operators: same classes, methods, constants and errors.

The model is Krähenbühl's: energy ``sum_i U_i(x_i) + sum_k sum_ij mu_k(x_i, x_j) K_k(i, j)``, each
pairwise term k a Gaussian kernel over its features (``exp(-|f_i - f_j|^2 / 2)``, features already
divided by their standard deviations) evaluated on the permutohedral lattice, and mean-field
inference ``Q <- softmax(-U - sum_k mu_k(filter_k(Q)))`` starting from ``softmax(-U)``.

- Normalisation of ``filter_k(Q)``, with ``R`` the raw lattice response and ``n1 = R(1)``:
  ``NO_NORMALIZATION`` ``R(Q)``; ``NORMALIZE_BEFORE`` ``R(Q / n1)``; ``NORMALIZE_AFTER``
  ``R(Q) / n1``; ``NORMALIZE_SYMMETRIC`` (default) ``R(Q / sqrt(n1)) / sqrt(n1)``.
- Kernel types (``CONST_KERNEL``, ``DIAG_KERNEL``, ``FULL_KERNEL``) only say which kernel
  parameters pydensecrf's C++ core would learn; its Python API never learns them, so all three
  filter alike here as there.
- Compatibility ``compat``: a number ``w`` is Potts (message ``-w * filter(Q)``), a vector ``v`` of
  n_labels is diagonal (``v * filter(Q)``), a matrix ``M`` is ``(M + M^T) / 2`` applied over labels.

A ``DenseCRF2D`` whose terms are one ``addPairwiseGaussian`` and/or one ``addPairwiseBilateral``,
both symmetrically normalised with proportional compatibilities, runs :func:`emseg.ops.dense_crf`
(one fused op, lattices built once). Everything else runs mean field over
:func:`emseg.ops.permutohedral_filter` (features of 1 to 16 dimensions; more raise
``NotImplementedError``). Inputs follow pydensecrf's rules (float32 C-contiguous arrays, unary
``[n_labels, n_pixels]``, features ``[n_features, n_pixels]``, uint8 ``[H, W, 3]`` images) with its
error messages. ``inference`` returns a float32 NumPy array ``[n_labels, n_pixels]``; ``device=``
(an extension) runs the inference on that device (e.g. ``"cuda"``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from numbers import Number

import numpy as np
import torch
from torch import Tensor

from ..ops import dense_crf, permutohedral_filter
from ._checks import buffer, one_of
from ._fused import finite_unary, fused_compat


class KernelType(enum.IntEnum):
    CONST_KERNEL = 0
    DIAG_KERNEL = 1
    FULL_KERNEL = 2


class NormalizationType(enum.IntEnum):
    NO_NORMALIZATION = 0
    NORMALIZE_BEFORE = 1
    NORMALIZE_AFTER = 2
    NORMALIZE_SYMMETRIC = 3


CONST_KERNEL, DIAG_KERNEL, FULL_KERNEL = KernelType
NO_NORMALIZATION, NORMALIZE_BEFORE, NORMALIZE_AFTER, NORMALIZE_SYMMETRIC = NormalizationType

__all__ = [
    "KernelType",
    "NormalizationType",
    *KernelType.__members__,
    *NormalizationType.__members__,
    "Unary",
    "ConstUnary",
    "LogisticUnary",
    "DenseCRF",
    "DenseCRF2D",
]

#: The permutohedral filter's range of feature dimensions.
MAX_FEATURE_DIM = 16


class Unary:
    """A unary energy ``[n_labels, n_pixels]`` for :meth:`DenseCRF.setUnary`."""

    def energy(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} defines no energy")


class ConstUnary(Unary):
    """A fixed unary energy ``u``: float32 ``[n_labels, n_pixels]``."""

    def __init__(self, u) -> None:
        self._u = buffer(u, "u", 2).copy()

    def energy(self) -> np.ndarray:
        return self._u


class LogisticUnary(Unary):
    """The unary energy ``L @ f`` (pydensecrf's LogisticUnaryEnergy): float32 matrices."""

    def __init__(self, L, f) -> None:  # noqa: N803 (pydensecrf's argument name)
        L, f = buffer(L, "L", 2), buffer(f, "f", 2)
        if L.shape[1] != f.shape[0]:
            raise ValueError(f"L @ f needs L.shape[1] == f.shape[0], got {L.shape} and {f.shape}")
        self._u = np.ascontiguousarray(L @ f, dtype=np.float32)

    def energy(self) -> np.ndarray:
        return self._u


def _label_compatibility(compat, n_labels: int) -> tuple[np.ndarray, float | None]:
    """pydensecrf's ``compat`` as an [L, L] float32 matrix over labels, and the Potts weight."""
    if isinstance(compat, Number):
        return -float(compat) * np.eye(n_labels, dtype=np.float32), float(compat)
    ndim = memoryview(compat).ndim
    if ndim == 1:
        v = buffer(compat, "arr", 1)
        if v.shape[0] != n_labels:
            raise ValueError(f"compat vector must have n_labels = {n_labels} entries, got {v.shape[0]}")
        return np.diag(v).astype(np.float32), None
    if ndim == 2:
        m = buffer(compat, "arr", 2)
        if m.shape != (n_labels, n_labels):
            raise ValueError(f"compat matrix must be [{n_labels}, {n_labels}], got {list(m.shape)}")
        return (0.5 * (m + m.T)).astype(np.float32), None
    raise ValueError("LabelCompatibility of dimension >2 not meaningful.")


@dataclass
class _Term:
    """One pairwise term; ``kind``/``stds``/``image`` remember a DenseCRF2D term for the fused op."""

    features: np.ndarray  # float32 [D, N]
    compat: np.ndarray  # float32 [L, L]
    potts: float | None
    normalization: NormalizationType
    kind: str = "features"  # or "gaussian" / "bilateral"
    stds: tuple[float, ...] = ()
    image: np.ndarray | None = None  # uint8 [H, W, 3] of a bilateral term
    # Per device: (features [N, D], pre-scale [N, 1] or None, post-scale [N, 1] or None, compat).
    _state: dict = field(default_factory=dict, repr=False)

    def on(self, device: torch.device):
        if device not in self._state:
            feats = torch.from_numpy(np.ascontiguousarray(self.features.T)).to(device)
            ones = torch.ones(feats.shape[0], 1, device=device)
            n1 = permutohedral_filter(ones, feats, normalize=False).double() + 1e-20
            pre = post = None
            if self.normalization == NORMALIZE_SYMMETRIC:
                pre = post = n1.rsqrt().float()
            elif self.normalization == NORMALIZE_BEFORE:
                pre = n1.reciprocal().float()
            elif self.normalization == NORMALIZE_AFTER:
                post = n1.reciprocal().float()
            compat = torch.from_numpy(self.compat).to(device)
            self._state[device] = (feats, pre, post, compat)
        return self._state[device]

    def message(self, q: Tensor) -> Tensor:
        """This term's contribution ``mu(filter(Q))`` to the energy, ``[N, L]`` like ``q``."""
        feats, pre, post, compat = self.on(q.device)
        filtered = permutohedral_filter((q if pre is None else q * pre).contiguous(), feats, False)
        if post is not None:
            filtered = filtered * post
        # compat acts on the label axis: out[:, l] = sum_l' compat[l, l'] filtered[:, l'].
        return -self.potts * filtered if self.potts is not None else filtered @ compat.T


class DenseCRF:
    """A fully connected CRF over ``nvar`` variables with ``nlabels`` labels (pydensecrf's class).

    ``device`` (an extension): where inference runs, "cpu" (default) or a CUDA device.
    """

    def __init__(self, nvar: int, nlabels: int, device: str | torch.device = "cpu") -> None:
        self._nvar, self._nlabel = int(nvar), int(nlabels)
        self._device = torch.device(device)
        self._unary: np.ndarray | None = None
        self._terms: list[_Term] = []

    # --- set-up ----------------------------------------------------------------------------

    def _add_term(self, features: np.ndarray, compat, kernel, normalization, **kind) -> None:
        one_of(kernel, KernelType, "kernel")
        normalization = one_of(normalization, NormalizationType, "normalization")
        dim = features.shape[0]
        if not 1 <= dim <= MAX_FEATURE_DIM:
            raise NotImplementedError(
                f"pairwise features of {dim} dimensions: emseg's permutohedral lattice takes 1 to {MAX_FEATURE_DIM}"
            )
        matrix, potts = _label_compatibility(compat, self._nlabel)
        self._terms.append(_Term(features, matrix, potts, normalization, **kind))

    def addPairwiseEnergy(  # noqa: N802 (pydensecrf's names)
        self, features, compat, kernel=DIAG_KERNEL, normalization=NORMALIZE_SYMMETRIC
    ) -> None:
        """A Gaussian pairwise term over ``features``: float32 ``[n_features, nvar]``."""
        features = buffer(features, "features", 2)
        if features.shape[1] != self._nvar:
            raise ValueError(f"Bad shape for pairwise energy (Need (?, {self._nvar}), got {features.shape})")
        self._add_term(features.copy(), compat, kernel, normalization)

    def setUnary(self, u: Unary) -> None:  # noqa: N802
        if not isinstance(u, Unary):
            raise TypeError(f"Argument 'u' has incorrect type (expected {__name__}.Unary, got {type(u).__name__})")
        energy = u.energy()
        if energy.shape != (self._nlabel, self._nvar):
            raise ValueError(f"Bad shape for unary energy (Need {(self._nlabel, self._nvar)}, got {energy.shape})")
        self._unary = energy

    def setUnaryEnergy(self, u, f=None) -> None:  # noqa: N802
        """The unary energy ``u`` (float32 ``[nlabels, nvar]``, ``-log p``), or ``u @ f``."""
        u = buffer(u, "u", 2)
        if u.shape != (self._nlabel, self._nvar):
            raise ValueError(f"Bad shape for unary energy (Need {(self._nlabel, self._nvar)}, got {u.shape})")
        self.setUnary(ConstUnary(u) if f is None else LogisticUnary(u, f))

    # --- inference -------------------------------------------------------------------------

    def _unary_on(self) -> Tensor:
        """The unary energy as ``[nvar, nlabels]`` on the device (zeros when none was set)."""
        if self._unary is None:
            return torch.zeros(self._nvar, self._nlabel, device=self._device)
        return torch.from_numpy(self._unary).to(self._device).t()

    def _step(self, q: Tensor, unary: Tensor) -> Tensor:
        energy = unary
        for term in self._terms:
            energy = energy + term.message(q)
        return torch.softmax(-energy, dim=1)

    def _fused(self, n_iterations: int) -> Tensor | None:
        """Q ``[nvar, nlabels]`` from :func:`emseg.ops.dense_crf` where that op computes this CRF."""
        return None

    def inference(self, n_iterations: int) -> np.ndarray:
        """``n_iterations`` mean-field steps from ``softmax(-U)``; Q float32 ``[nlabels, nvar]``."""
        n_iterations = max(int(n_iterations), 0)
        q = self._fused(n_iterations)
        if q is None:
            unary = self._unary_on()
            q = torch.softmax(-unary, dim=1)
            for _ in range(n_iterations):
                q = self._step(q, unary)
        return q.t().contiguous().cpu().numpy()

    def startInference(self):  # noqa: N802
        """``(Q, tmp1, tmp2)`` for :meth:`stepInference`: Q = ``softmax(-U)`` (zeros without a
        unary, as in pydensecrf), float32 ``[nlabels, nvar]``; tmp1 and tmp2 are scratch that
        stays empty, like pydensecrf's."""
        q = np.zeros((self._nlabel, self._nvar), dtype=np.float32)
        if self._unary is not None:
            q[...] = torch.softmax(-self._unary_on(), dim=1).t().cpu().numpy()
        return q, np.empty((0, 0), np.float32), np.empty((0, 0), np.float32)

    def _marginals(self, Q, name: str = "Q") -> np.ndarray:  # noqa: N803
        if not isinstance(Q, np.ndarray):
            raise TypeError(f"Argument '{name}' has incorrect type (expected numpy.ndarray, got {type(Q).__name__})")
        Q = buffer(Q, name, 2)  # noqa: N806
        if Q.shape != (self._nlabel, self._nvar):
            raise ValueError(f"Bad shape for {name} (Need {(self._nlabel, self._nvar)}, got {Q.shape})")
        return Q

    def stepInference(self, Q, tmp1=None, tmp2=None) -> None:  # noqa: N802, N803
        """One mean-field step on ``Q`` (from :meth:`startInference`), in place."""
        Q = self._marginals(Q)  # noqa: N806
        q = torch.from_numpy(Q).to(self._device).t()
        Q[...] = self._step(q, self._unary_on()).t().cpu().numpy()

    def klDivergence(self, Q) -> float:  # noqa: N802, N803
        """KL(Q || P) up to P's log-partition: ``sum Q log Q + sum U Q + sum_k sum Q mu_k(K_k Q)``."""
        q = torch.from_numpy(self._marginals(Q)).to(self._device).t()
        q64 = q.double()
        kl = (q64 * torch.log(q.clamp_min(1e-20)).double()).sum()
        if self._unary is not None:
            kl = kl + (self._unary_on().double() * q64).sum()
        for term in self._terms:
            kl = kl + (q64 * term.message(q).double()).sum()
        return float(kl)


class DenseCRF2D(DenseCRF):
    """A dense CRF over a ``w x h`` image (pixel ``(x, y)`` is variable ``y * w + x``)."""

    def __init__(self, w: int, h: int, nlabels: int, device: str | torch.device = "cpu") -> None:
        super().__init__(int(w) * int(h), nlabels, device)
        self._w, self._h = int(w), int(h)

    def _pixel_grid(self, sx: float, sy: float) -> list[np.ndarray]:
        ys, xs = np.mgrid[0 : self._h, 0 : self._w].astype(np.float32)
        return [xs.ravel() / np.float32(sx), ys.ravel() / np.float32(sy)]

    def addPairwiseGaussian(  # noqa: N802
        self, sxy, compat, kernel=DIAG_KERNEL, normalization=NORMALIZE_SYMMETRIC
    ) -> None:
        """A Gaussian over pixel positions, standard deviations ``sxy`` (a number or ``(sx, sy)``)."""
        if isinstance(sxy, Number):
            sxy = (sxy, sxy)
        stds = (float(np.float32(sxy[0])), float(np.float32(sxy[1])))
        features = np.stack(self._pixel_grid(*stds))
        self._add_term(features, compat, kernel, normalization, kind="gaussian", stds=stds)

    def addPairwiseBilateral(  # noqa: N802
        self, sxy, srgb, rgbim, compat, kernel=DIAG_KERNEL, normalization=NORMALIZE_SYMMETRIC
    ) -> None:
        """A Gaussian over positions and colours of ``rgbim`` (uint8 ``[h, w, 3]``); ``sxy`` and
        ``srgb`` are numbers or per-axis / per-channel standard deviations."""
        if isinstance(sxy, Number):
            sxy = (sxy, sxy)
        if isinstance(srgb, Number):
            srgb = (srgb, srgb, srgb)
        rgbim = buffer(rgbim, "rgbim", 3, np.uint8)
        if rgbim.shape[0] != self._h or rgbim.shape[1] != self._w:
            raise ValueError(f"Bad shape for pairwise bilateral (Need {(self._h, self._w, 3)}, got {rgbim.shape})")
        if rgbim.shape[2] != 3:
            raise ValueError(
                "addPairwiseBilateral only works for RGB images. For other types, use "
                "`utils.create_pairwise_bilateral` to construct your own pairwise energy and add it "
                "through `addPairwiseEnergy`."
            )
        stds = tuple(float(np.float32(s)) for s in (sxy[0], sxy[1], srgb[0], srgb[1], srgb[2]))
        colours = rgbim.reshape(-1, 3).astype(np.float32)
        features = np.stack(self._pixel_grid(*stds[:2]) + [colours[:, c] / np.float32(stds[2 + c]) for c in range(3)])
        self._add_term(features, compat, kernel, normalization, kind="bilateral", stds=stds, image=rgbim.copy())

    def _fused(self, n_iterations: int) -> Tensor | None:
        by_kind = {"gaussian": [], "bilateral": [], "features": []}
        for term in self._terms:
            by_kind[term.kind].append(term)
        if (
            not self._terms
            or by_kind["features"]
            or len(by_kind["gaussian"]) > 1
            or len(by_kind["bilateral"]) > 1
            or any(t.normalization != NORMALIZE_SYMMETRIC for t in self._terms)
        ):
            return None
        gaussian = by_kind["gaussian"][0] if by_kind["gaussian"] else None
        bilateral = by_kind["bilateral"][0] if by_kind["bilateral"] else None
        fused = fused_compat(gaussian, bilateral)
        if fused is None:
            return None
        compat, pos_w, bi_w = fused
        unary = self._unary if self._unary is not None else np.zeros((self._nlabel, self._nvar), np.float32)
        unary = finite_unary(unary, compat, pos_w, bi_w, self._nvar)
        if unary is None:
            return None
        L, H, W, dev = self._nlabel, self._h, self._w, self._device  # noqa: N806
        image = np.zeros((H, W, 3), np.uint8) if bilateral is None else bilateral.image
        bi_std = bilateral.stds if bilateral else (1.0,) * 5
        q = dense_crf(
            torch.from_numpy(unary).to(dev).reshape(1, L, H, W),
            torch.from_numpy(image).permute(2, 0, 1)[None].contiguous().to(dev),
            pos_w=pos_w,
            pos_xy_std=gaussian.stds if gaussian else (1.0, 1.0),
            bi_w=bi_w,
            bi_xy_std=bi_std[:2],
            bi_rgb_std=bi_std[2:],
            iterations=n_iterations,
            compat=None if compat is None else compat.to(dev),
        )
        return q.reshape(L, H * W).t()
