"""emseg.pydensecrf against pydensecrf2 (Krähenbühl's C++ code, imported as ``pydensecrf``).

Each function and method is compared with the reference on photos (scikit-image's samples) and on
random features of 1 to 8 dimensions; client code written for pydensecrf runs with only the package
prefix changed; bad input raises the reference's errors.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from conftest import DEVICES
from test_crf import sample_image, unary_for

import emseg.pydensecrf.densecrf as edcrf
import emseg.pydensecrf.utils as eutils

try:
    import pydensecrf.densecrf as pdcrf
    import pydensecrf.utils as putils
except ImportError:  # pragma: no cover - depends on the environment
    pdcrf = putils = None
pytestmark = pytest.mark.skipif(pdcrf is None, reason="pydensecrf2 is not installed")

# Mean field through the same lattice algorithm: differences come from float rounding only.
Q_TOLERANCE = 1e-3
MIN_AGREEMENT = 0.995


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a).argmax(0) == np.asarray(b).argmax(0)).mean())


def assert_same_marginals(got, expected, tolerance=Q_TOLERANCE):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert agreement(got, expected) >= MIN_AGREEMENT
    assert np.abs(got - expected).max() <= tolerance


def gray_image(name: str, h: int, w: int) -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(getattr(skdata, name)()[:h, :w])


def random_unary(labels: int, n: int, rng) -> np.ndarray:
    return np.ascontiguousarray(-np.log(rng.dirichlet(np.ones(labels) * 0.7, size=n).T), np.float32)


# --------------------------------------------------------------------------------------------
# utils


def test_constants_are_pydensecrfs():
    for name in (
        "CONST_KERNEL",
        "DIAG_KERNEL",
        "FULL_KERNEL",
        "NO_NORMALIZATION",
        "NORMALIZE_BEFORE",
        "NORMALIZE_AFTER",
        "NORMALIZE_SYMMETRIC",
    ):
        assert int(getattr(edcrf, name)) == int(getattr(pdcrf, name)), name
        assert getattr(edcrf, name).name == name


def _labels(shape, top, seed):
    return np.random.default_rng(seed).integers(0, top, size=shape)


UTILS_CASES = [
    ("unary_from_labels", lambda: (_labels((7, 9), 4, 0), 4, 0.7), {"zero_unsure": False}),
    ("unary_from_labels", lambda: (_labels((7, 9), 4, 1), 3, 0.5), {}),
    ("unary_from_labels", lambda: (_labels((3, 4, 5), 6, 2), 5, 0.9), {"zero_unsure": True}),
    ("compute_unary", lambda: (_labels((6, 5), 3, 3), 2), {}),
    ("unary_from_softmax", lambda: (np.random.default_rng(4).dirichlet(np.ones(3), (8, 5)).transpose(2, 0, 1),), {}),
    (
        "unary_from_softmax",
        lambda: (np.random.default_rng(5).dirichlet(np.ones(4), (6, 7)).T.astype(np.float32),),
        {"scale": 0.8},
    ),
    (
        "unary_from_softmax",
        lambda: (np.random.default_rng(6).dirichlet(np.ones(2), (3, 4, 5)).transpose(3, 0, 1, 2),),
        {"scale": 1, "clip": None},
    ),
    ("unary_from_softmax", lambda: (np.random.default_rng(7).dirichlet(np.ones(5), 20).T,), {"clip": 0.05}),
    ("softmax_to_unary", lambda: (np.random.default_rng(8).dirichlet(np.ones(3), (5, 5)).T,), {}),
    ("softmax_to_unary", lambda: (np.random.default_rng(9).dirichlet(np.ones(3), (5, 5)).T,), {"GT_PROB": 0.6}),
    ("create_pairwise_gaussian", lambda: ((3, 5), (6, 7)), {}),
    ("create_pairwise_gaussian", lambda: ((2.5,), (11,)), {}),
    ("create_pairwise_gaussian", lambda: ((1, 2, 3), (4, 5, 6)), {}),
    ("create_pairwise_bilateral", lambda: ((80, 80), (13, 13, 13), sample_image("astronaut", 20, 30)), {"chdim": 2}),
    ("create_pairwise_bilateral", lambda: ((5, 7), 3.5, sample_image("coffee", 12, 9)), {"chdim": 2}),
    ("create_pairwise_bilateral", lambda: ((10, 10), (5,), gray_image("camera", 16, 16)), {}),
    ("create_pairwise_bilateral", lambda: ((2, 3), (4, 5), _labels((2, 6, 7), 255, 10).astype(np.uint8)), {"chdim": 0}),
    (
        "create_pairwise_bilateral",
        lambda: ((2, 3, 4), 9, _labels((4, 5, 6, 2), 100, 11).astype(np.float64)),
        {"chdim": 3},
    ),
]


@pytest.mark.parametrize("name, make_args, kwargs", UTILS_CASES)
def test_utils_match(name, make_args, kwargs):
    args = make_args()
    expected = getattr(putils, name)(*args, **kwargs)
    got = getattr(eutils, name)(*args, **kwargs)
    assert got.dtype == expected.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "name, args",
    [
        ("unary_from_labels", (np.zeros((2, 2), int), 3, 1.0)),
        ("unary_from_labels", (np.zeros((2, 2), int), 3, 0.0)),
        ("unary_from_softmax", (np.full((2, 3), 0.5), 0.0)),
        ("unary_from_softmax", (np.full((2, 3), 0.5), 1.5)),
    ],
)
def test_utils_reject_what_pydensecrf_rejects(name, args):
    with pytest.raises(AssertionError) as expected:
        getattr(putils, name)(*args)
    with pytest.raises(AssertionError) as got:
        getattr(eutils, name)(*args)
    assert str(got.value) == str(expected.value)


# --------------------------------------------------------------------------------------------
# DenseCRF on random features


def random_terms(dim: int, n: int, seed: int):
    """Two terms (dimensions dim and max(1, dim // 2)) over n points whose kernels overlap."""
    rng = np.random.default_rng(seed)
    spread = n ** (1.0 / dim) / 2.0  # about two neighbours per unit of feature distance
    return [np.ascontiguousarray(rng.uniform(0, spread, size=(d, n)), np.float32) for d in (dim, max(1, dim // 2))]


def compat_of(kind: str, labels: int, rng):
    if kind == "potts":
        return float(rng.uniform(1, 5))
    if kind == "diag":
        return np.ascontiguousarray(-rng.uniform(1, 5, size=labels), np.float32)
    m = rng.uniform(0, 3, size=(labels, labels)).astype(np.float32)
    np.fill_diagonal(m, -2.0)
    return np.ascontiguousarray(m)  # not symmetric: both sides symmetrise it


def build(module, n, labels, unary, terms, *, device=None):
    d = module.DenseCRF(n, labels) if device is None else module.DenseCRF(n, labels, device=device)
    if unary is not None:
        d.setUnaryEnergy(unary)
    for features, compat, kernel, normalization in terms:
        d.addPairwiseEnergy(features, compat, kernel=kernel, normalization=normalization)
    return d


def random_crf(dim, normalization, compat_kind, seed, n=700, labels=4):
    rng = np.random.default_rng(seed)
    feats = random_terms(dim, n, seed)
    kernels = [edcrf.CONST_KERNEL, edcrf.DIAG_KERNEL, edcrf.FULL_KERNEL]
    terms = [
        (f, compat_of(compat_kind, labels, rng), int(kernels[(dim + i) % 3]), int(normalization))
        for i, f in enumerate(feats)
    ]
    return n, labels, random_unary(labels, n, rng), terms


@pytest.mark.parametrize("dim", range(1, 9))
@pytest.mark.parametrize("normalization", list(edcrf.NormalizationType))
def test_random_features_match(dim, normalization):
    compat_kind = ("potts", "diag", "matrix")[dim % 3]
    n, labels, unary, terms = random_crf(dim, normalization, compat_kind, seed=dim * 10 + normalization)
    expected = np.array(build(pdcrf, n, labels, unary, terms).inference(5))
    got = build(edcrf, n, labels, unary, terms).inference(5)
    assert_same_marginals(got, expected)


@pytest.mark.parametrize("dim", [1, 3, 5, 8])
def test_step_inference_and_kl_divergence_match(dim):
    n, labels, unary, terms = random_crf(dim, edcrf.NORMALIZE_SYMMETRIC, "matrix", seed=dim)
    ref, ours = build(pdcrf, n, labels, unary, terms), build(edcrf, n, labels, unary, terms)
    q_ref, t1, t2 = ref.startInference()
    q, s1, s2 = ours.startInference()
    assert_same_marginals(q, np.array(q_ref), tolerance=1e-6)
    kls = []
    for _ in range(4):
        ref.stepInference(q_ref, t1, t2)
        ours.stepInference(q, s1, s2)
        assert_same_marginals(q, np.array(q_ref))
        kl_ref, kl = ref.klDivergence(q_ref), ours.klDivergence(q)
        assert abs(kl - kl_ref) <= 1e-4 * abs(kl_ref) + 1e-2
        kls.append(kl)
    # Mean field from the unary need not decrease the KL monotonically, but it does here.
    assert kls[-1] < kls[0]
    # Four steps by hand are four iterations of inference.
    np.testing.assert_allclose(q, ours.inference(4), atol=1e-6)


def test_without_unary_and_without_terms():
    n, labels = 50, 3
    feats = random_terms(2, n, 0)[0]
    for module in (pdcrf, edcrf):
        d = module.DenseCRF(n, labels)
        q, t1, t2 = d.startInference()
        assert np.array(q).shape == (labels, n) and not np.array(q).any()  # zeros, no unary
        np.testing.assert_allclose(np.array(d.inference(3)), 1.0 / labels, atol=1e-7)
    unary = random_unary(labels, n, np.random.default_rng(1))
    q = [np.array(build(m, n, labels, unary, []).inference(5)) for m in (pdcrf, edcrf)]
    np.testing.assert_allclose(q[1], q[0], atol=1e-6)  # softmax(-U), nothing to pass
    terms = [(feats, 2.0, 1, 3)]
    q = [np.array(build(m, n, labels, None, terms).inference(2)) for m in (pdcrf, edcrf)]
    np.testing.assert_allclose(q[1], q[0], atol=1e-6)


def test_logistic_unary_and_set_unary():
    rng = np.random.default_rng(3)
    n, labels = 40, 3
    u = random_unary(labels, n, rng)
    f = np.ascontiguousarray(rng.uniform(0, 1, size=(n, n)), np.float32)
    feats = random_terms(3, n, 4)[0]
    outs = []
    for module in (pdcrf, edcrf):
        d = module.DenseCRF(n, labels)
        d.setUnaryEnergy(u, f)
        d.addPairwiseEnergy(feats, 3.0)
        e = module.DenseCRF(n, labels)
        e.setUnary(module.LogisticUnary(u, f))
        e.addPairwiseEnergy(feats, 3.0)
        c = module.DenseCRF(n, labels)
        c.setUnary(module.ConstUnary(u))
        c.addPairwiseEnergy(feats, 3.0)
        outs.append([np.array(x.inference(3)) for x in (d, e, c)])
    for got, expected in zip(outs[1], outs[0]):
        np.testing.assert_allclose(got, expected, atol=1e-4)


# --------------------------------------------------------------------------------------------
# DenseCRF2D on photos


def run_2d(module, image, unary, labels, terms, iterations=5, **kw):
    h, w, _ = image.shape
    d = module.DenseCRF2D(w, h, labels, **kw)
    d.setUnaryEnergy(unary)
    for kind, args, kwargs in terms:
        getattr(d, kind)(*args, **kwargs)
    return np.array(d.inference(iterations))


def photo_terms(image, labels, rng, variant):
    potts = [("addPairwiseGaussian", (3, 3), {}), ("addPairwiseBilateral", (80, 13, image, 10), {})]
    if variant == "potts":
        return potts
    if variant == "per_axis":
        return [
            ("addPairwiseGaussian", ((2, 4), 3), {}),
            ("addPairwiseBilateral", ((50, 70), (5, 10, 15), image, 4), {}),
        ]
    if variant == "proportional_matrix":
        m = compat_of("matrix", labels, rng)
        return [
            ("addPairwiseGaussian", (3, m), {}),
            ("addPairwiseBilateral", (60, 10, image, np.ascontiguousarray(2 * m)), {}),
        ]
    if variant == "mixed_compat":
        return [
            ("addPairwiseGaussian", (3, compat_of("matrix", labels, rng)), {}),
            ("addPairwiseBilateral", (60, 10, image, compat_of("diag", labels, rng)), {}),
        ]
    if variant == "three_terms":
        return potts + [("addPairwiseGaussian", (8, 1), {"normalization": edcrf.NORMALIZE_AFTER})]
    if variant == "bilateral_only":
        return potts[1:]
    if variant == "zero_compat":
        zero = np.zeros(labels, np.float32)
        return [("addPairwiseGaussian", (3, zero), {}), ("addPairwiseBilateral", (60, 10, image, zero), {})]
    raise AssertionError(variant)


@pytest.mark.parametrize(
    "name, h, w, labels", [("astronaut", 90, 120, 3), ("coffee", 100, 80, 6), ("chelsea", 64, 96, 21)]
)
@pytest.mark.parametrize(
    "variant",
    ["potts", "per_axis", "proportional_matrix", "mixed_compat", "three_terms", "bilateral_only", "zero_compat"],
)
def test_photos_match(name, h, w, labels, variant):
    image = sample_image(name, h, w)
    unary = unary_for(image, labels, seed=labels)
    terms = photo_terms(image, labels, np.random.default_rng(labels), variant)
    assert_same_marginals(run_2d(edcrf, image, unary, labels, terms), run_2d(pdcrf, image, unary, labels, terms))


@pytest.mark.parametrize(
    "variant, fused",
    [
        ("potts", True),
        ("per_axis", True),
        ("proportional_matrix", True),
        ("bilateral_only", True),
        ("zero_compat", True),
        ("mixed_compat", False),
        ("three_terms", False),
    ],
)
def test_fused_op_where_it_computes_the_crf(monkeypatch, variant, fused):
    image = sample_image("astronaut", 40, 50)
    labels = 4
    unary = unary_for(image, labels, seed=0)
    terms = photo_terms(image, labels, np.random.default_rng(2), variant)
    calls = []
    real = edcrf.dense_crf
    monkeypatch.setattr(edcrf, "dense_crf", lambda *a, **k: calls.append(1) or real(*a, **k))
    q = run_2d(edcrf, image, unary, labels, terms)
    assert bool(calls) == fused
    if fused:
        # The general mean field over permutohedral_filter computes the same CRF.
        monkeypatch.setattr(edcrf.DenseCRF2D, "_fused", lambda self, n: None)
        assert_same_marginals(run_2d(edcrf, image, unary, labels, terms), q, tolerance=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_device(device):
    image = sample_image("coffee", 48, 64)
    labels = 5
    unary = unary_for(image, labels, seed=1)
    for variant in ("potts", "three_terms"):
        terms = photo_terms(image, labels, np.random.default_rng(0), variant)
        expected = run_2d(pdcrf, image, unary, labels, terms)
        assert_same_marginals(run_2d(edcrf, image, unary, labels, terms, device=device), expected)
    n, labels, unary, terms = random_crf(4, edcrf.NORMALIZE_BEFORE, "diag", seed=4)
    ref, ours = build(pdcrf, n, labels, unary, terms), build(edcrf, n, labels, unary, terms, device=device)
    assert_same_marginals(ours.inference(3), np.array(ref.inference(3)))
    q, t1, t2 = ours.startInference()
    ours.stepInference(q, t1, t2)
    q_ref, r1, r2 = ref.startInference()
    ref.stepInference(q_ref, r1, r2)
    assert_same_marginals(q, np.array(q_ref))
    assert abs(ours.klDivergence(q) - ref.klDivergence(q_ref)) <= 1e-4 * abs(ref.klDivergence(q_ref))


# --------------------------------------------------------------------------------------------
# Client code, only the prefix changed

CLIENTS = textwrap.dedent(
    """
    import numpy as np
    import PREFIX.densecrf as dcrf
    import PREFIX.utils as utils
    from PREFIX.utils import unary_from_labels, create_pairwise_bilateral, create_pairwise_gaussian


    def deeplab_crf(image, probmap, iter_max=10, pos_w=3, pos_xy_std=1, bi_w=4, bi_xy_std=67,
                    bi_rgb_std=3):
        # DeepLab-PyTorch's libs/utils/crf.py
        C, H, W = probmap.shape
        U = utils.unary_from_softmax(probmap)
        U = np.ascontiguousarray(U)
        image = np.ascontiguousarray(image)
        d = dcrf.DenseCRF2D(W, H, C)
        d.setUnaryEnergy(U)
        d.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
        d.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std, rgbim=image, compat=bi_w)
        Q = d.inference(iter_max)
        Q = np.array(Q).reshape((C, H, W))
        return Q


    def irn_crf_inference_label(img, labels, t=10, n_labels=21, gt_prob=0.7):
        # IRN's misc/imutils.py
        h, w = img.shape[:2]
        d = dcrf.DenseCRF2D(w, h, n_labels)
        unary = unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False)
        d.setUnaryEnergy(unary)
        d.addPairwiseGaussian(sxy=3, compat=3)
        d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(img)), compat=10)
        q = d.inference(t)
        return np.argmax(np.array(q).reshape((n_labels, h, w)), axis=0)


    def grayscale_crf(img, probs, n_iter=5):
        # A grayscale (medical-imaging style) CRF on DenseCRF with hand-built features.
        n_labels = probs.shape[0]
        d = dcrf.DenseCRF(img.size, n_labels)
        d.setUnaryEnergy(utils.unary_from_softmax(probs))
        feats = create_pairwise_gaussian(sdims=(3, 3), shape=img.shape)
        d.addPairwiseEnergy(feats, compat=3, kernel=dcrf.DIAG_KERNEL,
                            normalization=dcrf.NORMALIZE_SYMMETRIC)
        feats = create_pairwise_bilateral(sdims=(30, 30), schan=(8,), img=img, chdim=-1)
        d.addPairwiseEnergy(feats, compat=10, kernel=dcrf.DIAG_KERNEL,
                            normalization=dcrf.NORMALIZE_SYMMETRIC)
        Q = d.inference(n_iter)
        return np.argmax(np.array(Q).reshape((n_labels,) + img.shape), axis=0)
    """
)


def client(prefix: str) -> dict:
    namespace: dict = {}
    exec(compile(CLIENTS.replace("PREFIX", prefix), f"<client {prefix}>", "exec"), namespace)
    return namespace


def softmax_probs(unary: np.ndarray, shape) -> np.ndarray:
    p = np.exp(-unary.astype(np.float64))
    return (p / p.sum(0, keepdims=True)).astype(np.float32).reshape((-1,) + tuple(shape))


@pytest.mark.parametrize("name, h, w, labels", [("astronaut", 120, 160, 21), ("chelsea", 150, 200, 5)])
def test_deeplab_client(name, h, w, labels):
    image = sample_image(name, h, w)
    probmap = softmax_probs(unary_for(image, labels, seed=7), (h, w))
    expected = client("pydensecrf")["deeplab_crf"](image, probmap)
    got = client("emseg.pydensecrf")["deeplab_crf"](image, probmap)
    assert agreement(got, expected) >= MIN_AGREEMENT
    assert np.abs(got - expected).max() <= Q_TOLERANCE


@pytest.mark.parametrize("name, h, w, labels", [("coffee", 120, 160, 21), ("rocket", 128, 192, 4)])
def test_irn_client(name, h, w, labels):
    image = sample_image(name, h, w)
    # Coarse seeds as a CAM would give them: argmax of noisy scores on a 1/8 grid, upsampled.
    coarse = unary_for(image[::8, ::8].copy(), labels, seed=3).argmin(0).reshape(image[::8, ::8].shape[:2])
    seeds = np.kron(coarse, np.ones((8, 8), int))[:h, :w]
    expected = client("pydensecrf")["irn_crf_inference_label"](image, seeds, n_labels=labels)
    got = client("emseg.pydensecrf")["irn_crf_inference_label"](image, seeds, n_labels=labels)
    assert got.shape == expected.shape == (h, w)
    assert (got == expected).mean() >= MIN_AGREEMENT
    assert (expected != seeds).mean() > 0.01  # the CRF did refine the seeds


@pytest.mark.parametrize("name, size, labels", [("camera", 128, 3), ("moon", 160, 2)])
def test_grayscale_client(name, size, labels):
    gray = gray_image(name, size, size)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    probs = softmax_probs(unary_for(rgb, labels, seed=5), gray.shape)
    expected = client("pydensecrf")["grayscale_crf"](gray, probs)
    got = client("emseg.pydensecrf")["grayscale_crf"](gray, probs)
    assert (got == expected).mean() >= MIN_AGREEMENT


# --------------------------------------------------------------------------------------------
# Bad input: pydensecrf's errors


def bad_calls():
    n, labels = 12, 3
    f2 = np.zeros((2, n), np.float32)

    def crf(m):
        return m.DenseCRF(n, labels)

    def crf2d(m):
        return m.DenseCRF2D(4, 3, 2)

    return {
        "unary float64": lambda m: crf(m).setUnaryEnergy(np.zeros((labels, n))),
        "unary not C-contiguous": lambda m: crf(m).setUnaryEnergy(np.zeros((n, labels), np.float32).T),
        "unary 1-D": lambda m: crf(m).setUnaryEnergy(np.zeros(n, np.float32)),
        "unary None": lambda m: crf(m).setUnaryEnergy(None),
        "unary shape": lambda m: crf(m).setUnaryEnergy(np.zeros((labels, n - 1), np.float32)),
        "features shape": lambda m: crf(m).addPairwiseEnergy(np.zeros((2, n - 1), np.float32), 3),
        "features float64": lambda m: crf(m).addPairwiseEnergy(np.zeros((2, n)), 3),
        "compat 3-D": lambda m: crf(m).addPairwiseEnergy(f2, np.zeros((3, 3, 3), np.float32)),
        "compat float64": lambda m: crf(m).addPairwiseEnergy(f2, np.zeros(3)),
        "compat list": lambda m: crf(m).addPairwiseEnergy(f2, [1.0, 2.0, 3.0]),
        "rgbim channels": lambda m: crf2d(m).addPairwiseBilateral(3, 3, np.zeros((3, 4, 1), np.uint8), 3),
        "rgbim float32": lambda m: crf2d(m).addPairwiseBilateral(3, 3, np.zeros((3, 4, 3), np.float32), 3),
        "rgbim 2-D": lambda m: crf2d(m).addPairwiseBilateral(3, 3, np.zeros((3, 4), np.uint8), 3),
        "sxy too short": lambda m: crf2d(m).addPairwiseGaussian((3,), 3),
    }


@pytest.mark.parametrize("case", list(bad_calls()))
def test_rejects_what_pydensecrf_rejects(case):
    call = bad_calls()[case]
    with pytest.raises(Exception) as expected:
        call(pdcrf)
    with pytest.raises(type(expected.value)) as got:
        call(edcrf)
    assert str(got.value) == str(expected.value)


def test_bilateral_shape_error():
    for m in (pdcrf, edcrf):
        with pytest.raises(ValueError, match=r"Bad shape for pairwise bilateral \(Need \(3, 4, 3\), got"):
            m.DenseCRF2D(4, 3, 2).addPairwiseBilateral(3, 3, np.zeros((4, 3, 3), np.uint8), 3)


def test_rejects_what_emseg_cannot_or_pydensecrf_would_misread():
    n, labels = 10, 3
    d = edcrf.DenseCRF(n, labels)
    with pytest.raises(NotImplementedError, match="17 dimensions.*1 to 16"):
        d.addPairwiseEnergy(np.zeros((17, n), np.float32), 3)
    with pytest.raises(NotImplementedError, match="0 dimensions"):
        d.addPairwiseEnergy(np.zeros((0, n), np.float32), 3)
    with pytest.raises(ValueError, match="kernel must be one of CONST_KERNEL"):
        d.addPairwiseEnergy(np.zeros((2, n), np.float32), 3, kernel=5)
    with pytest.raises(ValueError, match="normalization must be one of NO_NORMALIZATION"):
        d.addPairwiseEnergy(np.zeros((2, n), np.float32), 3, normalization=7)
    with pytest.raises(ValueError, match="compat vector must have n_labels = 3 entries, got 2"):
        d.addPairwiseEnergy(np.zeros((2, n), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"compat matrix must be \[3, 3\], got \[3, 2\]"):
        d.addPairwiseEnergy(np.zeros((2, n), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"L @ f needs"):
        d.setUnaryEnergy(np.zeros((labels, n), np.float32), np.zeros((n + 1, n), np.float32))
    with pytest.raises(TypeError, match="Argument 'u' has incorrect type"):
        d.setUnary(np.zeros((labels, n), np.float32))
    q, t1, t2 = d.startInference()
    with pytest.raises(ValueError, match=r"Bad shape for Q \(Need \(3, 10\), got \(3, 9\)\)"):
        d.stepInference(q[:, :9].copy(), t1, t2)
    with pytest.raises(TypeError, match="Argument 'Q' has incorrect type"):
        d.klDivergence(q.tolist())
