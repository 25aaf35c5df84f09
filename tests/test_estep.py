"""E-step operators (em_fixed, em_adapt) against the NumPy references in reference_estep.py."""

import math

import numpy as np
import pytest
import reference_estep as ref
import torch
from conftest import CUDA_SKIP_REASON, DEVICES
from gpu_on_cpu.backends import PARITY_DEVICES, run_on
from hypothesis import given, settings
from hypothesis import strategies as st

import emseg
from emseg import ops

# (N, C, H, W): odd sizes, one pixel, one class, wide and tall maps, the training shapes.
SHAPES = [
    (1, 1, 1, 1),
    (1, 2, 1, 1),
    (3, 5, 7, 9),
    (8, 21, 41, 41),
    (2, 60, 13, 17),
    (1, 21, 1, 513),
    (1, 3, 513, 1),
    (2, 4, 129, 67),
    (1, 21, 513, 513),
]
# em_adapt's reference bisects every pixel's threshold; keep its largest case smaller.
ADAPT_SHAPES = SHAPES[:-1] + [(1, 4, 201, 257)]


def random_scores(shape, seed, dtype=torch.float32, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def random_present(n, c, seed, p=0.3):
    g = torch.Generator().manual_seed(seed + 1)
    present = torch.rand((n, c), generator=g) < p
    present[:, 0] = True
    return present


def reference_input(scores: torch.Tensor) -> np.ndarray:
    # float16/bfloat16 are summed in float32 by the op; hand the reference float32 values.
    if scores.dtype in (torch.float16, torch.bfloat16):
        return scores.float().numpy()
    return scores.numpy()


# ---- em_fixed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("suppress_absent", [False, True])
def test_em_fixed_matches_reference(shape, suppress_absent):
    seed = sum(shape)
    scores = random_scores(shape, seed)
    present = random_present(shape[0], shape[1], seed)
    got = ops.em_fixed(scores, present, suppress_absent=suppress_absent)
    want = ref.em_fixed(scores.numpy(), present.numpy(), suppress_absent=suppress_absent)
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_em_fixed_dtypes(dtype):
    scores = random_scores((2, 21, 33, 35), 7, dtype=dtype)
    present = random_present(2, 21, 7)
    got = ops.em_fixed(scores, present, fg_bias=2.5, bg_bias=1.0)
    want = ref.em_fixed(reference_input(scores), present.numpy(), fg_bias=2.5, bg_bias=1.0)
    np.testing.assert_array_equal(got.numpy(), want)


def test_em_fixed_biases_follow_the_paper():
    # Background +3, present foreground +5, absent +0: a present class beats background by more
    # than 2 only after its bias; an absent class needs a 3-point lead to beat background.
    scores = torch.zeros(1, 3, 1, 4)
    scores[0, 1, 0, :] = torch.tensor([-2.5, -1.5, 2.5, 3.5])  # present class 1
    scores[0, 2, 0, :] = torch.tensor([-9.0, -9.0, -9.0, -9.0])  # absent class 2
    present = torch.tensor([[True, True, False]])
    labels = ops.em_fixed(scores, present)
    assert labels.tolist() == [[[0, 1, 1, 1]]]
    scores[0, 2, 0, 3] = 9.5  # absent class: 9.5 > 3.5 + 5, wins unless suppressed
    assert ops.em_fixed(scores, present)[0, 0, 3].item() == 2
    assert ops.em_fixed(scores, present, suppress_absent=True)[0, 0, 3].item() == 1


@pytest.mark.parametrize(
    "fill",
    [0.0, 1e30, -1e30, 3.0e38, 1e-38, 1e-45],
    ids=["zeros", "huge", "huge-negative", "near-max", "tiny", "denormal"],
)
def test_em_fixed_adversarial_equal_scores(fill):
    scores = torch.full((2, 6, 5, 3), fill)
    present = torch.tensor([[1, 0, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    got = ops.em_fixed(scores, present)
    want = ref.em_fixed(scores.numpy(), present.numpy())
    np.testing.assert_array_equal(got.numpy(), want)
    # Equal scores: the lowest present foreground class wins by its larger bias, unless the biases
    # vanish in float32 rounding at this magnitude; then the tie goes to background.
    f32 = np.float32
    fg_wins = f32(fill) + f32(5) > f32(fill) + f32(3)
    assert (got[0] == (2 if fg_wins else 0)).all() and (got[1] == 0).all()


def test_em_fixed_no_foreground_present_gives_background_with_suppression():
    scores = random_scores((3, 7, 9, 9), 3)
    present = torch.zeros(3, 7, dtype=torch.bool)
    assert (ops.em_fixed(scores, present, suppress_absent=True) == 0).all()
    # background flag is implied: an all-False row behaves as [True, False, ...]
    np.testing.assert_array_equal(ops.em_fixed(scores, present).numpy(), ref.em_fixed(scores.numpy(), present.numpy()))


def test_em_fixed_non_contiguous_input():
    scores = random_scores((2, 9, 11, 6), 5).permute(0, 1, 3, 2)
    present = random_present(2, 9, 5)
    np.testing.assert_array_equal(ops.em_fixed(scores, present).numpy(), ref.em_fixed(scores.numpy(), present.numpy()))


def test_em_fixed_empty_batch_and_map():
    assert ops.em_fixed(torch.zeros(0, 3, 4, 4), torch.zeros(0, 3, dtype=torch.bool)).shape == (0, 4, 4)
    assert ops.em_fixed(torch.zeros(2, 3, 0, 4), torch.ones(2, 3, dtype=torch.bool)).shape == (2, 0, 4)


# ---- em_adapt -----------------------------------------------------------------------------------


def assert_shares_met(labels, present, fg_portion=0.2, bg_portion=0.4):
    n, h, w = labels.shape
    for i in range(n):
        counts = ref.required_counts(present[i].numpy(), fg_portion, bg_portion, h * w)
        won = np.bincount(labels[i].flatten().numpy(), minlength=present.shape[1])
        pres = present[i].clone()
        pres[0] = True
        assert (won[~pres.numpy()] == 0).all(), "an absent class took pixels"
        assert (won >= counts).all(), f"image {i}: won {won.tolist()} < required {counts.tolist()}"


@pytest.mark.parametrize("shape", ADAPT_SHAPES)
def test_em_adapt_matches_reference(shape):
    seed = 3 * sum(shape)
    scores = random_scores(shape, seed)
    present = random_present(shape[0], shape[1], seed, p=0.15)
    labels, biases = ops.em_adapt(scores, present)
    want_labels, want_biases = ref.em_adapt(scores.numpy(), present.numpy())
    np.testing.assert_array_equal(labels.numpy(), want_labels)
    np.testing.assert_array_equal(biases.numpy(), want_biases)
    assert_shares_met(labels, present)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_em_adapt_dtypes(dtype):
    scores = random_scores((2, 5, 23, 29), 11, dtype=dtype)
    present = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 1, 1, 1]], dtype=torch.bool)
    labels, biases = ops.em_adapt(scores, present, fg_portion=0.15, bg_portion=0.3)
    want_labels, want_biases = ref.em_adapt(reference_input(scores), present.numpy(), fg_portion=0.15, bg_portion=0.3)
    np.testing.assert_array_equal(labels.numpy(), want_labels)
    np.testing.assert_array_equal(biases.numpy(), want_biases)


def test_em_adapt_labels_are_the_argmax_of_the_biased_scores():
    scores = random_scores((4, 8, 31, 37), 21)
    present = random_present(4, 8, 21, p=0.4)
    labels, biases = ops.em_adapt(scores, present)
    biased = scores.double() + biases[:, :, None, None]
    np.testing.assert_array_equal(labels.numpy(), biased.argmax(dim=1).numpy())
    assert torch.isneginf(biases[~present.clone().index_fill_(1, torch.tensor([0]), True)]).all()


def test_em_adapt_biases_are_minimal_for_one_foreground_class():
    # With background and one class, one exact raise solves the image: lowering the raised bias by
    # one step must break that class's share, and a class never raised keeps bias 0.
    scores = random_scores((6, 4, 19, 23), 5)
    scores[:3, 0] += 8.0  # background dominates: the foreground class must be raised
    scores[3:, 0] -= 8.0  # background must be raised
    present = torch.zeros(6, 4, dtype=torch.bool)
    present[torch.arange(6), torch.tensor([1, 2, 3, 1, 2, 3])] = True
    labels, biases = ops.em_adapt(scores, present)
    m = 19 * 23
    raised = 0
    for i in range(6):
        counts = ref.required_counts(present[i].numpy(), 0.2, 0.4, m)
        for c in torch.nonzero(present[i].index_fill(0, torch.tensor([0]), True)).flatten().tolist():
            if biases[i, c] == 0:
                continue
            raised += 1
            b = biases[i].clone()
            b[c] = math.nextafter(b[c].item(), -math.inf)
            relabel = (scores[i].double() + b[:, None, None]).argmax(dim=0)
            assert (relabel == c).sum().item() < counts[c]
    assert raised == 6  # one raise per image, each checked above


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 12),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    fg=st.floats(0.0, 0.5),
    bg=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([1e-3, 1.0, 50.0, 1e6]),
)
def test_em_adapt_share_guarantee_property(n, c, h, w, fg, bg, seed, scale):
    scores = random_scores((n, c, h, w), seed, dtype=torch.float64, scale=scale)
    present = random_present(n, c, seed, p=0.5)
    labels, biases = ops.em_adapt(scores, present, fg_portion=fg, bg_portion=bg)
    for i in range(n):
        # The documented limitation: with no pixel to spare the chains may end a few pixels short.
        spare = h * w - ref.required_counts(present[i].numpy(), fg, bg, h * w).sum()
        if spare > 0:
            assert_shares_met(labels[i : i + 1], present[i : i + 1], fg, bg)


