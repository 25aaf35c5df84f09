"""The fake (meta) kernels run every input check of the native kernels that needs no tensor data.

Each case builds an op's arguments; it runs on the CPU kernel and, with every tensor moved to the
meta device, on the fake kernel. Both must raise a RuntimeError naming the same argument, or both
succeed with the same output shapes and dtypes. Checks of values (NaN, class ranges, the entries
of ``sizes``) cannot run without data: VALUE_CHECKS asserts that the CPU kernel raises and that the
fake kernel, which sees no values, does not.
"""

from __future__ import annotations

import pytest
import torch

import emseg  # noqa: F401  (registers torch.ops.emseg)

OPS = torch.ops.emseg


def scores(n=2, c=5, h=4, w=4, dtype=torch.float32):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0)).to(dtype)


def present(n=2, c=5):
    return torch.ones(n, c, dtype=torch.bool)


def boxes(n=2):
    return torch.tensor([[0, 0, 3, 3, 1], [1, 1, 4, 4, 2], [0, 0, 0, 0, -1]], dtype=torch.float32).repeat(n, 1, 1)


def with_value(t, index, value):
    t = t.clone()
    t[index] = value
    return t


def crf_args(
    unary=None, image=None, compat=None, pos=(3.0, 3.0), bi=(60.0, 60.0, 5.0, 5.0, 5.0), iterations=1, sizes=None
):
    unary = torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(1)) if unary is None else unary
    image = torch.zeros(1, 3, 6, 7, dtype=torch.uint8) if image is None else image
    labels = unary.shape[1] if unary.dim() == 4 else 3
    compat = torch.stack([-torch.eye(labels), -torch.eye(labels)]) if compat is None else compat
    return (OPS.dense_crf, (unary, image, compat, list(pos), list(bi), iterations, sizes, False))


def lattice_args(values=None, features=None):
    values = torch.rand(5, 2) if values is None else values
    features = torch.rand(5, 3) if features is None else features
    return (OPS.permutohedral_filter, (values, features, True))


def em_fixed_args(s=None, p=None, fg=5.0, bg=3.0):
    return (OPS.em_fixed, (scores() if s is None else s, present() if p is None else p, fg, bg, False))


def em_adapt_args(s=None, p=None, fg=0.2, bg=0.4, max_iter=100):
    return (OPS.em_adapt, (scores() if s is None else s, present() if p is None else p, fg, bg, max_iter))


def boxes_to_labels_args(b=None, height=4, width=4):
    return (OPS.boxes_to_labels, (boxes() if b is None else b, height, width, 0))


def bbox_em_fixed_args(s=None, b=None, fg=5.0, bg=3.0):
    return (OPS.bbox_em_fixed, (scores() if s is None else s, boxes() if b is None else b, fg, bg, False))


def huge(*shape, dtype=torch.float32):
    """A tensor of the given shape whose storage is one element (the checks read shapes only)."""
    return torch.zeros((), dtype=dtype).expand(*shape)


