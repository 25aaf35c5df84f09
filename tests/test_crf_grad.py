"""Gradients of permutohedral_filter (its adjoint) and dense_crf (the unrolled mean-field
iterations), against independent references.

- The filter: <F v, w> = <v, F^T w> in float64 over the float32 outputs, on random and adversarial
  point sets, and the gradient equal to the transpose of the filter's matrix (materialised from
  the forward's responses to unit vectors).
- dense_crf: the vector-Jacobian product against autograd through a float64 pure-torch mean field
  with the same lattice operators as matrices (to float precision), against the same with exact
  O(P^2) Gaussian kernels (within the lattice's approximation), and against central finite
  differences in random directions (<= 3 % relative).

Tests that call the ops directly (``test_adjoint_*``, ``test_vjp_*``) also run on the builds of
tests/gpu_on_cpu (HIP-CPU, scalar bodies); the ``test_autograd_*`` tests use the autograd
registration, which only ``torch.ops.emseg`` has.
"""

from __future__ import annotations

import pytest
import torch
from gpu_on_cpu.backends import KERNEL_DEVICES, run_on
from reference_crf import normalised_kernels

import emseg
import emseg.crf
from emseg.ops import dense_crf, permutohedral_filter

POS_STD, BI_STD = [3.0, 3.0], [10.0, 10.0, 5.0, 5.0, 5.0]


def filter_transpose(grad: torch.Tensor, features: torch.Tensor, normalize: bool) -> torch.Tensor:
    return torch.ops.emseg.permutohedral_filter_backward(grad, features, normalize)


def _point_sets():
    g = torch.Generator().manual_seed(3)
    for d in (1, 2, 3, 5, 8, 16):
        yield f"random-D{d}", torch.rand(300, d, generator=g) * 3, 3
    yield "duplicates", torch.rand(5, 3, generator=g).repeat(40, 1), 2  # 5 positions, 40 points each
    yield "all-one-point", torch.full((50, 5), 0.7), 4
    yield "huge-std", torch.rand(200, 5, generator=g) * 1e-4, 3  # every point in one simplex
    yield "small-std", torch.rand(200, 5, generator=g) * 1e4, 3  # no two points share a vertex
    yield "one-point", torch.rand(1, 5, generator=g), 2
    yield "many-channels", torch.rand(150, 5, generator=g) * 2, 21  # 3 chunks of 8
    yield "line", torch.linspace(0, 20, 120).unsqueeze(1).repeat(1, 2), 1  # a 1-D set in 2-D


POINT_SETS = {name: (f, v) for name, f, v in _point_sets()}


def _relative_gap(fv, v, ftw, w) -> float:
    # Float32 outputs compared in float64; the scale is the sum of the terms' magnitudes.
    lhs = (fv.double() * w.double()).sum()
    rhs = (v.double() * ftw.double()).sum()
    scale = (fv.double() * w.double()).abs().sum() + (v.double() * ftw.double()).abs().sum()
    return float((lhs - rhs).abs() / scale)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("name", list(POINT_SETS))
def test_adjoint_identity(name, normalize):
    features, channels = POINT_SETS[name]
    g = torch.Generator().manual_seed(len(name))
    v = torch.randn(features.shape[0], channels, generator=g)
    w = torch.randn(features.shape[0], channels, generator=g)
    fv = permutohedral_filter(v, features, normalize)
    ftw = filter_transpose(w, features, normalize)
    assert _relative_gap(fv, v, ftw, w) < 1e-6


def test_adjoint_batched_equals_each_set():
    g = torch.Generator().manual_seed(5)
    features = torch.rand(3, 200, 5, generator=g) * 2
    w = torch.randn(3, 200, 4, generator=g)
    batched = filter_transpose(w, features, True)
    for n in range(3):
        torch.testing.assert_close(batched[n], filter_transpose(w[n], features[n], True), rtol=0, atol=0)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("name", ["random-D2", "random-D5", "duplicates", "line"])