def test_em_adapt_without_spare_pixels_is_deterministic_and_nearly_balanced():
    # Shares that use up every pixel (5 classes x 4 of 20 pixels): the solver can end short, as
    # documented; what it returns is deterministic, agrees with the reference and misses little.
    shortfalls = []
    for seed in range(40):
        scores = random_scores((1, 10, 4, 5), seed, dtype=torch.float64, scale=50.0)
        present = torch.zeros(1, 10, dtype=torch.bool)
        present[0, [1, 4, 5, 6, 8]] = True
        labels, biases = ops.em_adapt(scores, present, fg_portion=0.2, bg_portion=0.0)
        want_labels, want_biases = ref.em_adapt(scores.numpy(), present.numpy(), 0.2, 0.0)
        np.testing.assert_array_equal(labels.numpy(), want_labels)
        np.testing.assert_array_equal(biases.numpy(), want_biases)
        won = np.bincount(labels.flatten().numpy(), minlength=10)
        shortfalls.append(int(np.maximum(4 - won[[1, 4, 5, 6, 8]], 0).sum()))
    assert max(shortfalls) <= 4 and np.mean(np.array(shortfalls) == 0) >= 0.8, shortfalls


def test_em_adapt_overfull_shares_are_scaled_to_fit():
    # background 0.4 + 4 x 0.2 = 1.2 > 1: each share is divided by 1.2 and rounded down.
    scores = random_scores((1, 5, 20, 30), 9)
    present = torch.ones(1, 5, dtype=torch.bool)
    labels, _ = ops.em_adapt(scores, present)
    won = np.bincount(labels.flatten().numpy(), minlength=5)
    m = 600
    assert won[0] >= math.floor(m * 0.4 / 1.2) and (won[1:] >= math.floor(m * 0.2 / 1.2)).all()
    assert won.sum() == m
    assert_shares_met(labels, present)


