"""Box operators (boxes_to_labels, bbox_em_fixed, center_prior) against the NumPy references in
reference_estep.py."""

import numpy as np
import pytest
import reference_estep as ref
import torch
from conftest import DEVICES
from gpu_on_cpu.backends import PARITY_DEVICES, run_on

from emseg import ops


def random_boxes(n, b, height, width, num_classes, seed, dtype=torch.float32, pad=0.2, integral=False):
    """[N, B, 5] boxes scattered over and around an H x W map: some partly or fully outside, some
    empty or inverted, about `pad` of the rows padding (class -1)."""
    g = np.random.default_rng(seed)
    x1 = g.uniform(-0.3 * width, 1.1 * width, (n, b))
    y1 = g.uniform(-0.3 * height, 1.1 * height, (n, b))
    x2 = x1 + g.uniform(-0.1 * width, 0.8 * width, (n, b))  # negative widths: inverted boxes
    y2 = y1 + g.uniform(-0.1 * height, 0.8 * height, (n, b))
    coords = np.stack([x1, y1, x2, y2], axis=-1)
    if integral:
        coords = np.round(coords)
    cls = g.integers(0, num_classes, (n, b)).astype(np.float64)
    cls[g.random((n, b)) < pad] = -1
    return torch.from_numpy(np.concatenate([coords, cls[..., None]], axis=-1)).to(dtype)


