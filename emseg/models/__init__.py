"""Segmentation networks: DeepLab-LargeFOV and a small variant, built by name."""

from __future__ import annotations

from torch import nn

from .deeplab import DeepLabLargeFOV, DeepLabSmall, convert_vgg16_state_dict, load_vgg16_weights

#: Model names accepted by :func:`build_model` and the ``--model`` flag.
MODELS = ("deeplab-largefov", "small")


def build_model(
    name: str, num_classes: int, pretrained: str | None = None, width: int = 32, dropout: float | None = None
) -> nn.Module:
    """Build a network by name; ``pretrained`` is a local torchvision-layout VGG16 file
    (DeepLab-LargeFOV only); ``dropout`` None keeps the model's default."""
    extra = {} if dropout is None else {"dropout": dropout}
    if name == "deeplab-largefov":
        model = DeepLabLargeFOV(num_classes, **extra)
        if pretrained:
            load_vgg16_weights(model, pretrained)
        return model
    if name == "small":
        if pretrained:
            raise ValueError("--pretrained applies to deeplab-largefov only (VGG16 weights)")
        return DeepLabSmall(num_classes, width=width, **extra)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


__all__ = [
    "MODELS",
    "build_model",
    "DeepLabLargeFOV",
    "DeepLabSmall",
    "convert_vgg16_state_dict",
    "load_vgg16_weights",
]
