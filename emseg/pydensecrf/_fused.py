"""What :func:`emseg.ops.dense_crf` needs to run a :class:`DenseCRF2D` in one fused op: the
terms' compatibilities as one matrix times a weight per kernel, and finite unary energies."""

from __future__ import annotations

import math

import numpy as np
import torch


def fused_compat(gaussian, bilateral):
    """(compat, pos_w, bi_w) for dense_crf when the two terms' compatibilities are proportional."""
    if all(t is None or t.potts is not None for t in (gaussian, bilateral)):
        return None, (gaussian.potts if gaussian else 0.0), (bilateral.potts if bilateral else 0.0)
    matrices = [t.compat.astype(np.float64) if t else None for t in (gaussian, bilateral)]
    base = next((m for m in reversed(matrices) if m is not None and m.any()), None)
    if base is None:  # all-zero compatibilities: no pairwise effect at all
        return None, 0.0, 0.0
    weights = []
    for m in matrices:
        w = 0.0 if m is None else float((m * base).sum() / (base * base).sum())
        if m is not None and not np.allclose(m, w * base, rtol=1e-6, atol=0.0):
            return None
        weights.append(w)
    return torch.from_numpy(base.astype(np.float32)), weights[0], weights[1]


def finite_unary(unary: np.ndarray, compat, pos_w: float, bi_w: float, pixels: int) -> np.ndarray | None:
    """The unary for :func:`emseg.ops.dense_crf`, which takes finite energies only. A +inf energy
    (``unary_from_softmax(p, clip=None)`` where ``p`` is 0) means Q = 0 for that label in every
    step; an energy far enough above the pixel's largest finite one gives exactly that (exp of
    what is beyond float32 is 0), whatever the messages. None when no such energy fits in float32,
    for a -inf or NaN, or a pixel with no finite energy: the step-by-step path handles those."""
    if np.isfinite(unary).all():
        return unary
    if np.isnan(unary).any() or np.isneginf(unary).any():
        return None
    finite = np.where(np.isinf(unary), -np.inf, unary)
    top = finite.max(axis=0)
    if not np.isfinite(top).all():
        return None
    scale = float(np.abs(compat.numpy()).max()) if compat is not None else 1.0
    messages = (abs(pos_w) + abs(bi_w)) * scale * math.sqrt(pixels)  # the op's bound on a message
    gap = 2.0 * messages + 200.0  # beyond exp's float32 range however the messages fall
    if float(top.max()) + gap + messages > 3e38:
        return None
    return np.where(np.isinf(unary), top[None, :] + np.float32(gap), unary).astype(np.float32)
