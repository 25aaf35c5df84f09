"""Unaries and pairwise features as ``pydensecrf.utils`` builds them (same dtypes, shapes, defaults).

Every function returns NumPy float32 arrays laid out for :mod:`emseg.pydensecrf.densecrf`: unaries
``[n_labels, n_pixels]``, features ``[n_features, n_pixels]`` with the pixels in C order of the
image's shape.
"""

from __future__ import annotations

from logging import warning
from numbers import Number

import numpy as np

__all__ = [
    "unary_from_labels",
    "compute_unary",
    "unary_from_softmax",
    "softmax_to_unary",
    "create_pairwise_gaussian",
    "create_pairwise_bilateral",
]


def unary_from_labels(labels, n_labels, gt_prob, zero_unsure=True):
    """Unary energy of a label map, each label trusted with probability ``gt_prob``.

    ``labels``: integer array of any shape. A pixel labelled ``l`` gets ``-log(gt_prob)`` for its
    label and ``-log((1 - gt_prob) / (n_labels - 1))`` for every other one. With ``zero_unsure``
    (the default) the value 0 means "unknown": those pixels get the uniform ``-log(1 / n_labels)``,
    and label ``l > 0`` is row ``l - 1`` (``n_labels`` then does not count the 0). With
    ``zero_unsure=False`` label ``l`` is row ``l``. Returns float32 ``[n_labels, labels.size]``.
    """
    if not 0 < gt_prob < 1:
        raise AssertionError("`gt_prob must be in (0,1).")
    labels = labels.flatten()
    other_energy = -np.log((1.0 - gt_prob) / (n_labels - 1))
    label_energy = -np.log(gt_prob)
    unary = np.full((n_labels, len(labels)), other_energy, dtype="float32")
    rows = labels - 1 if zero_unsure else labels
    # With zero_unsure the 0-labelled pixels index row -1 here; the next step overwrites them.
    unary[rows, np.arange(unary.shape[1])] = label_energy
    if zero_unsure:
        unary[:, labels == 0] = -np.log(1.0 / n_labels)
    return unary


def compute_unary(labels, M, GT_PROB=0.5):  # noqa: N803 (pydensecrf's argument names)
    """Deprecated spelling of :func:`unary_from_labels` (pydensecrf keeps it, with a warning)."""
    warning("pydensecrf.compute_unary is deprecated, use unary_from_labels instead.")
    return unary_from_labels(labels, M, GT_PROB)


def unary_from_softmax(sm, scale=None, clip=1e-5):
    """Unary energy ``-log p`` of class probabilities ``sm`` (classes first, any trailing shape).

    ``scale`` in (0, 1] blends ``sm`` with the uniform distribution, ``scale * sm + (1 - scale) /
    n_classes``, to soften over-confident outputs; ``clip`` is the smallest probability kept (so
    that ``log 0`` never occurs), None for no clipping. Returns float32 ``[n_classes, n_pixels]``.
    """
    n_classes = sm.shape[0]
    if scale is not None:
        if not 0 < scale <= 1:
            raise AssertionError("`scale` needs to be in (0,1]")
        sm = scale * sm + (1 - scale) * (np.ones(sm.shape) / n_classes)
    if clip is not None:
        sm = np.clip(sm, clip, 1.0)
    return -np.log(sm).reshape([n_classes, -1]).astype(np.float32)


def softmax_to_unary(sm, GT_PROB=1):  # noqa: N803
    """Deprecated spelling of :func:`unary_from_softmax` without clipping (pydensecrf's warning)."""
    warning("pydensecrf.softmax_to_unary is deprecated, use unary_from_softmax instead.")
    return unary_from_softmax(sm, None if GT_PROB == 1 else GT_PROB, clip=None)


def _scaled_grid(shape, sdims) -> np.ndarray:
    """Pixel coordinates of an array of ``shape``, [ndim, *shape] float32, axis i divided by sdims[i]."""
    grid = np.array(np.meshgrid(*[range(s) for s in shape], indexing="ij"), dtype=np.float32)
    for axis, s in enumerate(sdims):
        grid[axis] /= s
    return grid


def create_pairwise_gaussian(sdims, shape):
    """Position features of a CRF over an array of ``shape`` (any number of dimensions).

    ``sdims``: one standard deviation per axis, in array order (for a 2D image ``(sy, sx)``; the
    same kernel as ``DenseCRF2D.addPairwiseGaussian``). Returns float32 ``[len(sdims), n_pixels]``.
    """
    return _scaled_grid(shape, sdims).reshape([len(sdims), -1])


def create_pairwise_bilateral(sdims, schan, img, chdim=-1):
    """Position and intensity features of ``img`` (any number of spatial dimensions and channels).

    ``sdims``: one standard deviation per spatial axis, in array order; ``schan``: one per channel,
    or one number for all; ``chdim``: the channel axis of ``img``, -1 when it has none (grayscale).
    For an RGB image with ``chdim=2`` this is ``DenseCRF2D.addPairwiseBilateral``'s kernel.
    Returns float32 ``[len(sdims) + n_channels, n_pixels]``: positions first, then channels.
    """
    if chdim == -1:
        channels = img[np.newaxis].astype(np.float32)
    else:
        channels = np.rollaxis(img, chdim).astype(np.float32)
    if isinstance(schan, Number):
        channels /= schan
    else:
        for c, s in enumerate(schan):
            channels[c] /= s
    feats = np.concatenate([_scaled_grid(channels.shape[1:], sdims), channels])
    return feats.reshape([feats.shape[0], -1])
