"""Fuzz every op over shapes, dtypes, strides and values (hypothesis, derandomised so CI is stable).

Each example either raises a RuntimeError/ValueError whose message names one of the op's
arguments (and then the example was indeed invalid), or it was valid and the result equals the
NumPy reference of tests/reference_*.py. The lattice and the CRF approximate exact Gaussian
filtering with no error bound that holds for every point set, so their results are compared with
the reference where the lattice is exact (coincident or isolated points, zero iterations) and
otherwise held to what every output must satisfy (a convex combination of the values; a
distribution over labels, zero outside ``sizes``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import reference_crf
import reference_estep as ref
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emseg import ops


def fuzz(examples: int):
    examples = int(os.environ.get("EMSEG_FUZZ_EXAMPLES", examples))
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "transposed", "strided"]
NONFINITE = [float("nan"), float("inf"), float("-inf")]


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in a non-contiguous layout (or as they are)."""
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "strided" and t.dim() >= 1:
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    return t


def random_values(shape, dtype, kind: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":
        x = torch.randint(-2, 3, shape, generator=g).double()
    elif kind == "huge":
        big = 6.0e4 if dtype == torch.float16 else 3.0e38
        x = big * (2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1)
    elif kind == "tiny":
        x = 1e-40 * torch.randn(shape, generator=g, dtype=torch.float64)
    else:
        x = 4 * torch.randn(shape, generator=g, dtype=torch.float64)
    return x.to(dtype)


def poison(t: torch.Tensor, draw) -> torch.Tensor:
    """t with one entry NaN or infinite."""
    t = t.clone()
    if t.numel():
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from(NONFINITE))
    return t


def expect(call, valid: bool, names):
    """Runs call; returns its result, or None when it raised as an invalid input must."""
    try:
        out = call()
    except (RuntimeError, ValueError) as e:
        message = str(e).splitlines()[0]
        assert any(name in message for name in names), f"message names no argument: {message}"
        assert not valid, f"a valid input was refused: {message}"
        event("refused")
        return None
    assert valid, "an invalid input was accepted"
    event("accepted, compared")
    return out


def reference_input(scores: torch.Tensor) -> np.ndarray:
    # float16/bfloat16 are summed in float32 by the ops.
    return scores.float().numpy() if scores.dtype in (torch.float16, torch.bfloat16) else scores.numpy()


@st.composite
def scores_case(draw, max_side=6, max_classes=5):
    n = draw(st.integers(0, 3))
    c = draw(st.integers(0, max_classes)) if draw(st.integers(0, 7)) == 7 else draw(st.integers(1, max_classes))
    h, w = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    dtype = draw(st.sampled_from(FLOATS * 3 + [torch.int32]))
    kind = draw(st.sampled_from(["normal", "ties", "huge", "tiny"]))
    base = (
        torch.zeros(n, c, h, w, dtype=dtype)
        if dtype == torch.int32
        else random_values((n, c, h, w), dtype, kind, draw(st.integers(0, 2**16)))
    )
    finite = draw(st.integers(0, 7)) < 7 or dtype == torch.int32
    scores = base if finite else poison(base, draw)
    valid = dtype != torch.int32 and c >= 1 and (finite or scores.numel() == 0)
    return with_layout(scores, draw(st.sampled_from(LAYOUTS))), valid


@st.composite
def present_case(draw, scores):
    n, c = scores.shape[:2]
    shape_ok = draw(st.integers(0, 9)) < 9
    shape = (n, c) if shape_ok else (n, c + 1)
    present = torch.rand(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 999)))) < 0.4
    dtype_ok = draw(st.integers(0, 9)) < 9
    return (present if dtype_ok else present.to(torch.uint8)), shape_ok and dtype_ok


def bias():
    return st.one_of(*[st.floats(-1e6, 1e6)] * 4, st.sampled_from(NONFINITE))