def random_scores(shape, seed, dtype=torch.float32, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def reference_input(scores):
    # float16/bfloat16 are summed in float32 by the op; hand the reference float32 values.
    if scores.dtype in (torch.float16, torch.bfloat16):
        return scores.float().numpy()
    return scores.numpy()


def boxes_tensor(rows, dtype=torch.float32):
    """One image's boxes from a list of (x1, y1, x2, y2, class) rows: [1, B, 5]."""
    return torch.tensor(rows, dtype=dtype).reshape(1, -1, 5)


# (N, C, H, W, B): one pixel, one class, odd sizes, wide and tall maps, no boxes, many boxes.
CASES = [
    (1, 1, 1, 1, 1),
    (1, 2, 1, 1, 4),
    (2, 3, 1, 7, 3),
    (3, 5, 9, 1, 5),
    (4, 21, 17, 23, 3),
    (8, 21, 41, 41, 20),
    (2, 60, 31, 13, 20),
    (1, 7, 5, 5, 0),
    (5, 11, 63, 65, 8),
    (1, 21, 129, 513, 6),
    (2, 21, 513, 129, 12),
    (1, 4, 321, 321, 3),
]
CASE_IDS = ["x".join(map(str, c)) for c in CASES]


# ---- boxes_to_labels ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_boxes_to_labels_matches_reference(case, dtype):
    n, c, h, w, b = case
    seed = sum(case) + (7 if dtype == torch.float64 else 0)
    for integral in (False, True):
        boxes = random_boxes(n, b, h, w, c, seed, dtype=dtype, integral=integral)
        got = ops.boxes_to_labels(boxes, h, w)
        assert got.dtype == torch.int64 and got.shape == (n, h, w)
        np.testing.assert_array_equal(got.numpy(), ref.boxes_to_labels(boxes.numpy(), h, w))


@pytest.mark.parametrize("fill", [0, -1, 255])
def test_boxes_to_labels_fill(fill):
    boxes = random_boxes(3, 4, 19, 21, 9, 3)
    got = ops.boxes_to_labels(boxes, 19, 21, fill=fill)
    np.testing.assert_array_equal(got.numpy(), ref.boxes_to_labels(boxes.numpy(), 19, 21, fill=fill))
    assert (got == fill).any()  # the boxes leave some pixels uncovered


def test_boxes_to_labels_pixel_centre_rule():
    # x2/y2 are exclusive: integer box (1, 2, 4, 3) covers columns 1..3 of row 2 only.
    got = ops.boxes_to_labels(boxes_tensor([1, 2, 4, 3, 7]), 5, 6)[0]
    want = torch.zeros(5, 6, dtype=torch.int64)
    want[2, 1:4] = 7
    assert torch.equal(got, want)

    # Fractional corners: a pixel counts when its centre (x + 0.5) is in [x1, x2).
    def row(x1, x2):
        return ops.boxes_to_labels(boxes_tensor([x1, 0, x2, 1, 1]), 1, 6)[0, 0].tolist()

    assert row(0.5, 2.5) == [1, 1, 0, 0, 0, 0]  # centres 0.5 and 1.5 in, 2.5 out
    assert row(0.6, 2.6) == [0, 1, 1, 0, 0, 0]  # centre 0.5 < 0.6 out, 2.5 < 2.6 in
    assert row(1.4, 1.6) == [0, 1, 0, 0, 0, 0]  # a box thinner than a pixel still takes its centre
    assert row(1.6, 2.4) == [0, 0, 0, 0, 0, 0]  # ...but not when it misses every centre


def test_boxes_to_labels_boxes_outside_the_image():
    boxes = boxes_tensor(
        [
            [-5, -5, 2, 2, 3],  # partly outside: the top-left 2x2 corner
            [10, 0, 20, 4, 4],  # fully outside, right of the image
            [0, -9, 4, -1, 5],  # fully outside, above
            [3, 2, 99, 99, 6],  # reaches past the bottom-right corner
        ]
    )
    got = ops.boxes_to_labels(boxes, 4, 5)[0]
    want = torch.zeros(4, 5, dtype=torch.int64)
    want[:2, :2] = 3
    want[2:, 3:] = 6
    assert torch.equal(got, want)
    np.testing.assert_array_equal(got.numpy(), ref.boxes_to_labels(boxes.numpy(), 4, 5)[0])


def test_boxes_to_labels_empty_and_inverted_boxes_cover_nothing():
    boxes = boxes_tensor([[2, 1, 2, 4, 1], [1, 3, 4, 3, 2], [4, 1, 1, 3, 3], [1, 4, 4, 1, 4], [3, 3, 0, 0, 5]])
    assert (ops.boxes_to_labels(boxes, 5, 5) == 0).all()
    # An inverted box has a positive "area" (both sides negative) but still covers nothing, and
    # does not hide a real box.
    boxes = boxes_tensor([[4, 4, 0, 0, 1], [0, 0, 4, 4, 2]])
    assert (ops.boxes_to_labels(boxes, 4, 4) == 2).all()


def test_boxes_to_labels_smallest_box_wins_and_first_listed_on_ties():
    nested = boxes_tensor([[0, 0, 8, 8, 1], [2, 2, 6, 6, 2], [3, 3, 4, 4, 3]])
    got = ops.boxes_to_labels(nested, 8, 8)[0]
    assert got[0, 0] == 1 and got[2, 2] == 2 and got[3, 3] == 3 and got[5, 5] == 2
    # Listing order does not matter for nesting: the smallest still wins.
    reordered = nested[:, [2, 0, 1]].contiguous()
    assert torch.equal(ops.boxes_to_labels(reordered, 8, 8)[0], got)
    # Equal areas (4 x 2 and 2 x 4 overlapping at [2, 4) x [2, 4)): the first listed wins.
    ties = boxes_tensor([[0, 2, 4, 4, 5], [2, 0, 4, 4, 6]])
    assert (ops.boxes_to_labels(ties, 4, 4)[0, 2:4, 2:4] == 5).all()
    assert (ops.boxes_to_labels(ties[:, [1, 0]].contiguous(), 4, 4)[0, 2:4, 2:4] == 6).all()
    # Area counts the whole box, also the part outside the image.
    outside = boxes_tensor([[-10, 0, 2, 2, 1], [0, 0, 4, 4, 2]])  # 12x2=24 > 4x4=16
    assert (ops.boxes_to_labels(outside, 4, 4)[0, :2, :2] == 2).all()


def test_boxes_to_labels_padding_rows_and_class_zero():
    boxes = boxes_tensor([[0, 0, 1, 1, -1], [0, 0, 3, 3, 4], [1, 1, 2, 2, 0]])
    got = ops.boxes_to_labels(boxes, 3, 3, fill=9)[0]
    # The padding row is ignored although it is the smallest; the class-0 box paints background.
    want = torch.tensor([[4, 4, 4], [4, 0, 4], [4, 4, 4]])
    assert torch.equal(got, want)


def test_boxes_to_labels_one_pixel_maps():
    boxes = torch.tensor([[[0, 0, 1, 1, 2]], [[0.5, 0.5, 0.6, 0.6, 3]], [[0.6, 0, 1, 1, 4]]], dtype=torch.float64)
    assert ops.boxes_to_labels(boxes, 1, 1).flatten().tolist() == [2, 3, 0]


def test_boxes_to_labels_empty_shapes():
    assert ops.boxes_to_labels(torch.zeros(0, 3, 5), 4, 6).shape == (0, 4, 6)
    assert ops.boxes_to_labels(torch.zeros(2, 0, 5), 4, 6).eq(0).all()
    assert ops.boxes_to_labels(random_boxes(2, 3, 4, 4, 3, 0), 0, 6).shape == (2, 0, 6)


def test_boxes_to_labels_non_contiguous_input():
    boxes = random_boxes(3, 6, 21, 17, 8, 11).transpose(0, 1).contiguous().transpose(0, 1)
    assert not boxes.is_contiguous()
    np.testing.assert_array_equal(
        ops.boxes_to_labels(boxes, 21, 17).numpy(), ref.boxes_to_labels(boxes.numpy(), 21, 17)
    )


# ---- bbox_em_fixed -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("suppress_absent", [False, True])
def test_bbox_em_fixed_matches_reference(case, suppress_absent):
    n, c, h, w, b = case
    seed = 5 * sum(case)
    scores = random_scores((n, c, h, w), seed)
    boxes = random_boxes(n, b, h, w, c, seed)
    got = ops.bbox_em_fixed(scores, boxes, suppress_absent=suppress_absent)
    want = ref.bbox_em_fixed(scores.numpy(), boxes.numpy(), suppress_absent=suppress_absent)
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("score_dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("box_dtype", [torch.float32, torch.float64])
def test_bbox_em_fixed_dtypes(score_dtype, box_dtype):
    scores = random_scores((3, 21, 33, 35), 9, dtype=score_dtype)
    boxes = random_boxes(3, 5, 33, 35, 21, 9, dtype=box_dtype)
    got = ops.bbox_em_fixed(scores, boxes, fg_bias=2.5, bg_bias=1.0)
    want = ref.bbox_em_fixed(reference_input(scores), boxes.numpy(), fg_bias=2.5, bg_bias=1.0)
    np.testing.assert_array_equal(got.numpy(), want)


def test_bbox_em_fixed_semantics():
    # Class 1 boxed on the left half, class 2 boxed nowhere, all pixels of column 5 outside boxes.
    scores = torch.zeros(1, 3, 2, 6)
    scores[0, 1] = torch.tensor([[-2.5, -1.5, 9.0, -9.0, -9.0, 9.0]] * 2)
    scores[0, 2] = torch.tensor([[-9.0, -9.0, -9.0, 3.5, 9.0, 9.0]] * 2)
    boxes = boxes_tensor([[0, 0, 3, 2, 1], [3, 0, 5, 2, 0]])
    got = ops.bbox_em_fixed(scores, boxes)[0, 0].tolist()
    # col 0: -2.5 + 5 < 3 -> bg; col 1: -1.5 + 5 > 3 -> 1; col 2: class 1.
    # cols 3, 4 (inside the class-0 box): class 2 unboosted needs > 3: 3.5 wins, 9 wins.
    # col 5 is outside every box: background whatever the scores say.
    assert got == [0, 1, 1, 2, 2, 0]
    assert ops.bbox_em_fixed(scores, boxes, suppress_absent=True)[0, 0].tolist() == [0, 1, 1, 0, 0, 0]


def test_bbox_em_fixed_without_boxes_is_all_background():
    scores = random_scores((2, 5, 7, 9), 4)
    assert (ops.bbox_em_fixed(scores, torch.zeros(2, 0, 5)) == 0).all()
    padding = torch.full((2, 3, 5), -1.0)
    assert (ops.bbox_em_fixed(scores, padding) == 0).all()


def test_bbox_em_fixed_overlapping_boxes_boost_each_class_once():
    # Two boxes of class 1 overlapping and one of class 2: the overlap of classes 1 and 2 lets the
    # better-scoring of the two win; class 1 is not boosted twice.
    scores = torch.zeros(1, 3, 1, 4)
    scores[0, 1, 0] = torch.tensor([1.0, 1.0, 1.0, 1.0])
    scores[0, 2, 0] = torch.tensor([0.0, 0.0, 2.0, 2.0])
    boxes = boxes_tensor([[0, 0, 3, 1, 1], [1, 0, 4, 1, 1], [2, 0, 4, 1, 2]])
    assert ops.bbox_em_fixed(scores, boxes)[0, 0].tolist() == [1, 1, 2, 2]
    np.testing.assert_array_equal(
        ops.bbox_em_fixed(scores, boxes).numpy(), ref.bbox_em_fixed(scores.numpy(), boxes.numpy())
    )


def test_bbox_em_fixed_non_contiguous_and_empty():
    scores = random_scores((2, 6, 13, 11), 8).transpose(2, 3)
    boxes = random_boxes(2, 4, 11, 13, 6, 8)
    np.testing.assert_array_equal(
        ops.bbox_em_fixed(scores, boxes).numpy(), ref.bbox_em_fixed(scores.numpy(), boxes.numpy())
    )
    assert ops.bbox_em_fixed(torch.zeros(0, 3, 4, 4), torch.zeros(0, 2, 5)).shape == (0, 4, 4)
    assert ops.bbox_em_fixed(torch.zeros(2, 3, 0, 4), torch.zeros(2, 2, 5)).shape == (2, 0, 4)


# ---- center_prior --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES[:9], ids=CASE_IDS[:9])
@pytest.mark.parametrize("portion", [0.2, 0.5, 1.0])
def test_center_prior_matches_reference(case, portion):
    n, c, h, w, b = case
    boxes = random_boxes(n, b, h, w, c, 3 * sum(case), integral=True)
    got = ops.center_prior(boxes, h, w, portion)
    np.testing.assert_array_equal(got.numpy(), ref.center_prior(boxes.numpy(), h, w, portion))


def test_center_prior_keeps_the_centre_portion():
    # A 10 x 10 box: its centre area at 20% is sqrt(0.2) * 10 = 4.47 wide, centred on (5, 5):
    # [2.76, 7.24) holds the centres 3.5 .. 6.5, a 4 x 4 patch.
    boxes = boxes_tensor([[0, 0, 10, 10, 3]])
    got = ops.center_prior(boxes, 10, 10)[0]
    want = torch.full((10, 10), -1, dtype=torch.int64)
    want[3:7, 3:7] = 3
    assert torch.equal(got, want)
    # portion 1 is the whole box (with -1 outside).
    assert torch.equal(ops.center_prior(boxes, 10, 12, 1.0), ops.boxes_to_labels(boxes, 10, 12, fill=-1))


def test_center_prior_checks():
    boxes = boxes_tensor([[0, 0, 4, 4, 1]])
    for portion in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="portion must be in"):
            ops.center_prior(boxes, 4, 4, portion)
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, B, 5\], got \[1, 4\]"):
        ops.center_prior(boxes[0, :, :4], 4, 4)
    # Float32/float64 boxes only, as boxes_to_labels takes (integer boxes used to pass here, promoted
    # to float32 by the centre arithmetic, while boxes_to_labels refuses them).
    with pytest.raises(ValueError, match="boxes must be float32 or float64, got torch.int32"):
        ops.center_prior(boxes.int(), 4, 4)


