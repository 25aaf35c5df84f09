"""Independent NumPy references for the lattice and dense-CRF tests: exact O(P^2) Gaussian
filtering and mean-field inference with exact (brute-force) kernels, for small inputs only."""

from __future__ import annotations

import numpy as np


def gaussian_kernel(features: np.ndarray) -> np.ndarray:
    """Exact k(i, j) = exp(-|f_i - f_j|^2 / 2) for features [P, D] (float64 [P, P])."""
    f = features.astype(np.float64)
    sq = (f * f).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0)
    return np.exp(-0.5 * d2)


def gaussian_filter(values: np.ndarray, features: np.ndarray, normalize: bool = True) -> np.ndarray:
    """sum_j k(i, j) v_j, divided by sum_j k(i, j) when normalize."""
    k = gaussian_kernel(features)
    out = k @ values.astype(np.float64)
    if normalize:
        out /= k.sum(1, keepdims=True)
    return out


def crf_features(image_hwc: np.ndarray, pos_std, bi_std) -> tuple[np.ndarray, np.ndarray]:
    """pydensecrf's features: (x / sx, y / sy) and (x / sx, y / sy, r / sr, g / sg, b / sb)."""
    h, w, _ = image_hwc.shape
    ys, xs = np.mgrid[0:h, 0:w]
    xs, ys = xs.reshape(-1).astype(np.float64), ys.reshape(-1).astype(np.float64)
    rgb = image_hwc.reshape(-1, 3).astype(np.float64)
    pos = np.stack([xs / pos_std[0], ys / pos_std[1]], 1)
    bil = np.stack([xs / bi_std[0], ys / bi_std[1]] + [rgb[:, c] / bi_std[2 + c] for c in range(3)], 1)
    return pos, bil


def normalised_kernels(feature_sets) -> list[np.ndarray]:
    """Symmetric normalisation n_i k(i, j) n_j with n = (sum_j k(i, j))^-1/2, self term included."""
    out = []
    for f in feature_sets:
        k = gaussian_kernel(f)
        n = 1.0 / np.sqrt(k.sum(1))
        out.append(n[:, None] * k * n[None, :])
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 of [L, P]."""
    e = np.exp(x - x.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def mean_field(unary: np.ndarray, kernels, compats, iterations: int) -> list[np.ndarray]:
    """Parallel mean-field updates for energy U [L, P] and pairwise C_k (x) K_k; all iterates."""
    q = softmax(-unary)
    qs = [q]
    for _ in range(iterations):
        msg = sum(c @ (q @ k.T) for k, c in zip(kernels, compats))
        q = softmax(-unary - msg)
        qs.append(q)
    return qs


def kl_divergence(q: np.ndarray, unary: np.ndarray, kernels, compats) -> float:
    """KL(Q || P) up to log Z: sum Q log Q + sum U Q + 1/2 sum_ij Q_i^T C Q_j K_ij."""
    q = q.astype(np.float64)
    kl = float((q * np.log(np.maximum(q, 1e-30))).sum() + (unary * q).sum())
    for k, c in zip(kernels, compats):
        kl += 0.5 * float((q * (c @ (q @ k.T))).sum())
    return kl