@fuzz(400)
@given(st.data())
def test_fuzz_em_fixed(data):
    scores, valid = data.draw(scores_case())
    present, present_ok = data.draw(present_case(scores))
    fg, bg = data.draw(bias()), data.draw(bias())
    suppress = data.draw(st.booleans())
    valid = valid and present_ok and math.isfinite(fg) and math.isfinite(bg)
    got = expect(
        lambda: ops.em_fixed(scores, present, fg, bg, suppress), valid, ["scores", "present", "fg_bias", "bg_bias"]
    )
    if got is not None:
        want = ref.em_fixed(reference_input(scores.contiguous()), present.numpy(), fg, bg, suppress)
        np.testing.assert_array_equal(got.numpy(), want)


@fuzz(200)
@given(st.data())
def test_fuzz_em_adapt(data):
    scores, valid = data.draw(scores_case(max_side=5, max_classes=4))
    present, present_ok = data.draw(present_case(scores))
    portion = st.one_of(*[st.floats(0, 1)] * 4, st.sampled_from([-0.1, 1.5, float("nan")]))
    fg, bg = data.draw(portion), data.draw(portion)
    max_iter = data.draw(st.sampled_from([100000, 3, 1, 0]))
    valid = valid and present_ok and 0 <= fg <= 1 and 0 <= bg <= 1 and max_iter >= 1
    got = expect(
        lambda: ops.em_adapt(scores, present, fg, bg, max_iter),
        valid,
        ["scores", "present", "fg_portion", "bg_portion", "max_iter"],
    )
    if got is not None:
        want_labels, want_biases = ref.em_adapt(reference_input(scores.contiguous()), present.numpy(), fg, bg, max_iter)
        np.testing.assert_array_equal(got[0].numpy(), want_labels)
        np.testing.assert_array_equal(got[1].numpy(), want_biases)


@st.composite
def boxes_case(draw, n, num_classes=None, max_side=8):
    b = draw(st.integers(0, 4))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    corners = torch.rand(n, b, 4, generator=g, dtype=torch.float64) * (max_side + 4) - 2
    if draw(st.booleans()):
        corners = corners.round()  # integral corners: pixel-edge cases
    top = num_classes if num_classes else 30
    classes = torch.randint(-1, max(top, 1), (n, b, 1), generator=g).double()
    boxes = torch.cat([corners, classes], 2)
    valid = True
    bad = draw(st.sampled_from(["none"] * 15 + ["nan", "fractional", "below", "beyond-int64", "beyond-C"]))
    if boxes.numel() and bad != "none":
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, b - 1))
        if bad == "nan":
            boxes[i, j, draw(st.integers(0, 4))] = draw(st.sampled_from(NONFINITE))
        else:
            value = {"fractional": 1.5, "below": -2.0, "beyond-int64": 1e20, "beyond-C": float(top)}[bad]
            boxes[i, j, 4] = value
        # Without score channels (boxes_to_labels) any whole class >= -1 is a label.
        valid = bad == "beyond-C" and num_classes is None
    dtype = draw(st.sampled_from([torch.float32, torch.float64] * 4 + [torch.float16, torch.int32]))
    boxes = boxes.to(dtype)
    valid = valid and dtype in (torch.float32, torch.float64)
    return with_layout(boxes, draw(st.sampled_from(LAYOUTS))), valid


@fuzz(400)
@given(st.data())
def test_fuzz_boxes_to_labels(data):
    n = data.draw(st.integers(0, 3))
    boxes, valid = data.draw(boxes_case(n))
    h, w = data.draw(st.integers(-1, 8)), data.draw(st.integers(-1, 8))
    fill = data.draw(st.sampled_from([0, -1, 255]))
    valid = valid and h >= 0 and w >= 0
    got = expect(lambda: ops.boxes_to_labels(boxes, h, w, fill), valid, ["boxes", "height", "width"])
    if got is not None:
        np.testing.assert_array_equal(got.numpy(), ref.boxes_to_labels(boxes.contiguous().numpy(), h, w, fill))


