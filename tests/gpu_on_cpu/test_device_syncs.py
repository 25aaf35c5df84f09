"""Device-to-host syncs per CUDA op call: what each op must read on the host, and nothing more.

Each op reads its value checks back in one copy (csrc/common/checks.h ValueChecks) and each
permutohedral lattice reads its vertex count M, which sizes its arrays and launch grids
(csrc/lattice/lattice_cuda_torch.h). Counted with torch's sync debug mode, which warns on every
synchronising CUDA operation, on a GPU only.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import CUDA_SKIP_REASON

import emseg

pytestmark = pytest.mark.skipif(not emseg.cuda_available(), reason=CUDA_SKIP_REASON)


def count_syncs(fn, *args, **kwargs) -> int:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn(*args, **kwargs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def test_cuda_syncs_per_op():
    g = torch.Generator().manual_seed(0)
    n = 3
    scores = torch.randn(n, 5, 9, 11, generator=g).cuda()
    present = (torch.rand(n, 5, generator=g) < 0.5).cuda()
    boxes = torch.tensor([[[1.0, 1.0, 6.0, 5.0, 2.0], [0.0, 0.0, 0.0, 0.0, -1.0]]] * n).cuda()
    values = torch.rand(n, 50, 3, generator=g).cuda()
    features = torch.rand(n, 50, 4, generator=g).cuda()
    unary = torch.rand(n, 4, 9, 11, generator=g).cuda()
    image = torch.randint(0, 256, (n, 3, 9, 11), dtype=torch.uint8, generator=g).cuda()
    sizes = torch.tensor([[9, 11], [5, 7], [9, 4]]).cuda()
    compat = torch.stack([-3 * torch.eye(4), -5 * torch.eye(4)]).cuda()
    emseg_ops = torch.ops.emseg  # the C++ ops themselves, not the Python wrappers
    counts = {
        "em_fixed": count_syncs(emseg_ops.em_fixed, scores, present),
        "em_adapt": count_syncs(emseg_ops.em_adapt, scores, present),
        "boxes_to_labels": count_syncs(emseg_ops.boxes_to_labels, boxes, 9, 11),
        "bbox_em_fixed": count_syncs(emseg_ops.bbox_em_fixed, scores, boxes),
        # One read of the checks, one vertex count per image.
        "permutohedral_filter": count_syncs(emseg_ops.permutohedral_filter, values, features),
        # One read of the checks, sizes and kernel plan; two lattices per image.
        "dense_crf": count_syncs(
            emseg_ops.dense_crf, unary, image, compat, [3.0, 3.0], [60.0, 60.0, 10.0, 10.0, 10.0], 2, sizes, False
        ),
    }
    expected = {
        "em_fixed": 1,
        "em_adapt": 1,
        "boxes_to_labels": 1,
        "bbox_em_fixed": 1,
        "permutohedral_filter": 1 + n,
        "dense_crf": 1 + 2 * n,
    }
    assert counts == expected