# ---- opcheck, input checks, devices -------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_boxes_to_labels(device):
    boxes = random_boxes(3, 4, 9, 11, 5, 1).to(device)
    torch.library.opcheck(torch.ops.emseg.boxes_to_labels.default, (boxes, 9, 11, 0))
    torch.library.opcheck(torch.ops.emseg.boxes_to_labels.default, (boxes.double(), 1, 7, -1))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_bbox_em_fixed(device):
    scores = random_scores((3, 5, 9, 11), 1).to(device)
    boxes = random_boxes(3, 4, 9, 11, 5, 1).to(device)
    torch.library.opcheck(torch.ops.emseg.bbox_em_fixed.default, (scores, boxes, 5.0, 3.0, False))
    torch.library.opcheck(torch.ops.emseg.bbox_em_fixed.default, (scores, boxes, 1.0, 0.5, True))


def sample_boxes():
    return boxes_tensor([[0, 0, 3, 3, 1], [1, 1, 4, 4, 2], [0, 0, 0, 0, -1]]).repeat(2, 1, 1)


def with_value(boxes, index, value):
    boxes = boxes.clone()
    boxes[index] = value
    return boxes


BOX_CHECKS = [
    (lambda b: b.int(), r"boxes must be float32 or float64, got Int"),
    (lambda b: b.half(), r"boxes must be float32 or float64, got Half"),
    (lambda b: b[0], r"boxes must be a 3-D tensor \[N, B, 5\] of \(x1, y1, x2, y2, class\), got shape \[3, 5\]"),
    (lambda b: b[..., :4], r"boxes must have shape \[N, B, 5\] of \(x1, y1, x2, y2, class\), got \[2, 3, 4\]"),
    (lambda b: with_value(b, (0, 1, 2), float("nan")), r"boxes contains NaN or infinite values"),
    (lambda b: with_value(b, (1, 0, 0), float("-inf")), r"boxes contains NaN or infinite values"),
    (lambda b: with_value(b, (1, 0, 4), 1.5), r"boxes\[\.\.\., 4\] \(class\) must hold whole numbers"),
    (
        lambda b: with_value(b, (0, 2, 4), -2.0),
        r"boxes\[\.\.\., 4\] \(class\) must be >= -1 \(-1 marks padding\), got -2",
    ),
]
BOX_CHECK_IDS = ["int", "half", "2d", "4-fields", "nan", "inf", "fractional-class", "class-below-minus-1"]