@fuzz(200)
@given(st.data())
def test_fuzz_center_prior(data):
    n = data.draw(st.integers(0, 3))
    boxes, valid = data.draw(boxes_case(n))
    h, w = data.draw(st.integers(0, 8)), data.draw(st.integers(0, 8))
    portion = data.draw(st.one_of(st.floats(0.01, 1), st.sampled_from([0.0, 1.5, float("nan")])))
    valid = valid and 0 < portion <= 1
    got = expect(lambda: ops.center_prior(boxes, h, w, portion), valid, ["boxes", "portion", "height", "width"])
    if got is not None:
        want = ref.center_prior(boxes.contiguous().numpy(), h, w, portion)
        np.testing.assert_array_equal(got.numpy(), want)


@fuzz(400)
@given(st.data())
def test_fuzz_bbox_em_fixed(data):
    scores, valid = data.draw(scores_case())
    n, c = scores.shape[:2]
    boxes, boxes_ok = data.draw(boxes_case(n, num_classes=max(c, 1), max_side=6))
    if data.draw(st.integers(0, 9)) == 9:
        boxes, boxes_ok = boxes[:0] if n else torch.zeros(1, 0, 5), False  # batch mismatch
    fg, bg = data.draw(bias()), data.draw(bias())
    suppress = data.draw(st.booleans())
    valid = valid and boxes_ok and math.isfinite(fg) and math.isfinite(bg)
    got = expect(
        lambda: ops.bbox_em_fixed(scores, boxes, fg, bg, suppress), valid, ["scores", "boxes", "fg_bias", "bg_bias"]
    )
    if got is not None:
        want = ref.bbox_em_fixed(reference_input(scores.contiguous()), boxes.contiguous().numpy(), fg, bg, suppress)
        np.testing.assert_array_equal(got.numpy(), want)


@fuzz(250)
@given(st.data())
def test_fuzz_permutohedral_filter(data):
    batched = data.draw(st.booleans())
    p, v, d = data.draw(st.integers(0, 40)), data.draw(st.integers(0, 9)), data.draw(st.integers(0, 17))
    layout = data.draw(st.sampled_from(["random", "coincident", "isolated", "far"]))
    seed = data.draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    lead = (2,) if batched else ()
    if layout == "coincident":
        features = torch.full((*lead, p, d), 0.7)
    elif layout == "isolated":  # 30 standard deviations apart: no point sees another
        features = 30.0 * torch.arange(p, dtype=torch.float32)[:, None].expand(p, d).expand(*lead, p, d).contiguous()
    elif layout == "far":  # beyond the exact range of float32 lattice coordinates
        features = torch.full((*lead, p, d), 1e7)
    else:
        features = 3 * torch.rand(*lead, p, d, generator=g)
    values = torch.randn(*lead, p, v, generator=g)
    finite = data.draw(st.integers(0, 5)) < 5
    if not finite:
        values = poison(values, data.draw)
    values_dtype = data.draw(st.sampled_from([torch.float32] * 5 + [torch.float64]))
    features_dtype = data.draw(st.sampled_from([torch.float32] * 5 + [torch.int32]))
    values, features = values.to(values_dtype), features.to(features_dtype)
    normalize = data.draw(st.booleans())
    valid = (
        1 <= d <= 16
        and values_dtype == torch.float32
        and features_dtype == torch.float32
        and (finite or values.numel() == 0)
        and (layout != "far" or p == 0)
    )
    values = with_layout(values, data.draw(st.sampled_from(LAYOUTS)))
    features = with_layout(features, data.draw(st.sampled_from(LAYOUTS)))
    got = expect(lambda: ops.permutohedral_filter(values, features, normalize), valid, ["values", "features"])
    if got is None:
        return
    assert got.shape == values.shape and torch.isfinite(got).all()
    sets = 2 if batched else 1
    for x, f, out in zip(values.reshape(sets, p, v), features.reshape(sets, p, d), got.reshape(sets, p, v)):
        if not normalize or p == 0 or v == 0:
            continue
        if layout in ("coincident", "isolated"):
            want = reference_crf.gaussian_filter(x.double().numpy(), f.double().numpy())
            np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
        # A weighted mean with non-negative weights: within the values' range.
        slack = 1e-5 * (1 + x.abs().max())
        assert (out >= x.min(0).values - slack).all() and (out <= x.max(0).values + slack).all()


