"""E-step and box operators at the training shapes: emseg CPU, the NumPy reference, torch eager
where it is natural, and emseg CUDA, one pytest-benchmark group per workload.

Workloads: a batch of 20 images, 21 classes (VOC), 41x41 score maps (DeepLab's output stride 8 on
321x321 crops) and full-resolution 321x321 maps; 3 classes present per image (background and two
foreground classes) and 3 boxes per image over those classes.

Every benchmark asserts that its output equals the reference output.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from benchutil import describe, requires_cuda, synchronized  # also puts tests/ on sys.path

from emseg import ops

import reference_estep as ref  # isort: skip

BATCH, CLASSES, PRESENT_FG, BOXES = 20, 21, 2, 3
SIZES = [41, 321]
# em_adapt's reference bisects every pixel's threshold in NumPy: at 321x321 it times (and checks)
# the first images only; extra_info["images"] says how many, so compare times per image.
REFERENCE_IMAGES = {("em_adapt", 321): 4}
FG_BIAS, BG_BIAS = 5.0, 3.0


@functools.lru_cache(maxsize=None)
def workload(size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed + size)
    scores = torch.randn(BATCH, CLASSES, size, size, generator=g) * 4.0
    present = torch.zeros(BATCH, CLASSES, dtype=torch.bool)
    present[:, 0] = True
    boxes = torch.empty(BATCH, BOXES, 5)
    for i in range(BATCH):
        fg = 1 + torch.randperm(CLASSES - 1, generator=g)[:PRESENT_FG]
        present[i, fg] = True
        for b in range(BOXES):
            x1, y1 = (torch.rand(2, generator=g) * 0.6 * size).tolist()
            w, h = ((0.15 + torch.rand(2, generator=g) * 0.5) * size).tolist()
            boxes[i, b] = torch.tensor([x1, y1, x1 + w, y1 + h, float(fg[b % PRESENT_FG])])
    return scores, present, boxes


def reference_images(op: str, size: int) -> int:
    return REFERENCE_IMAGES.get((op, size), BATCH)


# ---- the implementations -----------------------------------------------------------------------


def emseg_impl(op, size, device):
    scores, present, boxes = (t.to(device) for t in workload(size))
    if op == "em_fixed":
        return lambda: ops.em_fixed(scores, present, FG_BIAS, BG_BIAS)
    if op == "em_adapt":
        return lambda: ops.em_adapt(scores, present)
    if op == "boxes_to_labels":
        return lambda: ops.boxes_to_labels(boxes, size, size)
    return lambda: ops.bbox_em_fixed(scores, boxes, FG_BIAS, BG_BIAS)


def reference_impl(op, size):
    k = reference_images(op, size)
    scores, present, boxes = (t[:k].numpy() for t in workload(size))
    if op == "em_fixed":
        return lambda: ref.em_fixed(scores, present, FG_BIAS, BG_BIAS)
    if op == "em_adapt":
        return lambda: ref.em_adapt(scores, present)
    if op == "boxes_to_labels":
        return lambda: ref.boxes_to_labels(boxes, size, size)
    return lambda: ref.bbox_em_fixed(scores, boxes, FG_BIAS, BG_BIAS)


def torch_coverage(boxes, height, width):
    """Bool [N, B, H, W]: pixel centres inside each (non-padding) box."""
    cx = torch.arange(width, dtype=boxes.dtype) + 0.5
    cy = torch.arange(height, dtype=boxes.dtype) + 0.5
    x1, y1, x2, y2, cls = (boxes[..., k, None, None] for k in range(5))
    inside_x = (x1 <= cx) & (cx < x2)
    inside_y = (y1 <= cy[:, None]) & (cy[:, None] < y2)
    return inside_x & inside_y & (cls >= 0)


def torch_impl(op, size):
    scores, present, boxes = workload(size)
    if op == "em_fixed":
        phi = torch.where(present, FG_BIAS, 0.0)
        phi[:, 0] = BG_BIAS

        def run():
            return (scores + phi[:, :, None, None]).argmax(1)

        return run
    if op == "boxes_to_labels":

        def run():
            cover = torch_coverage(boxes, size, size)
            area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
            # Smallest covering box, first listed on ties (argmin returns the first minimum).
            keyed = torch.where(cover, area[..., None, None], torch.inf)
            best = keyed.argmin(1, keepdim=True)
            label = boxes[..., 4].long()[..., None, None].expand_as(cover).gather(1, best)[:, 0]
            return torch.where(cover.any(1), label, 0)

        return run
    if op == "bbox_em_fixed":

        def run():
            cover = torch_coverage(boxes, size, size)
            cls = boxes[..., 4].long().clamp(min=0)
            one_hot = torch.nn.functional.one_hot(cls, CLASSES).to(torch.float32)
            one_hot[..., 0] = 0  # class-0 boxes boost nothing
            boosted = torch.einsum("nbc,nbhw->nchw", one_hot, cover.to(torch.float32)) > 0
            phi = torch.where(boosted, FG_BIAS, 0.0)
            phi[:, 0] = BG_BIAS
            return torch.where(cover.any(1), (scores + phi).argmax(1), 0)

        return run
    return None


# ---- the benchmarks ----------------------------------------------------------------------------

_EXPECTED: dict = {}


def expected(op, size):
    """The reference output (on the first reference_images(op, size) images), computed once."""
    key = (op, size)
    if key not in _EXPECTED:
        _EXPECTED[key] = reference_impl(op, size)()
    return _EXPECTED[key]


def assert_matches_reference(op, size, out):
    want = expected(op, size)
    k = reference_images(op, size)
    outs = out if isinstance(out, tuple) else (out,)
    wants = want if isinstance(want, tuple) else (want,)
    for got, w in zip(outs, wants):
        got = got.cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
        np.testing.assert_array_equal(got[:k], w)


OPS = ["em_fixed", "em_adapt", "boxes_to_labels", "bbox_em_fixed"]
IMPLS = [
    "numpy-reference",  # first: its output is the expected output of the others
    "emseg-cpu",
    "torch-eager",
    pytest.param("emseg-cuda", marks=requires_cuda),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", OPS)
def test_bench(benchmark, op, size, impl):
    benchmark.group = f"{op} N={BATCH} C={CLASSES} {size}x{size}"
    device = "cuda" if impl == "emseg-cuda" else "cpu"
    images = reference_images(op, size) if impl == "numpy-reference" else BATCH
    describe(benchmark, op, impl, device, batch=images, classes=CLASSES, height=size, width=size, images=images)
    if impl == "numpy-reference":
        fn = reference_impl(op, size)
        slow = op == "em_adapt"
        out = benchmark.pedantic(fn, rounds=1 if slow else 3, iterations=1, warmup_rounds=0)
        _EXPECTED.setdefault((op, size), out)
    elif impl == "torch-eager":
        fn = torch_impl(op, size)
        if fn is None:
            pytest.skip(f"no natural torch-eager form of {op}")
        out = benchmark(fn)
    else:
        fn = synchronized(emseg_impl(op, size, device), device)
        out = benchmark(fn)
    assert_matches_reference(op, size, out)
