"""dense_crf against pydensecrf2 and an exact NumPy mean field; the Python API; input checks.

Reference: ``pydensecrf2`` 1.1 (Krähenbühl's C++ code), imported as ``pydensecrf.densecrf``; the
comparisons are skipped, visibly, where it is not installed (``pip install -e .[crf-test]``).
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import reference_crf as ref
import torch
from conftest import DEVICES
from gpu_on_cpu.backends import KERNEL_DEVICES, backend

import emseg
import emseg.crf
from emseg.ops import CRF_DEFAULTS, dense_crf, permutohedral_filter

try:
    import pydensecrf.densecrf as dcrf

    PYDENSECRF_VERSION = importlib.metadata.version("pydensecrf2")
except ImportError:  # pragma: no cover - depends on the environment
    dcrf = None
    PYDENSECRF_VERSION = None
needs_pydensecrf = pytest.mark.skipif(dcrf is None, reason="pydensecrf2 is not installed")


def synthetic_image(h: int, w: int, seed: int) -> np.ndarray:
    """A real-looking uint8 RGB image [H, W, 3]: smooth background, a few flat objects, noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([120 + 80 * np.sin(xs / (w + 1) * 3 + c) * np.cos(ys / (h + 1) * 2) for c in range(3)], -1)
    for _ in range(4):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.1, 0.35) * h, rng.uniform(0.1, 0.35) * w
        inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1
        img[inside] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def unary_for(image: np.ndarray, labels: int, seed: int) -> np.ndarray:
    """-log p [L, H*W]: noisy class scores loosely tied to colour, as a network's would be."""
    rng = np.random.default_rng(seed)
    h, w, _ = image.shape
    centres = rng.uniform(0, 255, size=(labels, 3))
    d2 = ((image.reshape(-1, 1, 3).astype(np.float64) - centres[None]) ** 2).sum(-1)
    logits = -d2 / 2000.0 + rng.normal(0, 1.5, size=d2.shape)
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    return np.ascontiguousarray(-logp.T, dtype=np.float32)


def sample_image(name: str, h: int, w: int) -> np.ndarray:
    if name == "synthetic":
        return synthetic_image(h, w, seed=h * 7 + w)
    skdata = pytest.importorskip("skimage.data")
    img = getattr(skdata, name)()
    return np.ascontiguousarray(img[:h, :w, :3])


def run_pydensecrf(unary, image, labels, params, iterations):
    h, w, _ = image.shape
    d = dcrf.DenseCRF2D(w, h, labels)
    d.setUnaryEnergy(unary)
    d.addPairwiseGaussian(sxy=params["pos_xy_std"], compat=params["pos_w"])
    d.addPairwiseBilateral(sxy=params["bi_xy_std"], srgb=params["bi_rgb_std"], rgbim=image, compat=params["bi_w"])
    return np.array(d.inference(iterations))


def run_emseg(unary, image, labels, params, iterations, device="cpu"):
    h, w, _ = image.shape
    u = torch.from_numpy(unary).reshape(1, labels, h, w).to(device)
    im = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous().to(device)
    kw = {k: v for k, v in params.items() if k != "iterations"}
    q = dense_crf(u, im, iterations=iterations, **kw)
    return q[0].reshape(labels, h * w).cpu().numpy()


OTHER_PARAMS = {"pos_w": 3.0, "pos_xy_std": 1.0, "bi_w": 10.0, "bi_xy_std": 50.0, "bi_rgb_std": 13.0}


@needs_pydensecrf
@pytest.mark.parametrize(
    "name, h, w, labels",
    [
        ("synthetic", 37, 53, 2),
        ("synthetic", 64, 48, 5),
        ("synthetic", 90, 120, 21),
        ("astronaut", 100, 150, 3),
        ("coffee", 120, 80, 8),
    ],
)
@pytest.mark.parametrize("params", ["deeplab", "other"])
def test_matches_pydensecrf(name, h, w, labels, params):
    assert PYDENSECRF_VERSION is not None
    image = sample_image(name, h, w)
    unary = unary_for(image, labels, seed=labels)
    p = CRF_DEFAULTS if params == "deeplab" else OTHER_PARAMS
    expected = run_pydensecrf(unary, image, labels, p, 10)
    got = run_emseg(unary, image, labels, p, 10)
    agreement = (got.argmax(0) == expected.argmax(0)).mean()
    assert agreement >= 0.995
    assert np.abs(got - expected).max() <= 1e-3


