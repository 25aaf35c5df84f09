"""Segmentation networks: DeepLab-LargeFOV and a small variant, built by name."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .deeplab import DeepLabLargeFOV, DeepLabSmall, context_for_crop, convert_vgg16_state_dict, load_vgg16_weights

#: Model names accepted by :func:`build_model` and the ``--model`` flag.
MODELS = ("deeplab-largefov", "small")

#: ``--pretrained`` value naming torchvision's VGG16 ImageNet file in the torch hub cache.
TORCHVISION_VGG16 = "torchvision"
_TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1


def torchvision_vgg16_path() -> Path:
    """Where torchvision keeps its VGG16 ImageNet weights once fetched: the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _TORCHVISION_VGG16_FILE


def build_model(
    name: str,
    num_classes: int,
    pretrained: str | None = None,
    width: int = 32,
    dropout: float | None = None,
    context: tuple[int, int] | None = None,
    input_scale: float = 1.0,
) -> nn.Module:
    """Build a network by name; ``pretrained`` is a local torchvision-layout VGG16 file
    (DeepLab-LargeFOV only); ``dropout`` and ``context`` (the small model's context dilations)
    None keep the model's default. ``input_scale`` is the factor images are resized by before the
    network sees them (the resolution it was trained at; see :func:`emseg.inference.predict_batch`)."""
    model = _build(name, num_classes, pretrained, width, dropout, context)
    model.input_scale = float(input_scale)
    return model


def _build(name, num_classes, pretrained, width, dropout, context) -> nn.Module:
    extra = {} if dropout is None else {"dropout": dropout}
    if name == "deeplab-largefov":
        model = DeepLabLargeFOV(num_classes, **extra)
        if pretrained:
            load_vgg16_weights(model, pretrained)
        return model
    if name == "small":
        if pretrained:
            raise ValueError("--pretrained applies to deeplab-largefov only (VGG16 weights)")
        if context is not None:
            extra["context"] = tuple(context)
        return DeepLabSmall(num_classes, width=width, **extra)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


__all__ = [
    "MODELS",
    "TORCHVISION_VGG16",
    "torchvision_vgg16_path",
    "build_model",
    "DeepLabLargeFOV",
    "DeepLabSmall",
    "context_for_crop",
    "convert_vgg16_state_dict",
    "load_vgg16_weights",
]