def test_em_adapt_only_background_present():
    scores = random_scores((2, 6, 8, 8), 2)
    present = torch.zeros(2, 6, dtype=torch.bool)
    labels, biases = ops.em_adapt(scores, present)
    assert (labels == 0).all()
    assert (biases[:, 0] == 0).all() and torch.isneginf(biases[:, 1:]).all()


@pytest.mark.parametrize("fill", [0.0, 1e30, -3.0e38, 1e-45])
def test_em_adapt_equal_scores_are_deterministic_and_match_reference(fill):
    # Identical pixels cannot be split: the op still terminates, deterministically, as documented.
    scores = torch.full((1, 3, 4, 5), fill)
    present = torch.ones(1, 3, dtype=torch.bool)
    labels, biases = ops.em_adapt(scores, present, max_iter=7)
    again, _ = ops.em_adapt(scores, present, max_iter=7)
    assert torch.equal(labels, again)
    want_labels, want_biases = ref.em_adapt(scores.numpy(), present.numpy(), max_iter=7)
    np.testing.assert_array_equal(labels.numpy(), want_labels)
    np.testing.assert_array_equal(biases.numpy(), want_biases)
    assert len(torch.unique(labels)) == 1


def test_em_adapt_huge_and_tiny_values():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 4, 17, 19, generator=g)
    scores[0] *= 1e37
    scores[1] *= 1e-40  # denormal range of float32
    present = torch.ones(2, 4, dtype=torch.bool)
    labels, biases = ops.em_adapt(scores, present)
    want_labels, want_biases = ref.em_adapt(scores.numpy(), present.numpy())
    np.testing.assert_array_equal(labels.numpy(), want_labels)
    np.testing.assert_array_equal(biases.numpy(), want_biases)
    assert_shares_met(labels[:1], present[:1])


# ---- opcheck, input checks, devices ------------------------------------------------------------