@needs_pydensecrf
def test_matches_pydensecrf_random_unary_and_matrix_compat():
    rng = np.random.default_rng(11)
    h, w, labels = 50, 70, 4
    image = synthetic_image(h, w, seed=3)
    unary = np.ascontiguousarray(-np.log(rng.dirichlet(np.ones(labels), size=h * w).T), dtype=np.float32)
    mu = rng.uniform(0, 2, size=(labels, labels)).astype(np.float32)
    np.fill_diagonal(mu, 0.0)
    outs = []
    for mod in (dcrf, emseg.crf):
        d = mod.DenseCRF2D(w, h, labels)
        d.setUnaryEnergy(unary)
        d.addPairwiseGaussian(sxy=(3, 2), compat=np.ascontiguousarray(2 * mu))
        d.addPairwiseBilateral(sxy=40, srgb=(10, 12, 14), rgbim=image, compat=np.full(labels, -5.0, np.float32))
        outs.append(np.array(d.inference(5)))
    assert (outs[0].argmax(0) == outs[1].argmax(0)).mean() >= 0.995
    assert np.abs(outs[0] - outs[1]).max() <= 1e-3


def test_drop_in_equals_op():
    h, w, labels = 30, 40, 3
    image = synthetic_image(h, w, seed=5)
    unary = unary_for(image, labels, seed=1)
    d = emseg.crf.DenseCRF2D(w, h, labels)
    d.setUnaryEnergy(unary)
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=image, compat=10)
    q = d.inference(5)
    assert q.shape == (labels, h * w) and q.dtype == np.float32
    p = {"pos_w": 3.0, "pos_xy_std": 3.0, "bi_w": 10.0, "bi_xy_std": 80.0, "bi_rgb_std": 13.0}
    np.testing.assert_array_equal(q, run_emseg(unary, image, labels, p, 5))


def test_close_to_exact_mean_field_and_kl_decreases():
    """Small image: exact kernels (reference) vs the lattice; KL decreases under both.

    With a Potts compatibility (-w I, w > 0) and positive semi-definite kernels the pairwise term is
    concave in Q, and parallel mean-field updates then never increase KL(Q || P) (Krähenbühl &
    Koltun, ICML 2013). The exact reference has such kernels; the lattice's are close to them, and
    its KL, computed with the same lattice operator, decreases too.
    """
    rng = np.random.default_rng(0)
    h, w, labels = 16, 20, 3
    image = synthetic_image(h, w, seed=9)
    unary = np.ascontiguousarray(-np.log(rng.dirichlet(np.ones(labels), size=h * w).T), dtype=np.float32)
    pos_std, bi_std = (3.0, 3.0), (10.0, 10.0, 20.0, 20.0, 20.0)
    feats = ref.crf_features(image, pos_std, bi_std)
    compats = [-3.0 * np.eye(labels), -5.0 * np.eye(labels)]
    kernels = ref.normalised_kernels(feats)
    exact = ref.mean_field(unary.astype(np.float64), kernels, compats, 10)
    kl_exact = [ref.kl_divergence(q, unary, kernels, compats) for q in exact]
    assert all(b <= a + 1e-9 for a, b in zip(kl_exact, kl_exact[1:]))

    p = {"pos_w": 3.0, "pos_xy_std": 3.0, "bi_w": 5.0, "bi_xy_std": 10.0, "bi_rgb_std": 20.0}
    qs = [run_emseg(unary, image, labels, p, it).astype(np.float64) for it in range(11)]
    # The lattice approximates the kernels: most labels agree with the exact mean field.
    assert (qs[-1].argmax(0) == exact[-1].argmax(0)).mean() >= 0.85

    def lattice(v, f):
        out = permutohedral_filter(
            torch.from_numpy(np.ascontiguousarray(v.T, np.float32)),
            torch.from_numpy(f.astype(np.float32)),
            normalize=False,
        )
        return out.numpy().T.astype(np.float64)

    norms = [1.0 / np.sqrt(lattice(np.ones((1, h * w)), f)[0]) for f in feats]

    def kl(q):
        e = float((q * np.log(np.maximum(q, 1e-30))).sum() + (unary * q).sum())
        for f, n, c in zip(feats, norms, compats):
            e += 0.5 * float((q * (c @ (n * lattice(n * q, f)))).sum())
        return e

    kl_lattice = [kl(q) for q in qs]
    assert all(b <= a + 1e-3 for a, b in zip(kl_lattice, kl_lattice[1:]))
    assert kl_lattice[-1] < kl_lattice[0]


