"""permutohedral_filter against exact Gaussian filtering, its invariances, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DEVICES
from gpu_on_cpu.backends import KERNEL_DEVICES, run_on
from reference_crf import gaussian_filter

import emseg
from emseg.ops import permutohedral_filter

# Approximation error of the normalised lattice filter against exact Gaussian filtering, for P = 400
# points uniform in a cube of side 2 (standard deviations), values = a smooth signal and unit white
# noise: (mean |error|, max |error|) bounds, about 1.5x the worst of 5 seeds measured. The lattice's
# kernel is a piecewise-linear tent blurred along d+1 axes, close to a Gaussian near the centre and
# cruder in its tails, so the error grows with D; where points are sparse (far apart compared with
# the standard deviation) the error is larger still, which is why the cube is kept small.
ERROR_BOUNDS = {2: (0.02, 0.06), 3: (0.04, 0.15), 5: (0.03, 0.15), 8: (0.04, 0.3)}


def _points(d: int, p: int = 400, side: float = 2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.0, side, size=(p, d)).astype(np.float32)
    v = np.stack([np.sin(f.sum(1)), rng.normal(size=p)], 1).astype(np.float32)
    return f, v


@pytest.mark.parametrize("d", sorted(ERROR_BOUNDS))
@pytest.mark.parametrize("seed", [0, 1])
def test_against_exact_gaussian(d, seed):
    f, v = _points(d, seed=seed)
    out = permutohedral_filter(torch.from_numpy(v), torch.from_numpy(f)).numpy()
    err = np.abs(out - gaussian_filter(v, f))
    mean_bound, max_bound = ERROR_BOUNDS[d]
    assert err.mean(0).max() <= mean_bound
    assert err.max() <= max_bound


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d,p", [(1, 300), (2, 300), (5, 300), (16, 300), (2, 12000), (5, 12000)])
def test_permuted_points_give_permuted_output(device, d, p):
    # From 8192 points the CPU builds the lattice in two halves and merges them; a permutation
    # splits the points differently, so a merge that lost or doubled a vertex would show here.
    f, v = _points(d, p=p, seed=3)
    perm = np.random.default_rng(4).permutation(len(f))
    ft, vt = torch.from_numpy(f).to(device), torch.from_numpy(v).to(device)
    out = permutohedral_filter(vt, ft)
    out_perm = permutohedral_filter(vt[perm], ft[perm])
    torch.testing.assert_close(out_perm, out[perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_raw_response_is_linear_and_normalises(device):
    f, v = _points(3, p=200, seed=5)
    ft, vt = torch.from_numpy(f).to(device), torch.from_numpy(v).to(device)
    u = torch.randn_like(vt)
    raw = permutohedral_filter(2.0 * vt - 3.0 * u, ft, normalize=False)
    expected = 2.0 * permutohedral_filter(vt, ft, normalize=False) - 3.0 * permutohedral_filter(u, ft, normalize=False)
    torch.testing.assert_close(raw, expected, rtol=1e-4, atol=1e-4)
    ones = permutohedral_filter(torch.ones_like(vt[:, :1]), ft, normalize=False)
    assert (ones > 0).all()
    torch.testing.assert_close(permutohedral_filter(vt, ft), permutohedral_filter(vt, ft, normalize=False) / ones)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [1, 3, 4, 8, 9, 21])
def test_batched_equals_single_and_any_channel_count(device, channels):
    rng = np.random.default_rng(channels)
    f = torch.from_numpy(rng.uniform(0, 3, size=(3, 150, 2)).astype(np.float32)).to(device)
    v = torch.from_numpy(rng.normal(size=(3, 150, channels)).astype(np.float32)).to(device)
    out = permutohedral_filter(v, f)
    assert out.shape == v.shape
    for n in range(3):
        torch.testing.assert_close(out[n], permutohedral_filter(v[n], f[n]))
    # Channels are filtered independently.
    torch.testing.assert_close(out[..., :1], permutohedral_filter(v[..., :1].contiguous(), f))


@pytest.mark.parametrize("device", DEVICES)
def test_constant_signal_and_single_point(device):
    f = torch.rand(50, 4, device=device) * 3
    out = permutohedral_filter(torch.full((50, 2), 7.0, device=device), f)
    torch.testing.assert_close(out, torch.full_like(out, 7.0))
    one = permutohedral_filter(torch.tensor([[2.5]], device=device), torch.zeros(1, 3, device=device))
    torch.testing.assert_close(one, torch.tensor([[2.5]], device=device))
    empty = permutohedral_filter(torch.zeros(0, 2, device=device), torch.zeros(0, 3, device=device))
    assert empty.shape == (0, 2)


def test_non_contiguous_inputs():
    f, v = _points(2, p=100, seed=6)
    ft = torch.from_numpy(np.asfortranarray(f))
    vt = torch.from_numpy(np.asfortranarray(v))
    expected = permutohedral_filter(torch.from_numpy(v), torch.from_numpy(f))
    assert not ft.is_contiguous() and not vt.is_contiguous()
    torch.testing.assert_close(permutohedral_filter(vt, ft), expected)


# Not bit-exact: float contraction (FMA) differs between the host build and the device compiler.
@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("d", [2, 5, 8])
@pytest.mark.parametrize("normalize", [True, False])
def test_cuda_matches_cpu(device, d, normalize):
    f, v = _points(d, p=2000, side=4.0, seed=7)
    cpu = permutohedral_filter(torch.from_numpy(v), torch.from_numpy(f), normalize)
    gpu = run_on(device, permutohedral_filter, torch.from_numpy(v), torch.from_numpy(f), normalize)
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


# Past 65535 chunks of 8 channels the chunks no longer fit one launch's grid along y.
@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_cuda_matches_cpu_past_65535_chunks(device):
    g = torch.Generator().manual_seed(9)
    v = torch.rand(3, 65535 * 8 + 5, generator=g)
    f = torch.rand(3, 2, generator=g)
    cpu = permutohedral_filter(v, f)
    torch.testing.assert_close(run_on(device, permutohedral_filter, v, f), cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    f, v = _points(3, p=64, seed=8)
    args = (torch.from_numpy(v).to(device), torch.from_numpy(f).to(device), True)
    torch.library.opcheck(torch.ops.emseg.permutohedral_filter.default, args)


@pytest.mark.parametrize(
    "values, features, match",
    [
        (torch.zeros(5), torch.zeros(5, 2), r"values must be a 2-D \[P, V\] or 3-D"),
        (torch.zeros(5, 2), torch.zeros(1, 5, 2), "features must have the same number of dimensions"),
        (torch.zeros(5, 2, dtype=torch.float64), torch.zeros(5, 2), "values must have dtype Float"),
        (torch.zeros(5, 2), torch.zeros(5, 2, dtype=torch.int32), "features must have dtype Float"),
        (torch.zeros(5, 2), torch.zeros(6, 2), r"features.shape\[0\] must equal values.shape\[0\]"),
        (torch.zeros(2, 5, 2), torch.zeros(3, 5, 2), r"features.shape\[0\] must equal values.shape\[0\]"),
        (torch.zeros(5, 2), torch.zeros(5, 0), "feature dimension D\\) must be between 1 and 16"),
        (torch.zeros(5, 2), torch.zeros(5, 17), "feature dimension D\\) must be between 1 and 16"),
        (torch.zeros(5, 2), torch.tensor([[float("nan")]] * 5), "features contains NaN or infinite"),
        (torch.full((5, 2), float("inf")), torch.zeros(5, 2), "values contains NaN or infinite"),
        (torch.zeros(5, 2), torch.full((5, 2), 1e7), r"features must have \|f\| below"),
    ],
)
def test_rejects_bad_input(values, features, match):
    with pytest.raises(RuntimeError, match=match):
        permutohedral_filter(values, features)


def test_opcheck_with_inputs_that_require_grad():
    # All of opcheck's checks, the autograd ones included (tests/test_crf_grad.py checks the
    # gradient's values; the features' gradient is refused, so they do not require grad).
    f, v = _points(2, p=32, seed=10)
    args = (torch.from_numpy(v).requires_grad_(), torch.from_numpy(f), True)
    torch.library.opcheck(torch.ops.emseg.permutohedral_filter.default, args)


def _thread_count_cases():
    g = torch.Generator().manual_seed(11)
    for p, v, d in [(2000, 1, 2), (2000, 4, 5), (2000, 5, 3), (3000, 9, 5), (5000, 21, 5), (300, 2, 16), (20000, 3, 5)]:
        f, x = torch.rand(p, d, generator=g) * 4, torch.randn(p, v, generator=g)
        for normalize in (True, False):
            yield (
                f"lattice-P{p}-V{v}-D{d}-{normalize}",
                lambda f=f, x=x, n=normalize: emseg.ops.permutohedral_filter(x, f, n),
            )
    f, x = torch.rand(3, 700, 5, generator=g) * 3, torch.randn(3, 700, 6, generator=g)
    yield "lattice-batched", lambda: emseg.ops.permutohedral_filter(x, f)
    yield "lattice-adjoint", lambda: torch.ops.emseg.permutohedral_filter_backward(x, f, True)
    u = torch.rand(2, 21, 40, 50, generator=g)
    image = torch.randint(0, 256, (2, 3, 40, 50), dtype=torch.uint8, generator=g)
    yield "crf-21-labels", lambda: emseg.ops.dense_crf(u, image)
    big_u = torch.rand(1, 21, 96, 100, generator=g)
    big_image = torch.randint(0, 256, (1, 3, 96, 100), dtype=torch.uint8, generator=g)
    yield "crf-two-part-build", lambda: emseg.ops.dense_crf(big_u, big_image)
    yield "crf-3-labels", lambda: emseg.ops.dense_crf(u[:, :3].contiguous(), image, iterations=5)
    compat = torch.rand(5, 5, generator=g)
    yield "crf-matrix-compat", lambda: emseg.ops.dense_crf(u[:, :5].contiguous(), image, compat=compat)
    mu = torch.stack([-3 * torch.eye(21), -4 * torch.eye(21)])
    grad = torch.randn(u.shape, generator=g)
    yield (
        "crf-gradient",
        lambda: torch.ops.emseg.dense_crf_backward(
            grad, u, image, mu, [3.0, 3.0], [121.0, 121.0, 5.0, 5.0, 5.0], 10, None, False
        ),
    )
    scores = torch.randn(4, 21, 65, 47, generator=g)
    present = torch.rand(4, 21, generator=g) < 0.3
    yield "em_fixed", lambda: emseg.ops.em_fixed(scores, present)
    yield "em_adapt", lambda: torch.cat([t.double().flatten() for t in emseg.ops.em_adapt(scores, present)])
    boxes = torch.cat([torch.rand(4, 6, 4, generator=g) * 60, torch.randint(0, 21, (4, 6, 1), generator=g).float()], 2)
    yield "boxes_to_labels", lambda: emseg.ops.boxes_to_labels(boxes, 65, 47)
    yield "bbox_em_fixed", lambda: emseg.ops.bbox_em_fixed(scores, boxes)


THREAD_CASES = dict(_thread_count_cases())


@pytest.mark.parametrize("name", list(THREAD_CASES))
def test_cpu_outputs_have_the_same_bits_for_any_thread_count(name):
    # README, "The operators": the CPU kernels give the same bits whatever torch.set_num_threads.
    run = THREAD_CASES[name]
    before = torch.get_num_threads()
    try:
        outputs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outputs.append(run())
    finally:
        torch.set_num_threads(before)
    for threads, out in zip((2, 3), outputs[1:]):
        assert torch.equal(out, outputs[0]), f"{name}: {threads} threads differ from 1"


def test_eight_lane_embedding_has_the_bits_of_embed_point(tmp_path):
    """On x86-64 CPUs with AVX2 the lattice build embeds points 8 at a time (embed_points8); its keys,
    weights and hashes must be embed_point's and hash_key's. Compiled here as CMake compiles
    lattice_cpu.cpp (-O3, no FMA in the baseline flags), with $CXX or g++."""
    import os
    import platform
    import shlex
    import shutil
    import subprocess

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the 8-lane embedding is compiled only on x86-64")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cxx = shlex.split(os.environ["CXX"]) if os.environ.get("CXX") else [shutil.which("g++") or ""]
    if not cxx[0]:
        pytest.skip("no C++ compiler: CXX is unset and g++ is not on PATH")
    exe = tmp_path / "embed_points8_check"
    build = subprocess.run(
        cxx
        + [
            "-O3",
            "-std=c++20",
            "-I",
            os.path.join(root, "csrc"),
            os.path.join(root, "tests", "native", "embed_points8_check.cpp"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("same bits") == 72  # 6 d x 6 magnitudes x 2 modes