def test_adjoint_is_the_transpose_of_the_filter_matrix(name, normalize):
    # Row j of the filter's matrix from the response to unit vectors; the transposed product must
    # match it to float32 rounding (which would fail with the blur axes in forward order: on a
    # sparse lattice the one-axis blurs do not commute).
    features, _ = POINT_SETS[name]
    p = features.shape[0]
    matrix = permutohedral_filter(torch.eye(p), features, normalize).double()  # [i, j] = F e_j at i
    w = torch.randn(p, 2, generator=torch.Generator().manual_seed(1))
    expected = matrix.t() @ w.double()
    got = filter_transpose(w, features, normalize).double()
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert (matrix - matrix.t()).abs().max() > 1e-4 or name == "duplicates", "a test that could not fail"


# ---- dense_crf -----------------------------------------------------------------------------------


def crf_case(h: int, w: int, labels: int, seed: int, scale: float = 2.0, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(batch, labels, h, w, generator=g) * scale
    image = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=g)
    grad = torch.randn(batch, labels, h, w, generator=g)
    return unary, image, grad


def crf_compat(labels: int, pos_w: float = 3.0, bi_w: float = 4.0, matrix: torch.Tensor | None = None):
    mu = -torch.eye(labels) if matrix is None else matrix
    return torch.stack([pos_w * mu, bi_w * mu])


def crf_vjp(grad, unary, image, compat, iterations, sizes=None, logits=False):
    return torch.ops.emseg.dense_crf_backward(grad, unary, image, compat, POS_STD, BI_STD, iterations, sizes, logits)


def image_features(image: torch.Tensor, h: int, w: int):
    """The op's features of one [3, H, W] image's top-left h x w region: positions, then positions
    and colours, each divided by its standard deviation."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    pos = torch.stack([xs / POS_STD[0], ys / POS_STD[1]], -1).reshape(-1, 2)
    rgb = image[:, :h, :w].permute(1, 2, 0).reshape(-1, 3).float() / torch.tensor(BI_STD[2:])
    bil = torch.cat([torch.stack([xs / BI_STD[0], ys / BI_STD[1]], -1).reshape(-1, 2), rgb], 1)
    return pos, bil


def lattice_kernels(image: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
    """The lattice's symmetric-normalised kernels as [P, P] float64 matrices n F n, F the raw
    filter's matrix from its responses to unit vectors (n = F(1)^-1/2, as the op computes it)."""
    out = []
    for f in image_features(image, h, w):
        matrix = permutohedral_filter(torch.eye(f.shape[0]), f, False).double()
        n = 1.0 / torch.sqrt(matrix.sum(1) + 1e-20)
        out.append(n[:, None] * matrix * n[None, :])
    return out


