"""Independent NumPy references of the E-step and box operators.

Written from the operators' documented definitions, vectorised over pixels, sharing no code with the
native kernels: thresholds are found by plain bisection over all doubles, the k-th smallest by
``np.partition``, box coverage by broadcasting.
"""

from __future__ import annotations

import math

import numpy as np

PORTION_SLACK = 1e-12


def _acc_dtype(dtype) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _argmax_lowest(values: np.ndarray, axis: int) -> np.ndarray:
    # np.argmax returns the first maximum: ties go to the lower class index.
    return np.argmax(values, axis=axis).astype(np.int64)


def em_fixed(scores, present, fg_bias=5.0, bg_bias=3.0, suppress_absent=False):
    scores = np.asarray(scores)
    acc = _acc_dtype(scores.dtype)
    present = np.asarray(present, dtype=bool).copy()
    present[:, 0] = True
    bias = np.where(present, acc.type(fg_bias), acc.type(0)).astype(acc)
    bias[:, 0] = acc.type(bg_bias)
    values = scores.astype(acc) + bias[:, :, None, None]
    if suppress_absent:
        values = np.where(present[:, :, None, None], values, -np.inf)
    return _argmax_lowest(values, axis=1)


# ---- EM-Adapt ---------------------------------------------------------------------------------