@pytest.mark.parametrize("make, message", BOX_CHECKS, ids=BOX_CHECK_IDS)
def test_boxes_to_labels_input_checks(make, message):
    with pytest.raises(RuntimeError, match=f"boxes_to_labels: {message}"):
        ops.boxes_to_labels(make(sample_boxes()), 4, 4)


@pytest.mark.parametrize("make, message", BOX_CHECKS, ids=BOX_CHECK_IDS)
def test_bbox_em_fixed_box_checks(make, message):
    with pytest.raises(RuntimeError, match=f"bbox_em_fixed: {message}"):
        ops.bbox_em_fixed(random_scores((2, 5, 4, 4), 0), make(sample_boxes()))


@pytest.mark.parametrize("height, width", [(-1, 4), (4, -3)])
def test_boxes_to_labels_size_checks(height, width):
    with pytest.raises(
        RuntimeError,
        match=f"boxes_to_labels: height and width must be >= 0, got height={height}, width={width}",
    ):
        ops.boxes_to_labels(sample_boxes(), height, width)


@pytest.mark.parametrize("height, width", [(10**5, 10**5), (2**40, 2**40), (1, 2**62)])
def test_boxes_to_labels_refuses_an_output_too_large_before_allocating(height, width):
    # [2, H, W] int64: more bytes than this machine has, or than int64 counts; the allocator's own
    # message would name neither the argument nor the shape.
    message = (
        rf"boxes_to_labels: the output \[N, height, width\] = \[2, {height}, {width}\] \(Long\) "
        r"(needs [0-9.]+ GiB, more than the [0-9.]+ GiB of memory of cpu|has more bytes than int64 can count)"
    )
    with pytest.raises(RuntimeError, match=message):
        ops.boxes_to_labels(sample_boxes(), height, width)
    with pytest.raises(RuntimeError, match=message):
        ops.center_prior(sample_boxes(), height, width)


