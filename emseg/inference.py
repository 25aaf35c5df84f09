"""From a network to labels: full-resolution scores, their argmax, and dense-CRF refinement.

Scores are upsampled to the image size on the network's own grid (score cell ``(i, j)`` sits on
pixel ``(stride * i, stride * j)``); the CRF refines the softmax of the same scores.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .crf import CRF
from .estep import upsample_scores


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def predict_batch(model: nn.Module, image: Tensor, amp: bool = False) -> Tensor:
    """Full-resolution class scores (float32) for a normalised image batch.

    A network trained on resized images (``input_scale`` != 1, the CPU recipe) sees the batch
    resized by the same factor; its scores are brought back to the batch's size."""
    net = unwrap(model)
    stride = getattr(net, "output_stride", 8)
    scale = getattr(net, "input_scale", 1.0)
    size = tuple(image.shape[-2:])
    x = image
    if scale != 1.0:
        x = F.interpolate(
            image,
            size=(max(1, round(size[0] * scale)), max(1, round(size[1] * scale))),
            mode="bilinear",
            align_corners=False,
            antialias=scale < 1.0,
        )
    with torch.autocast(image.device.type, dtype=torch.float16, enabled=amp and image.device.type == "cuda"):
        scores = model(x)
    up = upsample_scores(scores.float(), tuple(x.shape[-2:]), stride)
    if scale != 1.0:
        up = F.interpolate(up, size=size, mode="bilinear", align_corners=False)
    return up


@torch.no_grad()
def crf_refine(crf: CRF, logits: Tensor, image_uint8: Tensor) -> Tensor:
    """Refine full-resolution class scores with the CRF; returns labels ``[N, H, W]``.

    The unary is ``-log softmax(logits)`` in float32, as DeepLab feeds its CRF.
    """
    unary = -F.log_softmax(logits.float(), dim=1)
    q = crf(unary.contiguous(), image_uint8.contiguous())
    return q.argmax(1)


@torch.no_grad()
def predict_image(model: nn.Module, image_rgb: np.ndarray, mean, std, device, crf: CRF | None = None) -> np.ndarray:
    """Labels ``[H, W]`` (uint8) for one RGB uint8 image."""
    x = torch.from_numpy(image_rgb).permute(2, 0, 1).float().div(255.0)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    logits = predict_batch(model, x[None].to(device))
    if crf is not None:
        labels = crf_refine(crf, logits.cpu(), torch.from_numpy(image_rgb).permute(2, 0, 1)[None].contiguous())
    else:
        labels = logits.argmax(1)
    return labels[0].cpu().numpy().astype(np.uint8)