CASES = {
    # Valid inputs: both succeed with the same output shapes and dtypes.
    "em_fixed-ok": lambda: em_fixed_args(),
    "em_fixed-empty": lambda: em_fixed_args(scores(0, 3, 2, 2), present(0, 3)),
    "em_fixed-float16": lambda: em_fixed_args(scores(dtype=torch.float16)),
    "em_adapt-ok": lambda: em_adapt_args(),
    "boxes_to_labels-ok": lambda: boxes_to_labels_args(),
    "boxes_to_labels-no-boxes": lambda: boxes_to_labels_args(torch.zeros(2, 0, 5), 3, 0),
    "bbox_em_fixed-ok": lambda: bbox_em_fixed_args(),
    "bbox_em_fixed-double-boxes": lambda: bbox_em_fixed_args(b=boxes().double()),
    "lattice-ok": lambda: lattice_args(),
    "lattice-batched": lambda: lattice_args(torch.rand(2, 5, 4), torch.rand(2, 5, 16)),
    "lattice-empty": lambda: lattice_args(torch.rand(0, 2), torch.rand(0, 3)),
    "crf-ok": lambda: crf_args(),
    "crf-sizes": lambda: crf_args(sizes=torch.tensor([[3, 4]])),
    "crf-zero-iterations": lambda: crf_args(iterations=0),
    # E-step checks (csrc/estep).
    "em_fixed-3d-scores": lambda: em_fixed_args(scores()[0]),
    "em_fixed-int-scores": lambda: em_fixed_args(scores().int()),
    "em_fixed-no-classes": lambda: em_fixed_args(scores(c=0), present(c=0)),
    "em_fixed-1d-present": lambda: em_fixed_args(p=present()[0]),
    "em_fixed-float-present": lambda: em_fixed_args(p=present().float()),
    "em_fixed-present-shape": lambda: em_fixed_args(p=present(c=4)),
    "em_fixed-present-batch": lambda: em_fixed_args(p=present(n=3)),
    "em_fixed-nan-fg_bias": lambda: em_fixed_args(fg=float("nan")),
    "em_fixed-inf-bg_bias": lambda: em_fixed_args(bg=float("inf")),
    "em_adapt-3d-scores": lambda: em_adapt_args(scores()[0]),
    "em_adapt-bool-scores": lambda: em_adapt_args(scores().bool()),
    "em_adapt-int-present": lambda: em_adapt_args(p=present().int()),
    "em_adapt-present-shape": lambda: em_adapt_args(p=present(c=6)),
    "em_adapt-fg_portion": lambda: em_adapt_args(fg=-0.1),
    "em_adapt-bg_portion": lambda: em_adapt_args(bg=1.5),
    "em_adapt-nan-portion": lambda: em_adapt_args(fg=float("nan")),
    "em_adapt-max_iter": lambda: em_adapt_args(max_iter=0),
    # Box checks (csrc/boxes).
    "boxes_to_labels-int": lambda: boxes_to_labels_args(boxes().int()),
    "boxes_to_labels-half": lambda: boxes_to_labels_args(boxes().half()),
    "boxes_to_labels-2d": lambda: boxes_to_labels_args(boxes()[0]),
    "boxes_to_labels-4-fields": lambda: boxes_to_labels_args(boxes()[..., :4]),
    "boxes_to_labels-height": lambda: boxes_to_labels_args(height=-1),
    "boxes_to_labels-width": lambda: boxes_to_labels_args(width=-3),
    "bbox_em_fixed-3d-scores": lambda: bbox_em_fixed_args(scores()[0]),
    "bbox_em_fixed-int-scores": lambda: bbox_em_fixed_args(scores().int()),
    "bbox_em_fixed-no-classes": lambda: bbox_em_fixed_args(scores(c=0)),
    "bbox_em_fixed-int-boxes": lambda: bbox_em_fixed_args(b=boxes().int()),
    "bbox_em_fixed-2d-boxes": lambda: bbox_em_fixed_args(b=boxes()[0]),
    "bbox_em_fixed-6-fields": lambda: bbox_em_fixed_args(b=torch.zeros(2, 3, 6)),
    "bbox_em_fixed-batch": lambda: bbox_em_fixed_args(b=boxes(n=1)),
    "bbox_em_fixed-nan-fg_bias": lambda: bbox_em_fixed_args(fg=float("nan")),
    "bbox_em_fixed-inf-bg_bias": lambda: bbox_em_fixed_args(bg=float("-inf")),
    # Lattice checks (csrc/lattice).
    "lattice-1d-values": lambda: lattice_args(torch.zeros(5), torch.zeros(5, 2)),
    "lattice-4d-values": lambda: lattice_args(torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2)),
    "lattice-dims-differ": lambda: lattice_args(torch.zeros(5, 2), torch.zeros(1, 5, 2)),
    "lattice-double-values": lambda: lattice_args(torch.zeros(5, 2, dtype=torch.float64)),
    "lattice-int-features": lambda: lattice_args(features=torch.zeros(5, 2, dtype=torch.int32)),
    "lattice-points-differ": lambda: lattice_args(torch.zeros(5, 2), torch.zeros(6, 2)),
    "lattice-P50-for-P49": lambda: lattice_args(torch.zeros(49, 2), torch.zeros(50, 2)),
    "lattice-batch-differs": lambda: lattice_args(torch.zeros(2, 5, 2), torch.zeros(3, 5, 2)),
    "lattice-D0": lambda: lattice_args(features=torch.zeros(5, 0)),
    "lattice-D17": lambda: lattice_args(features=torch.zeros(5, 17)),
    "lattice-too-many-points": lambda: lattice_args(huge(2**26, 1), huge(2**26, 16)),
    # Dense-CRF checks (csrc/crf).
    "crf-3d-unary": lambda: crf_args(unary=torch.rand(3, 6, 7)),
    "crf-double-unary": lambda: crf_args(unary=torch.rand(1, 3, 6, 7, dtype=torch.float64)),
    "crf-no-labels": lambda: crf_args(unary=torch.rand(1, 0, 6, 7), compat=torch.zeros(2, 0, 0)),
    "crf-3d-image": lambda: crf_args(image=torch.zeros(3, 6, 7, dtype=torch.uint8)),
    "crf-float-image": lambda: crf_args(image=torch.zeros(1, 3, 6, 7)),
    "crf-image-batch": lambda: crf_args(image=torch.zeros(2, 3, 6, 7, dtype=torch.uint8)),
    "crf-image-channels": lambda: crf_args(image=torch.zeros(1, 4, 6, 7, dtype=torch.uint8)),
    "crf-image-height": lambda: crf_args(image=torch.zeros(1, 3, 5, 7, dtype=torch.uint8)),
    "crf-image-width": lambda: crf_args(image=torch.zeros(1, 3, 6, 8, dtype=torch.uint8)),
    "crf-2d-compat": lambda: crf_args(compat=torch.zeros(3, 3)),
    "crf-double-compat": lambda: crf_args(compat=torch.zeros(2, 3, 3, dtype=torch.float64)),
    "crf-compat-kernels": lambda: crf_args(compat=torch.zeros(1, 3, 3)),
    "crf-compat-rows": lambda: crf_args(compat=torch.zeros(2, 4, 3)),
    "crf-compat-cols": lambda: crf_args(compat=torch.zeros(2, 3, 4)),
    "crf-pos-count": lambda: crf_args(pos=(3.0,)),
    "crf-pos-zero": lambda: crf_args(pos=(3.0, 0.0)),
    "crf-pos-nan": lambda: crf_args(pos=(float("nan"), 3.0)),
    "crf-bi-count": lambda: crf_args(bi=(60.0, 60.0, 5.0)),
    "crf-bi-negative": lambda: crf_args(bi=(60.0, 60.0, -5.0, 5.0, 5.0)),
    "crf-bi-inf": lambda: crf_args(bi=(60.0, 60.0, 5.0, 5.0, float("inf"))),
    "crf-iterations": lambda: crf_args(iterations=-1),
    "crf-image-too-large": lambda: crf_args(huge(1, 1, 13400, 13400), huge(1, 3, 13400, 13400, dtype=torch.uint8)),
    "crf-pos-std-too-small": lambda: crf_args(pos=(1e-6, 1.0)),
    "crf-rgb-std-too-small": lambda: crf_args(bi=(60.0, 60.0, 5.0, 1e-4, 5.0)),
    "crf-1d-sizes": lambda: crf_args(sizes=torch.tensor([6, 7])),
    "crf-int-sizes": lambda: crf_args(sizes=torch.tensor([[6, 7]], dtype=torch.int32)),
    "crf-sizes-batch": lambda: crf_args(sizes=torch.tensor([[6, 7], [6, 7]])),
    "crf-sizes-fields": lambda: crf_args(sizes=torch.tensor([[6, 7, 1]])),
}