def test_boxes_to_labels_accepts_any_class_id():
    # No score channels to index: any whole class >= -1 is a label.
    boxes = with_value(sample_boxes(), (0, 0, 4), 1000.0)
    assert ops.boxes_to_labels(boxes, 4, 4)[0, 0, 0] == 1000


@pytest.mark.parametrize("value", [1e20, 2.0**63, 3.0e38])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_boxes_to_labels_rejects_classes_beyond_int64(value, dtype):
    # Such a class cannot become an int64 label (the conversion is undefined): refuse it by name.
    boxes = with_value(sample_boxes().to(dtype), (0, 0, 4), value)
    message = r"boxes_to_labels: boxes\[\.\.\., 4\] \(class\) must be < 2\^63 \(an int64 label\), got"
    with pytest.raises(RuntimeError, match=message):
        ops.boxes_to_labels(boxes, 4, 4)
    with pytest.raises(RuntimeError, match=message):
        ops.center_prior(boxes, 4, 4)


def test_boxes_to_labels_accepts_the_largest_int64_classes():
    largest = float(torch.tensor(2.0**63).nextafter(torch.tensor(0.0)).item())  # below 2^63
    boxes = with_value(sample_boxes().double(), (0, 0, 4), largest)
    assert ops.boxes_to_labels(boxes, 4, 4)[0, 0, 0].item() == int(largest)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda s, b: (s, with_value(b, (1, 1, 4), 5.0)),
            r"boxes\[\.\.\., 4\] \(class\) must be < C = 5 \(the number of score channels\), got 5",
        ),
        (
            lambda s, b: (s, b[:1]),
            r"boxes.shape\[0\] must equal N = 2 \(the batch size of scores\), got shape \[1, 3, 5\]",
        ),
        (lambda s, b: (s, b.to("meta")), r"boxes must be on the same device as scores"),
        (lambda s, b: (s.int(), b), r"scores must be a floating-point tensor .* got Int"),
        (lambda s, b: (s[0], b), r"scores must be a 4-D tensor \[N, C, H, W\], got shape \[5, 4, 4\]"),
        (lambda s, b: (s[:, :0], b), r"scores must have at least one class"),
        (lambda s, b: (with_value(s, (0, 1, 2, 2), float("nan")), b), r"scores contains NaN or infinite"),
    ],
    ids=["class-too-large", "batch-mismatch", "device-mismatch", "int-scores", "3d-scores", "no-classes", "nan-scores"],
)
def test_bbox_em_fixed_input_checks(make, message):
    scores, boxes = make(random_scores((2, 5, 4, 4), 0), sample_boxes())
    with pytest.raises(RuntimeError, match=f"bbox_em_fixed: {message}"):
        ops.bbox_em_fixed(scores, boxes)


