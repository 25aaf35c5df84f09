import logging
from pathlib import Path

import pytest
import torch

import emseg
from emseg.data import make_synthetic_voc

CUDA_SKIP_REASON = "CUDA kernels not built or no GPU visible (emseg.cuda_available() is False)"

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not emseg.cuda_available(), reason=CUDA_SKIP_REASON)),
]


def random_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def base_args(root, out, **extra):
    """``python -m emseg.train`` flags for a short CPU run on a synthetic set at ``root``."""
    args = {
        "--synthetic-dir": root,
        "--synthetic-train": 96,
        "--synthetic-val": 24,
        "--synthetic-test": 0,
        "--synthetic-size": 64,
        "--crop-size": 64,
        "--batch-size": 4,
        "--width": 8,
        "--workers": 0,
        "--output-dir": out,
        "--num-pictures": 0,
        "--eval-batch-size": 8,
        "--log-interval": 1,
        "--label-cache": Path(out).parent / "labels",
        # random weights and Bbox-Rect unless a test asks otherwise: the pretraining stage has its
        # own tests (test_pretrain.py), and these runs stay a few seconds each
        "--init": "scratch",
        "--synthetic-pretrain": 0,
        "--mode": "bbox-rect",
        "--pretrain-cache": Path(out).parent / "pretrain-cache",
    }
    args.update(extra)
    argv = ["--no-progress"]
    for k, v in args.items():
        argv += [k, str(v)] if v is not True else [k]
    return argv


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory):
    """24 training and 8 validation images of 48x48, written once per test module."""
    root = tmp_path_factory.mktemp("data") / "syn"
    make_synthetic_voc(root, num_train=24, num_val=8, image_size=48, seed=1, progress=False)
    return root


def small_args(root, out, **extra):
    """:func:`base_args` for :func:`small_synthetic`: 4 iterations of full crops."""
    return base_args(
        root,
        out,
        **{
            "--synthetic-train": 24,
            "--synthetic-val": 8,
            "--synthetic-size": 48,
            "--crop-size": 48,
            "--iterations": 4,
            **extra,
        },
    )


@pytest.fixture
def emseg_log(caplog):
    """caplog for the "emseg" logger, which does not propagate once a run has set up its logging."""
    logger = logging.getLogger("emseg")
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)