def sample_inputs(device="cpu"):
    scores = random_scores((2, 5, 7, 9), 1).to(device)
    present = random_present(2, 5, 1).to(device)
    return scores, present


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_em_fixed(device):
    scores, present = sample_inputs(device)
    torch.library.opcheck(torch.ops.emseg.em_fixed.default, (scores, present, 5.0, 3.0, False))
    torch.library.opcheck(torch.ops.emseg.em_fixed.default, (scores, present, 1.0, 0.5, True))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_em_adapt(device):
    scores, present = sample_inputs(device)
    torch.library.opcheck(torch.ops.emseg.em_adapt.default, (scores, present, 0.2, 0.4, 100000))


@pytest.mark.parametrize("op", ["em_fixed", "em_adapt"])
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s, p: (s.int(), p), r"scores must be a floating-point tensor .* got Int"),
        (lambda s, p: (s[0], p), r"scores must be a 4-D tensor \[N, C, H, W\], got shape \[5, 7, 9\]"),
        (lambda s, p: (s[:, :0], p[:, :0]), r"scores must have at least one class"),
        (
            lambda s, p: (s.index_put((torch.tensor(0),), torch.tensor(float("nan"))), p),
            r"scores contains NaN or infinite",
        ),
        (
            lambda s, p: (s.index_put((torch.tensor(1),), torch.tensor(float("inf"))), p),
            r"scores contains NaN or infinite",
        ),
        (lambda s, p: (s, p.float()), r"present must have dtype Bool, got Float"),
        (lambda s, p: (s, p[:1]), r"present must have shape \[N, C\] = \[2, 5\] to match scores, got \[1, 5\]"),
        (lambda s, p: (s, p[0]), r"present must be a 2-D tensor \[N, C\]"),
        (lambda s, p: (s, p.to("meta")), r"present must be on the same device as scores"),
    ],
)
def test_input_checks(op, make, message):
    scores, present = make(*sample_inputs())
    with pytest.raises(RuntimeError, match=f"{op}: {message}"):
        getattr(ops, op)(scores, present)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fg_bias=float("nan")), r"em_fixed: fg_bias must be a finite number"),
        (dict(bg_bias=float("inf")), r"em_fixed: bg_bias must be a finite number"),
    ],
)
def test_em_fixed_argument_checks(kwargs, message):
    with pytest.raises(RuntimeError, match=message):
        ops.em_fixed(*sample_inputs(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fg_portion=-0.1), r"em_adapt: fg_portion must be in \[0, 1\], got -0.1"),
        (dict(bg_portion=1.5), r"em_adapt: bg_portion must be in \[0, 1\], got 1.5"),
        (dict(max_iter=0), r"em_adapt: max_iter must be >= 1, got 0"),
    ],
)
def test_em_adapt_argument_checks(kwargs, message):
    with pytest.raises(RuntimeError, match=message):
        ops.em_adapt(*sample_inputs(), **kwargs)


def test_cuda_kernels_report():
    # Documents in the test log whether the CUDA parity tests below could run here.
    if not emseg.cuda_available():
        pytest.skip(CUDA_SKIP_REASON)
    assert emseg.built_with_cuda()


@pytest.mark.parametrize("device", PARITY_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_em_fixed_device_parity(device, dtype):
    scores = random_scores((4, 21, 65, 47), 13, dtype=dtype)
    present = random_present(4, 21, 13)
    cpu = ops.em_fixed(scores, present)
    dev = run_on(device, ops.em_fixed, scores, present)
    torch.testing.assert_close(dev, cpu, rtol=0, atol=0)


@pytest.mark.parametrize("device", PARITY_DEVICES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 7, 9), (20, 21, 41, 41), (2, 21, 321, 321)])
def test_em_adapt_device_parity(device, shape):
    scores = random_scores(shape, 17)
    present = random_present(shape[0], shape[1], 17, p=0.2)
    cpu_labels, cpu_biases = ops.em_adapt(scores, present)
    labels, biases = run_on(device, ops.em_adapt, scores, present)
    torch.testing.assert_close(labels, cpu_labels, rtol=0, atol=0)
    torch.testing.assert_close(biases, cpu_biases, rtol=0, atol=0)


def test_em_adapt_biases_backward_raises_until_a_gradient_is_defined():
    scores = torch.randn(1, 3, 4, 4, requires_grad=True)
    labels, biases = ops.em_adapt(scores, torch.ones(1, 3, dtype=torch.bool))
    assert labels.grad_fn is None and biases.grad_fn is not None
    with pytest.raises(NotImplementedError, match="emseg.em_adapt has no backward: no gradient is defined"):
        biases.sum().backward()
    assert scores.grad is None