@pytest.mark.parametrize("device", DEVICES)
def test_logits_and_neg_log_prob_agree(device):
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 20, 30, device=device) * 3
    image = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8, device=device)
    a = dense_crf(logits, image, unary_kind="logits", iterations=5)
    b = dense_crf(-torch.log_softmax(logits, 1), image, iterations=5)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unary_kind"):
        dense_crf(logits, image, unary_kind="probabilities")


@pytest.mark.parametrize("device", DEVICES)
def test_zero_iterations_is_softmax_and_q_is_a_distribution(device):
    torch.manual_seed(1)
    u = torch.rand(1, 5, 17, 13, device=device) * 4
    image = torch.randint(0, 256, (1, 3, 17, 13), dtype=torch.uint8, device=device)
    torch.testing.assert_close(dense_crf(u, image, iterations=0), torch.softmax(-u, 1))
    q = dense_crf(u, image)
    assert (q >= 0).all()
    torch.testing.assert_close(q.sum(1), torch.ones(1, 17, 13, device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_batch_with_valid_sizes_equals_single_images(device):
    sizes = [(20, 31), (14, 9), (25, 25)]
    labels, H, W = 3, 25, 31
    unary = torch.zeros(len(sizes), labels, H, W, device=device)
    image = torch.zeros(len(sizes), 3, H, W, dtype=torch.uint8, device=device)
    singles = []
    for n, (h, w) in enumerate(sizes):
        img = torch.from_numpy(synthetic_image(h, w, seed=n)).permute(2, 0, 1).to(device)
        u = torch.from_numpy(unary_for(synthetic_image(h, w, seed=n), labels, seed=n)).reshape(labels, h, w).to(device)
        unary[n, :, :h, :w] = u
        unary[n, :, h:, :] = 7.0  # padding content must not matter
        image[n, :, :h, :w] = img
        singles.append(dense_crf(u[None], img[None].contiguous()))
    out = dense_crf(unary, image, sizes=torch.tensor(sizes, device=device))
    for n, (h, w) in enumerate(sizes):
        torch.testing.assert_close(out[n, :, :h, :w], singles[n][0])
        assert (out[n, :, h:, :] == 0).all() and (out[n, :, :, w:] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_inputs_that_must_just_work(device):
    # 1x1 image: each normalised kernel maps Q to itself (the self term), so every iteration is
    # Q <- softmax(-U + (pos_w + bi_w) Q) under the default Potts weights.
    u = torch.tensor([0.2, 1.5], device=device)
    q = dense_crf(u.reshape(1, 2, 1, 1), torch.zeros(1, 3, 1, 1, dtype=torch.uint8, device=device))
    expected = torch.softmax(-u, 0)
    for _ in range(CRF_DEFAULTS["iterations"]):
        expected = torch.softmax(-u + (CRF_DEFAULTS["pos_w"] + CRF_DEFAULTS["bi_w"]) * expected, 0)
    torch.testing.assert_close(q[0, :, 0, 0], expected)
    # one label: Q = 1 everywhere
    image = torch.randint(0, 256, (2, 3, 9, 11), dtype=torch.uint8, device=device)
    q = dense_crf(torch.rand(2, 1, 9, 11, device=device), image)
    torch.testing.assert_close(q, torch.ones_like(q))
    # uniform image: the bilateral kernel degenerates to a position kernel; still a distribution
    q = dense_crf(
        torch.rand(1, 4, 30, 40, device=device), torch.full((1, 3, 30, 40), 128, dtype=torch.uint8, device=device)
    )
    torch.testing.assert_close(q.sum(1), torch.ones(1, 30, 40, device=device))
    # empty valid region and kernels switched off
    q = dense_crf(
        torch.rand(1, 2, 5, 5, device=device),
        image[:1, :, :5, :5].contiguous(),
        sizes=torch.tensor([[0, 3]], device=device),
    )
    assert (q == 0).all()
    u = torch.rand(1, 3, 6, 7, device=device)
    q = dense_crf(u, image[:1, :, :6, :7].contiguous(), pos_w=0.0, bi_w=0.0)
    torch.testing.assert_close(q, torch.softmax(-u, 1))


def test_width_one_with_any_last_stride():
    # [N, L, H, 1] made by a transpose has last stride H, yet counts as contiguous (a size-1
    # dimension's stride is ignored): the op must read it as the copy with unit strides.
    g = torch.Generator().manual_seed(3)
    u = torch.rand(1, 4, 1, 13, generator=g).transpose(2, 3)
    image = torch.randint(0, 256, (1, 3, 13, 1), dtype=torch.uint8, generator=g)
    assert u.is_contiguous() and u.stride(3) != 1
    expected = dense_crf(torch.from_numpy(u.numpy().copy()), image)
    torch.testing.assert_close(dense_crf(u, image), expected, rtol=0, atol=0)


def test_large_image_within_memory():
    # 2000 x 2000 pixels, 2 labels, DeepLab's kernels: 4 M pixels in two lattices (peak RSS measured
    # at about 1.8 GB, most of it the bilateral lattice's build-time keys and hash table).
    h = w = 2000
    u = torch.zeros(1, 2, h, w)
    u[0, 0, :, : w // 2] = 2.0
    u[0, 1, :, w // 2 :] = 2.0
    image = torch.zeros(1, 3, h, w, dtype=torch.uint8)
    image[:, :, :, w // 2 :] = 200
    q = dense_crf(u, image, iterations=2)
    labels = q[0].argmax(0)
    assert (labels[:, : w // 2 - 5] == 1).all() and (labels[:, w // 2 + 5 :] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_module(device):
    crf = emseg.crf.DenseCRF(iterations=3).to(device)
    assert {"pos_w", "bi_xy_std"} <= set(crf.state_dict())
    u = torch.rand(2, 3, 12, 10, device=device)
    image = torch.randint(0, 256, (2, 3, 12, 10), dtype=torch.uint8, device=device)
    torch.testing.assert_close(crf(u, image), dense_crf(u, image, iterations=3))
    mu = 1.0 - torch.eye(3)
    crf2 = emseg.crf.DenseCRF(compat=mu, iterations=3).to(device)
    # Potts as [l != l'] equals the default (per-pixel constants cancel in the softmax).
    torch.testing.assert_close(crf2(u, image), crf(u, image), rtol=1e-4, atol=1e-5)
    assert "Potts" in repr(crf)


# Not bit-exact: the device takes expf where the host takes its own polynomial (crf.h exp_approx).
@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("labels", [2, 5, 21])
def test_cuda_matches_cpu(device, labels):
    h, w = 75, 100
    image = synthetic_image(h, w, seed=labels)
    unary = unary_for(image, labels, seed=2)
    cpu = run_emseg(unary, image, labels, CRF_DEFAULTS, 10)
    with backend(device) as torch_device:
        gpu = run_emseg(unary, image, labels, CRF_DEFAULTS, 10, device=torch_device)
    assert (cpu.argmax(0) == gpu.argmax(0)).mean() >= 0.999
    assert np.abs(cpu - gpu).max() <= 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    u = torch.rand(2, 3, 8, 9, device=device)
    image = torch.randint(0, 256, (2, 3, 8, 9), dtype=torch.uint8, device=device)
    compat = torch.stack([-3 * torch.eye(3), -4 * torch.eye(3)]).to(device)
    args = (u, image, compat, [3.0, 3.0], [60.0, 60.0, 5.0, 5.0, 5.0], 3, None, False)
    torch.library.opcheck(torch.ops.emseg.dense_crf.default, args)


def _op(unary=None, image=None, compat=None, pos=(3.0, 3.0), bi=(60.0, 60.0, 5.0, 5.0, 5.0), iterations=2, sizes=None):
    unary = torch.rand(1, 3, 6, 7) if unary is None else unary
    image = torch.zeros(1, 3, 6, 7, dtype=torch.uint8) if image is None else image
    L = unary.shape[1] if unary.dim() == 4 else 3
    compat = torch.stack([-torch.eye(L), -torch.eye(L)]) if compat is None else compat
    return torch.ops.emseg.dense_crf(unary, image, compat, list(pos), list(bi), iterations, sizes, False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"unary": torch.rand(3, 6, 7)}, r"unary must be a 4-D tensor \[N, L, H, W\]"),
        ({"unary": torch.rand(1, 3, 6, 7, dtype=torch.float64)}, "unary must have dtype Float"),
        ({"unary": torch.rand(1, 0, 6, 7), "compat": torch.zeros(2, 0, 0)}, "at least one label"),
        ({"unary": torch.tensor(float("nan")).expand(1, 3, 6, 7).contiguous()}, "unary contains NaN or infinite"),
        ({"unary": torch.full((1, 3, 6, 7), float("inf"))}, "unary contains NaN or infinite"),
        ({"image": torch.zeros(1, 3, 6, 7)}, "image must have dtype Byte"),
        ({"image": torch.zeros(1, 4, 6, 7, dtype=torch.uint8)}, r"image.shape\[1\] must equal 3 colour channels"),
        ({"image": torch.zeros(1, 3, 5, 7, dtype=torch.uint8)}, r"image.shape\[2\] must equal unary.shape\[2\]"),
        ({"image": torch.zeros(2, 3, 6, 7, dtype=torch.uint8)}, r"image.shape\[0\] must equal unary.shape\[0\]"),
        ({"compat": torch.zeros(2, 4, 4)}, r"compat.shape\[1\] must equal the number of labels"),
        ({"compat": torch.zeros(1, 3, 3)}, r"compat.shape\[0\] must equal 2"),
        ({"pos": (3.0, 0.0)}, r"pos_std\[1\] must be a positive finite standard deviation"),
        ({"bi": (60.0, 60.0, -5.0, 5.0, 5.0)}, r"bi_std\[2\] must be a positive finite"),
        ({"bi": (60.0, 60.0, 5.0)}, "bi_std must have 5 entries"),
        ({"iterations": -1}, "iterations must be >= 0"),
        ({"sizes": torch.tensor([[6, 7]], dtype=torch.int32)}, "sizes must have dtype Long"),
        ({"sizes": torch.tensor([[7, 7]])}, r"sizes\[0\] must lie within"),
        ({"pos": (1e-6, 1.0)}, "standard deviations too small"),
    ],
)
def test_rejects_bad_input(kwargs, match):
    with pytest.raises(RuntimeError, match=match):
        _op(**kwargs)


def test_python_api_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pos_xy_std must be a number or 2 numbers"):
        dense_crf(torch.rand(1, 2, 4, 4), torch.zeros(1, 3, 4, 4, dtype=torch.uint8), pos_xy_std=(1, 2, 3))
    with pytest.raises(ValueError, match=r"compat must have shape \[L, L\]"):
        dense_crf(torch.rand(1, 2, 4, 4), torch.zeros(1, 3, 4, 4, dtype=torch.uint8), compat=torch.eye(3))
    d = emseg.crf.DenseCRF2D(4, 3, 2)
    with pytest.raises(ValueError, match="Bad shape for unary energy"):
        d.setUnaryEnergy(np.zeros((2, 11), np.float32))
    with pytest.raises(ValueError, match="normalization must be one of NO_NORMALIZATION"):
        d.addPairwiseGaussian(sxy=3, compat=3, normalization=7)
    d.addPairwiseGaussian(sxy=3, compat=3, normalization=emseg.crf.NORMALIZE_BEFORE)  # the whole pydensecrf API


def test_opcheck_with_inputs_that_require_grad():
    # All of opcheck's checks, the autograd ones included (tests/test_crf_grad.py checks the
    # gradient's values; compat's gradient is refused, so it does not require grad).
    u = torch.rand(1, 2, 5, 6, requires_grad=True)
    image = torch.randint(0, 256, (1, 3, 5, 6), dtype=torch.uint8)
    compat = torch.stack([-3 * torch.eye(2), -4 * torch.eye(2)])
    args = (u, image, compat, [3.0, 3.0], [60.0, 60.0, 5.0, 5.0, 5.0], 2, None, False)
    torch.library.opcheck(torch.ops.emseg.dense_crf.default, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("labels", [1, 3, 4, 5, 9])
@pytest.mark.parametrize("kind", ["constant-1e30", "near-1e30", "minus-1e30", "spread-3e38"])
def test_huge_finite_unaries_give_their_softmax(device, labels, kind):
    # Differences of at least an ulp of 1e30 (about 7e22) dwarf every message, and a constant unary
    # stays uniform under Potts messages: Q is softmax(-unary) in each case.
    g = torch.Generator().manual_seed(labels)
    shape = (2, labels, 6, 7)
    if kind == "constant-1e30":
        unary = torch.full(shape, 1e30)
    elif kind == "near-1e30":
        unary = 1e30 * (1 + 0.5 * torch.rand(shape, generator=g))
    elif kind == "minus-1e30":
        unary = -1e30 * (1 + 0.5 * torch.rand(shape, generator=g))
    else:
        unary = 3e38 * (2 * torch.rand(shape, generator=g) - 1)
    image = torch.randint(0, 256, (2, 3, 6, 7), dtype=torch.uint8, generator=g)
    expected = torch.softmax(-unary.double(), dim=1).float()
    for unary_kind, u in [("neg_log_prob", unary), ("logits", -unary)]:
        q = dense_crf(u.to(device), image.to(device), unary_kind=unary_kind).cpu()
        torch.testing.assert_close(q, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("weights", [dict(pos_w=3e38, bi_w=3e38), dict(pos_w=2e37, bi_w=0), dict(pos_w=0, bi_w=-2e37)])
def test_weights_whose_messages_overflow_are_refused(weights):
    unary = torch.rand(1, 3, 6, 7)
    image = torch.zeros(1, 3, 6, 7, dtype=torch.uint8)
    with pytest.raises(
        RuntimeError, match=r"compat \(the kernel weights pos_w, bi_w times the compatibility\) too large"
    ):
        dense_crf(unary, image, **weights)


@pytest.mark.parametrize("device", DEVICES)
def test_large_weights_below_the_limit_give_a_distribution(device):
    g = torch.Generator().manual_seed(3)
    unary = 3e38 * (2 * torch.rand(2, 4, 6, 7, generator=g) - 1)
    image = torch.randint(0, 256, (2, 3, 6, 7), dtype=torch.uint8, generator=g)
    for weights in [dict(pos_w=1e36, bi_w=1e36), dict(pos_w=-1e36, bi_w=5.0), dict(pos_w=1e30, bi_w=0)]:
        q = dense_crf(unary.to(device), image.to(device), **weights).cpu()
        assert torch.isfinite(q).all() and (q >= 0).all()
        torch.testing.assert_close(q.sum(1), torch.ones(2, 6, 7), rtol=0, atol=1e-5)
