"""Training cost at the synthetic defaults: pretraining iterations, one training step per mode, and
the E-step alone, so the report shows the E-step's share of a step.

    pytest benchmarks/bench_train.py --benchmark-columns=mean,stddev --benchmark-group-by=group

Workloads: the synthetic preset's network (small, width 16, receptive field 43 px) on a batch of 8
crops of 64 px (7 classes), on the CPU (and CUDA where available). The step covers the forward
pass, the targets (mask or E-step), the loss, the backward pass and the SGD update; the E-step
group times the mode's target computation on the same scores. A whole pretraining's cost is the
iteration time times ``--pretrain-iterations`` (1500), plus reading the images once.

Every benchmark checks what it ran: a finite loss that the step lowers over repeats on one batch,
targets that cover every labelled pixel, a pretraining loss that falls.
"""

from __future__ import annotations

import functools

import pytest
import torch
from benchutil import DEVICES, describe, synchronized

from emseg.config import config_from_args
from emseg.data import VOCSegmentation, collate, make_synthetic_voc
from emseg.data.image_labels import ImageLabelSet
from emseg.data.transforms import IMAGENET_MEAN, TrainTransform
from emseg.distributed import DistInfo
from emseg.estep import IGNORE_INDEX, get_mode, make_targets
from emseg.models import build_model
from emseg.pretrain import PretrainConfig, pretrain
from emseg.train import segmentation_loss

MODES = ["full", "em-fixed", "em-adapt", "bbox-em-fixed"]  # online targets; bbox-rect / bbox-seg train like full


@functools.lru_cache(maxsize=1)
def data_root(tmp_root: str) -> str:
    return str(
        make_synthetic_voc(tmp_root, num_train=16, num_val=2, num_pretrain=32, image_size=64, seed=0, progress=False)
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return data_root(str(tmp_path_factory.mktemp("bench-train") / "syn"))


def batch_for(root: str, mode: str) -> dict:
    ds = VOCSegmentation(
        root,
        "train_aug",
        transform=TrainTransform(64, scale_range=(0.75, 1.25)),
        strong_ids=None if get_mode(mode).fully_supervised else (),
    )
    torch.manual_seed(0)
    return collate([ds[i] for i in range(8)])


def model_for(device: str) -> torch.nn.Module:
    cfg = config_from_args([])
    torch.manual_seed(0)
    return build_model(cfg.model, 7, width=cfg.width, context=cfg.context).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", MODES)
def test_training_step(benchmark, root, mode, device):
    model = model_for(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = batch_for(root, mode)
    image = batch["image"].to(device)
    m = get_mode(mode)
    cfg = config_from_args([])
    losses = []

    def step():
        scores = model(image)
        target = make_targets(m, scores.detach().float(), batch, cfg.estep, model.output_stride)
        loss = segmentation_loss(scores, target, DistInfo())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        return loss

    describe(benchmark, "train_step", "emseg", device, mode=mode, batch=8, crop=64)
    benchmark.group = "training step"
    benchmark(synchronized(step, device))
    while len(losses) < 6:  # --benchmark-disable runs the step once
        step()
    values = torch.stack(losses).cpu()
    assert torch.isfinite(values).all() and values[-1] < values[0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", MODES)
def test_estep_of_a_step(benchmark, root, mode, device):
    model = model_for(device).eval()
    batch = batch_for(root, mode)
    with torch.no_grad():
        scores = model(batch["image"].to(device)).float()
    m = get_mode(mode)
    cfg = config_from_args([])
    describe(benchmark, "targets", "emseg", device, mode=mode, batch=8, crop=64)
    benchmark.group = "E-step of a training step"
    target = benchmark(synchronized(lambda: make_targets(m, scores, batch, cfg.estep, model.output_stride), device))
    assert target.shape == (8, *scores.shape[-2:])
    labelled = target != IGNORE_INDEX
    assert labelled.any() and int(target[labelled].max()) < 7


@pytest.mark.parametrize("device", DEVICES)
def test_pretraining_iterations(benchmark, root, device):
    fill = tuple(int(round(255 * v)) for v in IMAGENET_MEAN)
    data = ImageLabelSet(root, "pretrain", 64, fill)
    cfg = PretrainConfig(iterations=100, seed=0)
    describe(benchmark, "pretrain", "emseg", device, iterations=cfg.iterations, batch=cfg.batch_size, size=cfg.size)
    benchmark.group = "pretraining, 100 iterations"
    _, curve = benchmark.pedantic(lambda: pretrain(cfg, data, torch.device(device)), rounds=1, iterations=1)
    assert len(curve) == 1 and 0 < curve[0] < 1.0