def exact_kernels(image: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
    pos, bil = image_features(image, h, w)
    return [torch.from_numpy(k) for k in normalised_kernels([pos.numpy(), bil.numpy()])]


def torch_mean_field(energy: torch.Tensor, kernels, compat: torch.Tensor, iterations: int):
    """Q_T for energies [L, P] (float64, differentiable), kernels [P, P], compat [2, L, L]."""
    q = torch.softmax(-energy, 0)
    for _ in range(iterations):
        msg = sum(compat[k].double() @ (q @ kernels[k].t()) for k in range(2) if compat[k].any())
        q = torch.softmax(-energy - msg, 0)
    return q


def reference_vjp(grad, unary, image, compat, iterations, kernels_of, sizes=None, logits=False):
    out = torch.zeros(unary.shape, dtype=torch.float64)
    for n in range(unary.shape[0]):
        h, w = (int(s) for s in sizes[n]) if sizes is not None else unary.shape[2:]
        if h * w == 0:
            continue
        u = unary[n, :, :h, :w].double().reshape(unary.shape[1], -1).requires_grad_()
        q = torch_mean_field(-u if logits else u, kernels_of(image[n], h, w), compat, iterations)
        (q * grad[n, :, :h, :w].double().reshape(q.shape)).sum().backward()
        out[n, :, :h, :w] = u.grad.reshape(-1, h, w)
    return out


VJP_CASES = {
    "potts-3": dict(h=9, w=11, labels=3, iterations=5),
    "potts-1-label": dict(h=6, w=7, labels=1, iterations=3),
    "potts-9-labels-two-chunks": dict(h=8, w=9, labels=9, iterations=4),
    "potts-21-labels": dict(h=7, w=8, labels=21, iterations=10),
    "zero-iterations": dict(h=6, w=5, labels=4, iterations=0),
    "one-iteration": dict(h=6, w=5, labels=4, iterations=1),
    "bilateral-only": dict(h=8, w=8, labels=3, iterations=5, pos_w=0.0),
    "position-only": dict(h=8, w=8, labels=3, iterations=5, bi_w=0.0),
    "both-off": dict(h=5, w=6, labels=3, iterations=4, pos_w=0.0, bi_w=0.0),
    "matrix-compat": dict(h=8, w=9, labels=5, iterations=4, matrix=True),
    "logits": dict(h=7, w=6, labels=4, iterations=3, logits=True),
    "one-pixel": dict(h=1, w=1, labels=3, iterations=5),
    "huge-unary": dict(h=6, w=6, labels=3, iterations=3, scale=1e4),
}


def _vjp_case(name, cases=VJP_CASES):
    c = dict(cases[name])
    unary, image, grad = crf_case(c["h"], c["w"], c["labels"], seed=len(name), scale=c.get("scale", 2.0))
    matrix = None
    if c.get("matrix"):
        matrix = torch.rand(c["labels"], c["labels"], generator=torch.Generator().manual_seed(4)) - 0.5
    compat = crf_compat(c["labels"], c.get("pos_w", 3.0), c.get("bi_w", 4.0), matrix)
    return unary, image, grad, compat, c["iterations"], c.get("logits", False)


@pytest.mark.parametrize("name", list(VJP_CASES))
def test_vjp_matches_mean_field_through_the_lattice_matrices(name):
    unary, image, grad, compat, iterations, logits = _vjp_case(name)
    got = crf_vjp(grad, unary, image, compat, iterations, logits=logits).double()
    expected = reference_vjp(grad, unary, image, compat, iterations, lattice_kernels, logits=logits)
    assert got.shape == unary.shape
    scale = max(float(expected.abs().max()), 1e-3)
    assert float((got - expected).abs().max()) <= 2e-4 * scale, name


def test_vjp_of_a_padded_batch_equals_each_image():
    unary, image, grad = crf_case(9, 10, 4, seed=8, batch=3)
    sizes = torch.tensor([[9, 10], [5, 7], [0, 4]])
    compat = crf_compat(4)
    got = crf_vjp(grad, unary, image, compat, 4, sizes=sizes)
    expected = reference_vjp(grad, unary, image, compat, 4, lattice_kernels, sizes=sizes)
    assert float((got.double() - expected).abs().max()) <= 2e-4 * float(expected.abs().max())
    assert torch.all(got[1, :, 5:] == 0) and torch.all(got[1, :, :, 7:] == 0) and torch.all(got[2] == 0)


# The lattice approximates the Gaussians (tests/test_lattice.py states by how much), so the exact
# kernels' gradient is close, not equal: bounds about 1.5x the worst of these seeds measured
# (relative error 0.027-0.124, cosine 0.993-0.9997).
@pytest.mark.parametrize("seed", range(6))
def test_vjp_close_to_mean_field_with_exact_gaussian_kernels(seed):
    unary, image, grad = crf_case(10, 12, 3, seed=seed, scale=1.0)
    compat = crf_compat(3, 1.5, 2.0)
    got = crf_vjp(grad, unary, image, compat, 5).double()
    expected = reference_vjp(grad, unary, image, compat, 5, exact_kernels)
    rel = float((got - expected).norm() / expected.norm())
    cosine = float((got * expected).sum() / (got.norm() * expected.norm()))
    assert rel <= 0.19 and cosine >= 0.99, (rel, cosine)


# Central differences of the float32 op, step 1e-3 (rounding noise ~1e-7 |f| / step, truncation
# ~step^2). The regimes are ones where the 10-step map is smooth on that scale: with DeepLab's
# weights on pure noise, 10 iterations sit near mean field's bifurcations and a 1e-3 step already
# changes labels (the matrix reference above covers that regime).
@pytest.mark.parametrize(
    "iterations, pos_w, bi_w, seed", [(10, 1.5, 2.0, 0), (10, 1.5, 2.0, 1), (3, 3.0, 4.0, 2), (5, 3.0, 4.0, 0)]
)
def test_vjp_matches_central_differences_in_random_directions(iterations, pos_w, bi_w, seed):
    unary, image, grad = crf_case(12, 13, 4, seed=seed, scale=1.0 if iterations == 10 else 2.0)
    compat = crf_compat(4, pos_w, bi_w)
    vjp = crf_vjp(grad, unary, image, compat, iterations).double()
    g = torch.Generator().manual_seed(100 + seed)
    step = 1e-3

    def f(x):
        q = torch.ops.emseg.dense_crf(x, image, compat, POS_STD, BI_STD, iterations, None, False)
        return float((q.double() * grad.double()).sum())

    for _ in range(3):
        direction = torch.randn(unary.shape, generator=g)
        fd = (f(unary + step * direction) - f(unary - step * direction)) / (2 * step)
        analytic = float((vjp * direction.double()).sum())
        assert abs(fd - analytic) <= 0.03 * abs(analytic), (fd, analytic)


def test_vjp_rejects_bad_grad():
    unary, image, grad = crf_case(5, 6, 3, seed=1)
    compat = crf_compat(3)
    with pytest.raises(RuntimeError, match=r"grad must have the shape of unary \(\[1, 3, 5, 6\]\)"):
        crf_vjp(grad[:, :2].contiguous(), unary, image, compat, 2)
    with pytest.raises(RuntimeError, match="grad must have dtype Float"):
        crf_vjp(grad.double(), unary, image, compat, 2)


# ---- the CUDA sources (GPU, or HIP-CPU through .ci/gpu_on_cpu.sh) against the CPU -----------------


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("name", ["random-D2", "random-D5", "duplicates", "many-channels", "one-point"])
def test_adjoint_kernels_match_cpu(device, name, normalize):
    features, channels = POINT_SETS[name]
    w = torch.randn(features.shape[0], channels, generator=torch.Generator().manual_seed(2))
    cpu = filter_transpose(w, features, normalize)
    dev = run_on(device, filter_transpose, w, features, normalize)
    torch.testing.assert_close(dev, cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("name", ["potts-3", "potts-9-labels-two-chunks", "matrix-compat", "logits", "bilateral-only"])
def test_vjp_kernels_match_cpu(device, name):
    unary, image, grad, compat, iterations, logits = _vjp_case(name)
    cpu = crf_vjp(grad, unary, image, compat, iterations, logits=logits)
    dev = run_on(device, crf_vjp, grad, unary, image, compat, iterations, None, logits)
    # Not bit-exact: the device takes expf where the host takes its own polynomial (crf.h).
    assert float((dev - cpu).abs().max()) <= 1e-3 * float(cpu.abs().max())


# ---- autograd ------------------------------------------------------------------------------------


def test_autograd_filter_gradient_is_the_adjoint():
    features, _ = POINT_SETS["random-D5"]
    g = torch.Generator().manual_seed(7)
    values = torch.randn(300, 3, generator=g, requires_grad=True)
    w = torch.randn(300, 3, generator=g)
    (permutohedral_filter(values, features) * w).sum().backward()
    torch.testing.assert_close(values.grad, filter_transpose(w, features, True), rtol=0, atol=0)


def test_autograd_filter_twice_differentiable():
    # The backward is linear in its input and its own transpose is the forward filter.
    features, _ = POINT_SETS["random-D2"]
    g = torch.Generator().manual_seed(8)
    w = torch.randn(300, 2, generator=g, requires_grad=True)
    h = torch.randn(300, 2, generator=g)
    (filter_transpose(w, features, True) * h).sum().backward()
    torch.testing.assert_close(w.grad, permutohedral_filter(h, features, True), rtol=0, atol=0)


def test_autograd_refuses_feature_gradients():
    features, _ = POINT_SETS["random-D2"]
    values = torch.randn(300, 2, requires_grad=True)
    out = permutohedral_filter(values, features.clone().requires_grad_())
    with pytest.raises(NotImplementedError, match="gradient with respect to features is not implemented"):
        out.sum().backward()


def test_autograd_crf_gradient_and_its_refusals():
    unary, image, grad = crf_case(8, 9, 3, seed=3)
    u = unary.clone().requires_grad_()
    q = dense_crf(u, image, bi_xy_std=10.0, iterations=4)
    with torch.no_grad():
        plain = dense_crf(u, image, bi_xy_std=10.0, iterations=4)
    assert plain.grad_fn is None and q.grad_fn is not None
    torch.testing.assert_close(plain, q.detach(), rtol=0, atol=0)
    (q * grad).sum().backward()
    torch.testing.assert_close(u.grad, crf_vjp(grad, unary, image, crf_compat(3), 4), rtol=0, atol=0)
    # Logits: the energy is -unary.
    u.grad = None
    (dense_crf(u, image, bi_xy_std=10.0, iterations=4, unary_kind="logits") * grad).sum().backward()
    torch.testing.assert_close(u.grad, crf_vjp(grad, unary, image, crf_compat(3), 4, logits=True), rtol=0, atol=0)
    # The module too, and its output's gradient only where the output has one.
    u.grad = None
    emseg.crf.DenseCRF(iterations=2)(u, image)[:, 0].sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()
    compat = crf_compat(3).requires_grad_()
    q = torch.ops.emseg.dense_crf(unary, image, compat, POS_STD, BI_STD, 2, None, False)
    with pytest.raises(NotImplementedError, match="gradient with respect to compat is not implemented"):
        q.sum().backward()
    # The backward op itself has no derivative (no double backward through the CRF).
    v = crf_vjp(grad.clone().requires_grad_(), unary, image, crf_compat(3), 2)
    with pytest.raises(NotImplementedError, match="emseg.dense_crf_backward has no backward"):
        v.sum().backward()


def test_autograd_opcheck_filter():
    features, _ = POINT_SETS["random-D5"]
    values = torch.randn(300, 3, requires_grad=True)
    for normalize in (True, False):
        torch.library.opcheck(torch.ops.emseg.permutohedral_filter.default, (values, features, normalize))
        torch.library.opcheck(torch.ops.emseg.permutohedral_filter_backward.default, (values, features, normalize))


def test_autograd_opcheck_crf():
    unary, image, grad = crf_case(6, 7, 3, seed=6, batch=2)
    args = (unary.requires_grad_(), image, crf_compat(3), POS_STD, BI_STD, 3, torch.tensor([[6, 7], [4, 5]]), False)
    torch.library.opcheck(torch.ops.emseg.dense_crf.default, args)
    # The backward op's own checks (it has no derivative: inputs without grad).
    torch.library.opcheck(torch.ops.emseg.dense_crf_backward.default, (grad, unary.detach(), *args[1:]))


FORWARD_CASES = dict(VJP_CASES, **{"potts-40-labels-chunked": dict(h=5, w=6, labels=40, iterations=3)})


@pytest.mark.parametrize("name", list(FORWARD_CASES))
def test_forward_matches_mean_field_through_the_lattice_matrices(name):
    # The CPU's inference runs the row layout for Potts compatibilities and up to 32 labels (its
    # filterings fused with the update), the chunked layout otherwise (a full matrix, 40 labels):
    # both against the float64 mean field over the same lattice operators.
    unary, image, _, compat, iterations, logits = _vjp_case(name, FORWARD_CASES)
    labels, h, w = unary.shape[1:]
    got = torch.ops.emseg.dense_crf(unary, image, compat, POS_STD, BI_STD, iterations, None, logits)
    u = unary[0].double().reshape(labels, -1)
    expected = torch_mean_field(-u if logits else u, lattice_kernels(image[0], h, w), compat, iterations)
    assert float((got[0].double().reshape(expected.shape) - expected).abs().max()) <= 1e-5, name