@fuzz(200)
@given(st.data())
def test_fuzz_dense_crf(data):
    n, labels = data.draw(st.integers(0, 2)), data.draw(st.sampled_from([1, 2, 3, 5] * 3 + [0]))
    h, w = data.draw(st.integers(0, 7)), data.draw(st.integers(0, 7))
    kind = data.draw(st.sampled_from(["normal", "ties", "huge", "tiny"]))
    unary_dtype = data.draw(st.sampled_from([torch.float32] * 9 + [torch.float64]))
    unary = random_values((n, labels, h, w), torch.float32, kind, data.draw(st.integers(0, 2**16)))
    finite = data.draw(st.integers(0, 9)) < 9
    if not finite:
        unary = poison(unary, data.draw)
    unary = with_layout(unary.to(unary_dtype), data.draw(st.sampled_from(LAYOUTS)))
    image_ok = data.draw(st.integers(0, 9)) < 9
    image = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * 8 + w))
    image = with_layout(image if image_ok else image.float(), data.draw(st.sampled_from(LAYOUTS)))
    weight = st.sampled_from([0.0, 3.0, -5.0, 1e3] * 3 + [3e38])
    pos_w, bi_w = data.draw(weight), data.draw(weight)
    std = st.sampled_from([3.0, 1.0, 80.0] * 5 + [0.0, -1.0, float("nan")])
    pos_std, bi_xy, bi_rgb = data.draw(std), data.draw(std), data.draw(std)
    iterations = data.draw(st.sampled_from([0, 1, 3] * 3 + [-1]))
    unary_kind = data.draw(st.sampled_from(["neg_log_prob", "logits"]))
    sizes, sizes_ok = None, True
    if data.draw(st.booleans()):
        sh, sw = data.draw(st.integers(0, h + 1)), data.draw(st.integers(0, w + 1))
        sizes, sizes_ok = torch.tensor([[sh, sw]] * n, dtype=torch.int64).reshape(n, 2), (sh <= h and sw <= w) or n == 0
    valid = (
        unary_dtype == torch.float32
        and labels >= 1
        and image_ok
        and (finite or unary.numel() == 0)
        and all(s > 0 for s in (pos_std, bi_xy, bi_rgb))
        and iterations >= 0
        and sizes_ok
        and (abs(pos_w) + abs(bi_w)) * math.sqrt(h * w) < 8.5e37  # messages finite in float32
    )
    names = ["unary", "image", "compat", "pos_std", "bi_std", "iterations", "sizes"]
    got = expect(
        lambda: ops.dense_crf(
            unary,
            image,
            pos_w=pos_w,
            pos_xy_std=pos_std,
            bi_w=bi_w,
            bi_xy_std=bi_xy,
            bi_rgb_std=bi_rgb,
            iterations=iterations,
            sizes=sizes,
            unary_kind=unary_kind,
        ),
        valid,
        names,
    )
    if got is None:
        return
    assert got.shape == unary.shape and torch.isfinite(got).all()
    energy = unary if unary_kind == "neg_log_prob" else -unary
    for i in range(n):
        vh, vw = (h, w) if sizes is None else sizes[i].tolist()
        q = got[i]
        assert (q[:, vh:] == 0).all() and (q[:, :, vw:] == 0).all()
        q = q[:, :vh, :vw]
        if iterations == 0:
            want = torch.softmax(-energy[i, :, :vh, :vw].double(), 0).float()
            torch.testing.assert_close(q, want, rtol=0, atol=1e-6)
        assert (q >= 0).all() and (q <= 1).all()
        torch.testing.assert_close(q.sum(0), torch.ones(vh, vw), rtol=0, atol=1e-5)