# Checks of values: the native kernels read the data, the fake kernels cannot.
VALUE_CHECKS = {
    "em_fixed-nan-scores": lambda: em_fixed_args(with_value(scores(), (0, 1, 2, 2), float("nan"))),
    "em_adapt-inf-scores": lambda: em_adapt_args(with_value(scores(), (1, 0, 0, 0), float("inf"))),
    "boxes_to_labels-nan": lambda: boxes_to_labels_args(with_value(boxes(), (0, 1, 2), float("nan"))),
    "boxes_to_labels-fractional-class": lambda: boxes_to_labels_args(with_value(boxes(), (1, 0, 4), 1.5)),
    "boxes_to_labels-class-below-minus-1": lambda: boxes_to_labels_args(with_value(boxes(), (0, 2, 4), -2.0)),
    "boxes_to_labels-class-beyond-int64": lambda: boxes_to_labels_args(with_value(boxes(), (0, 0, 4), 1e20)),
    "bbox_em_fixed-class-too-large": lambda: bbox_em_fixed_args(b=with_value(boxes(), (1, 1, 4), 5.0)),
    "lattice-nan-features": lambda: lattice_args(features=torch.full((5, 3), float("nan"))),
    "lattice-inf-values": lambda: lattice_args(torch.full((5, 2), float("inf"))),
    "lattice-features-too-far": lambda: lattice_args(features=torch.full((5, 3), 1e7)),
    "crf-nan-unary": lambda: crf_args(unary=torch.full((1, 3, 6, 7), float("nan"))),
    "crf-inf-compat": lambda: crf_args(compat=torch.full((2, 3, 3), float("inf"))),
    "crf-sizes-out-of-range": lambda: crf_args(sizes=torch.tensor([[7, 7]])),
    "crf-compat-overflows": lambda: crf_args(compat=torch.full((2, 3, 3), 3e38)),
}


