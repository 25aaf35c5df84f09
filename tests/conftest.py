import pytest
import torch

import emseg

CUDA_SKIP_REASON = "CUDA kernels not built or no GPU visible (emseg.cuda_available() is False)"

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not emseg.cuda_available(), reason=CUDA_SKIP_REASON)),
]


def random_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
