"""The pydensecrf-compatible API: emseg.pydensecrf against pydensecrf2 on the CPU, same client code.

Workloads: DeepLab-PyTorch's CRF on a 500x375 photo (21 labels, 10 iterations, one Gaussian + one
bilateral term: emseg's fused op) and a grayscale ``DenseCRF`` over hand-built features on a
512x512 photo (3 labels, 5 iterations: the general mean field over permutohedral_filter). Each run
also checks its labels against pydensecrf2's (agreement >= 99.5 %), so ``--benchmark-disable``
still tests something. The client code is exactly the tests' (only the package prefix differs),
so it runs where pydensecrf's API runs, on the CPU; ``device=`` is covered by the tests.

    pytest benchmarks/bench_pydensecrf.py --benchmark-json=pydensecrf.json
"""

from __future__ import annotations

import functools

import benchutil  # noqa: F401  (puts tests/ on sys.path)
import numpy as np
import pytest
from test_crf import sample_image, unary_for
from test_pydensecrf import MIN_AGREEMENT, client, gray_image, pdcrf, softmax_probs

pytestmark = pytest.mark.skipif(pdcrf is None, reason="pydensecrf2 is not installed")


@functools.lru_cache(maxsize=None)
def deeplab_inputs():
    image = sample_image("astronaut", 375, 500)
    return image, softmax_probs(unary_for(image, 21, seed=7), image.shape[:2])


@functools.lru_cache(maxsize=None)
def grayscale_inputs():
    gray = gray_image("camera", 512, 512)
    probs = softmax_probs(unary_for(np.repeat(gray[..., None], 3, 2), 3, seed=5), gray.shape)
    return gray, probs


@functools.lru_cache(maxsize=None)
def reference(workload: str) -> np.ndarray:
    return run(workload, "pydensecrf")


def run(workload: str, prefix: str) -> np.ndarray:
    """The workload's labels through ``prefix``'s densecrf and utils."""
    code = client(prefix)
    if workload == "deeplab":
        return code["deeplab_crf"](*deeplab_inputs()).argmax(0)
    return code["grayscale_crf"](*grayscale_inputs())


@pytest.mark.parametrize("prefix", ["pydensecrf", "emseg.pydensecrf"], ids=["pydensecrf2", "emseg-cpu"])
@pytest.mark.parametrize("workload", ["deeplab", "grayscale"])
def test_pydensecrf_api(benchmark, workload, prefix):
    benchmark.group = f"pydensecrf-api-{workload}"
    benchmark.extra_info.update(device="cpu", workload=workload)
    labels = benchmark(lambda: run(workload, prefix))
    assert (labels == reference(workload)).mean() >= MIN_AGREEMENT