@pytest.mark.parametrize("kwargs", [dict(fg_bias=float("nan")), dict(bg_bias=float("-inf"))])
def test_bbox_em_fixed_argument_checks(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(RuntimeError, match=f"bbox_em_fixed: {name} must be a finite number"):
        ops.bbox_em_fixed(random_scores((2, 5, 4, 4), 0), sample_boxes(), **kwargs)


@pytest.mark.parametrize("device", PARITY_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_boxes_to_labels_device_parity(device, dtype):
    boxes = random_boxes(20, 6, 321, 321, 21, 23, dtype=dtype)
    cpu = ops.boxes_to_labels(boxes, 321, 321)
    dev = run_on(device, ops.boxes_to_labels, boxes, 321, 321)
    torch.testing.assert_close(dev, cpu, rtol=0, atol=0)
    torch.testing.assert_close(
        run_on(device, ops.center_prior, boxes, 97, 61), ops.center_prior(boxes, 97, 61), rtol=0, atol=0
    )


@pytest.mark.parametrize("device", PARITY_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("suppress_absent", [False, True])
def test_bbox_em_fixed_device_parity(device, dtype, suppress_absent):
    scores = random_scores((4, 21, 65, 47), 13, dtype=dtype)
    boxes = random_boxes(4, 5, 65, 47, 21, 13)
    cpu = ops.bbox_em_fixed(scores, boxes, suppress_absent=suppress_absent)
    dev = run_on(device, ops.bbox_em_fixed, scores, boxes, suppress_absent=suppress_absent)
    torch.testing.assert_close(dev, cpu, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_box_ops_on_empty_inputs_per_device(device):
    assert ops.boxes_to_labels(torch.zeros(0, 3, 5, device=device), 4, 6).shape == (0, 4, 6)
    scores = torch.zeros(2, 3, 0, 4, device=device)
    assert ops.bbox_em_fixed(scores, torch.zeros(2, 2, 5, device=device)).shape == (2, 0, 4)
    assert (ops.bbox_em_fixed(torch.ones(2, 3, 4, 4, device=device), torch.zeros(2, 0, 5, device=device)) == 0).all()
