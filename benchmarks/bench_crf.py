"""Dense CRF: emseg (CPU, CUDA) against pydensecrf2 and SimpleCRF on VOC-sized images, forward and
backward.

Workloads: a 500x375 image (PASCAL VOC's typical size), then 2x and 4x its pixel count; 21 labels,
10 mean-field iterations, DeepLab's Gaussian + bilateral kernels. One pytest-benchmark group per
workload holds emseg-cpu, emseg-cuda (where a GPU is available) and pydensecrf2, so the report
shows their ratios side by side. Every run also checks the output against pydensecrf2 (argmax
agreement >= 99.5 %, max |dQ| <= 1e-3), so ``--benchmark-disable`` still tests something.

SimpleCRF (``pip install SimpleCRF``; it builds only against numpy < 2) wraps the same C++ code
as pydensecrf2 but returns labels only, and takes probabilities, which it clamps to [0.01, 0.99]
before taking -log. Where it is installed, ``test_simplecrf`` times it and checks its labels
against emseg's on that clamped unary.

Forward + backward (``test_emseg_backward``, group ``crf-backward ...``): the marginals, then the
gradient of a loss on them with respect to the unary (pydensecrf2 has no backward). Its check: the
gradient is finite and sums to 0 over each pixel's labels (Q does not change when a constant is
added to a pixel's energies).

    pytest benchmarks/bench_crf.py --benchmark-json=crf.json
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from benchutil import DEVICES, synchronized

from emseg.ops import CRF_DEFAULTS, dense_crf

try:
    import pydensecrf.densecrf as dcrf
except ImportError:  # pragma: no cover - depends on the environment
    dcrf = None
try:
    import denseCRF as simplecrf
except ImportError:  # pragma: no cover - depends on the environment
    simplecrf = None

LABELS = 21
ITERATIONS = 10
BASE = (375, 500)  # (H, W)
SCALES = [1, 2, 4]


def workload(scale: int) -> tuple[int, int]:
    s = math.sqrt(scale)
    return round(BASE[0] * s), round(BASE[1] * s)


@functools.lru_cache(maxsize=None)
def inputs(h: int, w: int):
    """A natural image (scikit-image's astronaut, mirrored to size) or a synthetic one, and noisy
    unaries tied to its colours, as a network's would be: (image [H, W, 3] uint8, -log p [L, H*W])."""
    try:
        from skimage import data

        base = data.astronaut()
        reps = (math.ceil(h / base.shape[0]), math.ceil(w / base.shape[1]), 1)
        tiled = np.tile(np.concatenate([base, base[:, ::-1]], 1), reps)
        image = np.ascontiguousarray(tiled[:h, :w])
    except ImportError:
        ys, xs = np.mgrid[0:h, 0:w]
        image = np.stack([(xs * 255 // max(w - 1, 1)), (ys * 255 // max(h - 1, 1)), (xs ^ ys) & 255], -1)
        image = np.ascontiguousarray(image.astype(np.uint8))
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 255, size=(LABELS, 3))
    d2 = ((image.reshape(-1, 1, 3).astype(np.float32) - centres[None]) ** 2).sum(-1)
    logits = -d2 / 2000.0 + rng.normal(0, 1.5, size=d2.shape)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    return image, np.ascontiguousarray(-logp.T, dtype=np.float32)


def run_pydensecrf(image, unary):
    h, w, _ = image.shape
    d = dcrf.DenseCRF2D(w, h, LABELS)
    d.setUnaryEnergy(unary)
    d.addPairwiseGaussian(sxy=CRF_DEFAULTS["pos_xy_std"], compat=CRF_DEFAULTS["pos_w"])
    d.addPairwiseBilateral(
        sxy=CRF_DEFAULTS["bi_xy_std"],
        srgb=CRF_DEFAULTS["bi_rgb_std"],
        rgbim=image,
        compat=CRF_DEFAULTS["bi_w"],
    )
    return np.array(d.inference(ITERATIONS))


_REFERENCE: dict[tuple[int, int], np.ndarray] = {}


def reference(h: int, w: int):
    """pydensecrf2's marginals, from test_pydensecrf's own run when it came first."""
    if dcrf is None:
        return None
    if (h, w) not in _REFERENCE:
        _REFERENCE[(h, w)] = run_pydensecrf(*inputs(h, w))
    return _REFERENCE[(h, w)]


def skip_large_when_disabled(benchmark, scale: int) -> None:
    # With --benchmark-disable (CI) the 1x workload checks the outputs; the larger ones only time.
    if benchmark.disabled and scale > 1:
        pytest.skip("larger workloads run only when benchmarking")


def check(q: np.ndarray, h: int, w: int) -> None:
    expected = reference(h, w)
    if expected is None:
        assert np.isfinite(q).all() and np.allclose(q.sum(0), 1.0, atol=1e-4)
        return
    assert (q.argmax(0) == expected.argmax(0)).mean() >= 0.995
    assert np.abs(q - expected).max() <= 1e-3


def _status_mib(field: str):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def peak_rss_mb(fn):
    """Run fn and return (result, (peak resident memory during the run, resident memory before it),
    in MiB): Linux resets the high-water mark when "5" is written to /proc/self/clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return fn(), (None, None)
    before = _status_mib("VmRSS")
    result = fn()
    return result, (_status_mib("VmHWM"), before)


def forward_group(h: int, w: int) -> str:
    return f"crf {w}x{h} L={LABELS} it={ITERATIONS}"


def time_reference(benchmark, impl: str, h: int, w: int, fn, *args):
    """fn(*args), a one-thread CPU implementation, timed in the workload's group with its peak RSS."""
    benchmark.group = forward_group(h, w)
    benchmark.extra_info.update(device="cpu", shape=[1, LABELS, h, w], threads=1, impl=impl)
    out, (peak, before) = peak_rss_mb(lambda: benchmark(fn, *args))
    benchmark.extra_info.update(peak_rss_mib=peak, rss_before_mib=before)
    return out


@pytest.mark.skipif(dcrf is None, reason="pydensecrf2 is not installed")
@pytest.mark.parametrize("scale", SCALES)
def test_pydensecrf(benchmark, scale):
    skip_large_when_disabled(benchmark, scale)
    h, w = workload(scale)
    image, unary = inputs(h, w)
    q = time_reference(benchmark, "pydensecrf2", h, w, run_pydensecrf, image, unary)
    assert np.allclose(q.sum(0), 1.0, atol=1e-4)
    _REFERENCE.setdefault((h, w), q)  # emseg's runs are checked against this


@pytest.mark.skipif(simplecrf is None, reason="SimpleCRF is not installed")
@pytest.mark.parametrize("scale", SCALES)
def test_simplecrf(benchmark, scale):
    skip_large_when_disabled(benchmark, scale)
    h, w = workload(scale)
    image, unary = inputs(h, w)
    # SimpleCRF's input: probabilities [H, W, L]; its energies are -log(clamp(p, 0.01, 0.99)).
    prob = np.exp(-unary)
    prob_hwl = np.ascontiguousarray(prob.T.reshape(h, w, LABELS), dtype=np.float32)
    param = (
        CRF_DEFAULTS["bi_w"],
        CRF_DEFAULTS["bi_xy_std"],
        CRF_DEFAULTS["bi_rgb_std"],
        CRF_DEFAULTS["pos_w"],
        CRF_DEFAULTS["pos_xy_std"],
        float(ITERATIONS),
    )
    labels = time_reference(benchmark, "simplecrf", h, w, simplecrf.densecrf, image, prob_hwl, param)
    clamped = (-np.log(np.clip(prob, 0.01, 0.99))).astype(np.float32)
    u = torch.from_numpy(clamped).reshape(1, LABELS, h, w)
    im = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
    ours = emseg_crf(u, im)[0].reshape(LABELS, h * w).argmax(0).numpy()
    assert (np.asarray(labels).reshape(-1) == ours).mean() >= 0.995


def emseg_inputs(device: str, scale: int):
    """(h, w, unary [1, L, H, W], image [1, 3, H, W]) of a workload on ``device``."""
    h, w = workload(scale)
    image, unary = inputs(h, w)
    u = torch.from_numpy(unary).reshape(1, LABELS, h, w).to(device)
    return h, w, u, torch.from_numpy(image).permute(2, 0, 1)[None].contiguous().to(device)


def emseg_crf(u, im):
    kw = {k: v for k, v in CRF_DEFAULTS.items() if k != "iterations"}
    return dense_crf(u, im, iterations=ITERATIONS, **kw)


def time_emseg(benchmark, device, group: str, shape, fn):
    """fn timed (CUDA synchronised) with its peak memory: RSS on the CPU, allocated on CUDA."""
    benchmark.group = group
    benchmark.extra_info.update(
        device=device if device == "cpu" else torch.cuda.get_device_name(),
        shape=shape,
        threads=torch.get_num_threads(),
        impl=f"emseg-{device}",
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        out = benchmark(synchronized(fn, device))
        benchmark.extra_info["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return out
    out, (peak, before) = peak_rss_mb(lambda: benchmark(fn))
    benchmark.extra_info.update(peak_rss_mib=peak, rss_before_mib=before)
    return out


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("device", DEVICES)
def test_emseg(benchmark, device, scale):
    skip_large_when_disabled(benchmark, scale)
    h, w, u, im = emseg_inputs(device, scale)
    group = forward_group(h, w)
    q = time_emseg(benchmark, device, group, [1, LABELS, h, w], lambda: emseg_crf(u, im))
    check(q[0].reshape(LABELS, h * w).cpu().numpy(), h, w)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("device", DEVICES)
def test_emseg_backward(benchmark, device, scale):
    skip_large_when_disabled(benchmark, scale)
    h, w, u, im = emseg_inputs(device, scale)
    u.requires_grad_()
    weights = torch.randn(u.shape, generator=torch.Generator().manual_seed(0)).to(device)

    def run():
        u.grad = None
        (emseg_crf(u, im) * weights).sum().backward()
        return u.grad

    group = f"crf-backward {w}x{h} L={LABELS} it={ITERATIONS}"
    grad = time_emseg(benchmark, device, group, [1, LABELS, h, w], run).double().cpu()
    assert torch.isfinite(grad).all()
    per_pixel = grad.sum(1).abs().max()
    assert per_pixel <= 1e-4 * max(float(grad.abs().max()), 1e-12) * LABELS