def _to_key(x: np.ndarray) -> np.ndarray:
    bits = np.asarray(x, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _from_key(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=np.uint64)
    negative_origin = (k >> np.uint64(63)) == 0
    bits = np.where(negative_origin, ~k, k & np.uint64((1 << 63) - 1))
    return bits.view(np.float64)


def min_bias_to_reach(score: np.ndarray, target: np.ndarray, strict: bool) -> np.ndarray:
    """Smallest double b per element with fl(score + b) >= target (> when strict).

    Plain bisection over the ordered bit patterns of all finite doubles: [-max, +max].
    """
    score = np.asarray(score, np.float64)
    target = np.asarray(target, np.float64)

    def ok(b):
        v = score + b
        return v > target if strict else v >= target

    lo = np.full(score.shape, _to_key(np.array(-np.finfo(np.float64).max)), dtype=np.uint64)
    hi = np.full(score.shape, _to_key(np.array(np.finfo(np.float64).max)), dtype=np.uint64)
    # lo must fail and hi pass; scores here are far from the double range, so that holds.
    with np.errstate(over="ignore"):
        for _ in range(66):
            mid = lo + (hi - lo) // np.uint64(2)
            passes = ok(_from_key(mid))
            hi = np.where(passes, mid, hi)
            lo = np.where(passes, lo, mid)
    result = _from_key(hi)
    return np.where(np.isneginf(target), -np.inf, result)


def required_pixels(portion, total, fits, m):
    if fits:
        return int(math.ceil(m * portion * (1.0 - PORTION_SLACK)))
    return int(math.floor(m * portion / max(total, 1.0) * (1.0 + PORTION_SLACK)))


def required_counts(present_row, fg_portion, bg_portion, m):
    """Required pixels per class of one image (0 for absent classes)."""
    present_row = np.asarray(present_row, dtype=bool).copy()
    present_row[0] = True
    n_fg = int(present_row[1:].sum())
    total = bg_portion + n_fg * fg_portion
    needed = required_pixels(bg_portion, total, True, m) + n_fg * required_pixels(fg_portion, total, True, m)
    fits = needed <= m
    counts = np.zeros(len(present_row), dtype=np.int64)
    for c in np.flatnonzero(present_row):
        counts[c] = required_pixels(bg_portion if c == 0 else fg_portion, total, fits, m)
    return counts


SHORT, AT_QUOTA, SPARE = -1, 0, 1
STALL_CHAINS = 64


def _labels_and_state(s, b, pres, counts):
    v = np.where(pres[:, None], s + b[:, None], -np.inf)
    labels = _argmax_lowest(v, axis=0)
    won = np.bincount(labels, minlength=len(pres))
    state = np.where((won > counts) | (counts == 0), SPARE, np.where(won < counts, SHORT, AT_QUOTA))
    deficit = int(np.maximum(counts - won, 0)[pres].sum())
    return labels, state, deficit


def _win_thresholds(s, b, pres, label):
    """Per pixel: the smallest bias with which `label` beats lower classes and ties higher ones."""
    m = s.shape[1]
    classes = np.flatnonzero(pres)
    v = s + b[:, None]
    below = [j for j in classes if j < label]
    above = [j for j in classes if j > label]
    lo = v[below].max(axis=0) if below else np.full(m, -np.inf)
    hi = v[above].max(axis=0) if above else np.full(m, -np.inf)
    return np.maximum(min_bias_to_reach(s[label], hi, strict=False), min_bias_to_reach(s[label], lo, strict=True))


def _capture_raises(s, b, pres, labels, raising):
    """Per pixel held outside `raising`: the common raise of the set that lets its best class win
    the pixel from every class outside the set; +inf for pixels the set holds."""
    v = np.where(pres[:, None], s + b[:, None], -np.inf)
    inside = pres & raising
    best = _argmax_lowest(np.where(inside[:, None], v, -np.inf), axis=0)
    pixels = np.arange(s.shape[1])
    lo = np.full(s.shape[1], -np.inf)
    hi = np.full(s.shape[1], -np.inf)
    for j in np.flatnonzero(pres & ~raising):
        lo = np.where(j < best, np.maximum(lo, v[j]), lo)
        hi = np.where(j > best, np.maximum(hi, v[j]), hi)
    best_scores = s[best, pixels]
    need = np.maximum(
        min_bias_to_reach(best_scores, hi, strict=False),
        min_bias_to_reach(best_scores, lo, strict=True),
    )
    return np.where(raising[labels], np.inf, need - b[best])


def em_adapt(scores, present, fg_portion=0.2, bg_portion=0.4, max_iter=100000):
    """EM-Adapt as documented in emseg.ops.em_adapt: sweeps while they shrink the total shortfall,
    then augmenting chains grown from the lowest short class."""
    scores = np.asarray(scores)
    n, c, h, w = scores.shape
    m = h * w
    values_all = scores.astype(_acc_dtype(scores.dtype)).astype(np.float64).reshape(n, c, m)
    labels_out = np.zeros((n, m), dtype=np.int64)
    biases = np.full((n, c), -np.inf)
    for i in range(n):
        pres = np.asarray(present[i], dtype=bool).copy()
        pres[0] = True
        s = values_all[i]
        counts = required_counts(pres, fg_portion, bg_portion, m)
        b = np.where(pres, 0.0, -np.inf)
        labels, state, deficit = _labels_and_state(s, b, pres, counts)
        it = 0
        while deficit > 0 and it < max_iter:
            it += 1
            for cls in np.flatnonzero(pres):
                if counts[cls] == 0:
                    continue
                t = _win_thresholds(s, b, pres, cls)
                if np.count_nonzero(t <= b[cls]) >= counts[cls]:
                    continue
                b[cls] = np.partition(t, counts[cls] - 1)[counts[cls] - 1]
            previous = deficit
            labels, state, deficit = _labels_and_state(s, b, pres, counts)
            if deficit >= previous:
                break
        stuck = False
        stall_limit = STALL_CHAINS * (int(pres.sum()) + 1)
        lowest, since_lowest = deficit, 0
        while deficit > 0 and it < max_iter and not stuck and since_lowest < stall_limit:
            raising = np.zeros(c, dtype=bool)
            raising[np.flatnonzero(pres & (state == SHORT))[0]] = True
            from_spare = False
            while not from_spare and it < max_iter:
                it += 1
                raises = _capture_raises(s, b, pres, labels, raising)
                smallest = raises.min()
                if smallest == np.inf:
                    stuck = True
                    break
                donor = labels[np.flatnonzero(raises == smallest)[0]]
                from_spare = state[donor] == SPARE
                b = np.where(raising, b + smallest, b)
                raising[donor] = True
                labels, state, deficit = _labels_and_state(s, b, pres, counts)
                since_lowest = 0 if deficit < lowest else since_lowest + 1
                lowest = min(lowest, deficit)
        labels_out[i] = labels
        biases[i] = b
    return labels_out.reshape(n, h, w), biases


# ---- boxes ------------------------------------------------------------------------------------


def _coverage(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bool [N, B, H, W]: box b covers pixel (y, x) when its centre is in the half-open box."""
    boxes = np.asarray(boxes)
    dt = boxes.dtype
    cx = np.arange(width, dtype=dt) + dt.type(0.5)
    cy = np.arange(height, dtype=dt) + dt.type(0.5)
    x1, y1, x2, y2, cls = (boxes[..., k][..., None, None] for k in range(5))
    inside_x = (x1 <= cx[None, None, None, :]) & (cx[None, None, None, :] < x2)
    inside_y = (y1 <= cy[None, None, :, None]) & (cy[None, None, :, None] < y2)
    return inside_x & inside_y & (cls >= 0)


def boxes_to_labels(boxes, height, width, fill=0):
    boxes = np.asarray(boxes)
    n, nb = boxes.shape[:2]
    labels = np.full((n, height, width), fill, dtype=np.int64)
    if nb == 0:
        return labels
    cover = _coverage(boxes, height, width)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    # Paint from the largest box down; equal areas painted last-listed first so the first wins.
    for i in range(n):
        order = sorted(range(nb), key=lambda b: (area[i, b], b), reverse=True)
        for b in order:
            labels[i][cover[i, b]] = int(boxes[i, b, 4])
    return labels


def bbox_em_fixed(scores, boxes, fg_bias=5.0, bg_bias=3.0, suppress_absent=False):
    scores = np.asarray(scores)
    n, c, h, w = scores.shape
    acc = _acc_dtype(scores.dtype)
    boxes = np.asarray(boxes)
    labels = np.zeros((n, h, w), dtype=np.int64)
    if boxes.shape[1] == 0:
        return labels
    cover = _coverage(boxes, h, w)
    for i in range(n):
        boosted = np.zeros((c, h, w), dtype=bool)
        for b in range(boxes.shape[1]):
            cls = int(boxes[i, b, 4])
            if cls > 0:
                boosted[cls] |= cover[i, b]
        inside = cover[i].any(axis=0)
        phi = np.where(boosted, acc.type(fg_bias), acc.type(0)).astype(acc)
        phi[0] = acc.type(bg_bias)
        values = scores[i].astype(acc) + phi
        if suppress_absent:
            keep = boosted.copy()
            keep[0] = True
            values = np.where(keep, values, -np.inf)
        labels[i] = np.where(inside, _argmax_lowest(values, axis=0), 0)
    return labels


def center_prior(boxes, height, width, portion=0.2):
    """Bbox-Seg's centre areas: every box shrunk about its centre by sqrt(portion) per side (in the
    boxes' dtype), painted like boxes_to_labels with -1 where no centre area reaches."""
    boxes = np.asarray(boxes)
    dt = boxes.dtype
    x1, y1, x2, y2, cls = (boxes[..., k] for k in range(5))
    half = dt.type(0.5)
    shrink = dt.type(0.5 * math.sqrt(portion))
    cx, cy = (x1 + x2) * half, (y1 + y2) * half
    hw, hh = (x2 - x1) * shrink, (y2 - y1) * shrink
    centre = np.stack([cx - hw, cy - hh, cx + hw, cy + hh, cls], axis=-1).astype(dt)
    return boxes_to_labels(centre, height, width, fill=-1)