def on_meta(args):
    return tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in args)


def outcome(op, args):
    """("error", the argument the message names) or ("ok", output shapes and dtypes)."""
    try:
        out = op(*args)
    except RuntimeError as e:
        # Messages name the argument before " must" (or " contains", "needs" ...): compare that part.
        first = str(e).splitlines()[0]
        return "error", first.split(" must")[0]
    outs = out if isinstance(out, tuple) else (out,)
    return "ok", [(tuple(o.shape), o.dtype) for o in outs]


@pytest.mark.parametrize("name", list(CASES))
def test_fake_kernel_checks_what_the_cpu_kernel_checks(name):
    op, args = CASES[name]()
    real = outcome(op, args)
    fake = outcome(op, on_meta(args))
    assert fake == real, f"{name}: CPU kernel {real}, fake kernel {fake}"
    # Every case not named "-ok"/"-empty"/... is a check: make sure it does reject.
    expect_ok = name.split("-", 1)[1] in {
        "ok",
        "empty",
        "float16",
        "no-boxes",
        "double-boxes",
        "batched",
        "sizes",
        "zero-iterations",
    }
    assert real[0] == ("ok" if expect_ok else "error"), f"{name}: {real}"


@pytest.mark.parametrize("name", list(VALUE_CHECKS))
def test_value_checks_run_in_the_native_kernels_only(name):
    op, args = VALUE_CHECKS[name]()
    assert outcome(op, args)[0] == "error"
    assert outcome(op, on_meta(args))[0] == "ok"


DEVICE_MIXES = {
    "em_fixed-present": (
        lambda d: em_fixed_args(p=present().to(d)),
        "em_fixed: present must be on the same device as scores",
    ),
    "em_adapt-present": (
        lambda d: em_adapt_args(p=present().to(d)),
        "em_adapt: present must be on the same device as scores",
    ),
    "bbox_em_fixed-boxes": (
        lambda d: bbox_em_fixed_args(b=boxes().to(d)),
        "bbox_em_fixed: boxes must be on the same device as scores",
    ),
    "lattice-features": (
        lambda d: lattice_args(features=torch.rand(5, 3, device=d)),
        "features must be on the same device as values",
    ),
    "crf-image": (
        lambda d: crf_args(image=torch.zeros(1, 3, 6, 7, dtype=torch.uint8, device=d)),
        "image must be on the same device as unary",
    ),
}


@pytest.mark.parametrize("name", list(DEVICE_MIXES))
def test_fake_kernels_refuse_a_meta_tensor_mixed_with_a_cpu_one(name):
    # A CPU tensor mixed with a meta one dispatches to the fake kernel, which must then refuse it
    # as the native kernels refuse a CPU tensor mixed with a CUDA one (test_*_device checks).
    make, message = DEVICE_MIXES[name]
    op, args = make("meta")
    with pytest.raises(RuntimeError, match=message):
        op(*args)
    op, args = make("cpu")
    with pytest.raises(RuntimeError, match=message):
        op(*on_meta(args[:1]) + args[1:])
