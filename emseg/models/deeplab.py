"""DeepLab-LargeFOV (VGG16, atrous, output stride 8) and a small variant for CPU runs and tests.

Both networks share one shape contract, which the trainer relies on:

* ``forward(image [N,3,H,W]) -> scores [N,C,h,w]`` with ``h = ceil(H / 8)``, ``w = ceil(W / 8)``;
* score pixel ``(i, j)`` is centred on image pixel ``(8 i, 8 j)`` (every stride-2 stage is a 3x3
  window with padding 1), so a mask downsampled as ``mask[:, ::8, ::8]`` lines up with the scores;
* parameters are split into ``backbone``/``head`` (the ImageNet part) and ``classifier`` (the
  final 1x1 layer, trained with a larger learning rate as in DeepLab).

No batch normalisation anywhere: DeepLab v1 has none, and it keeps a DDP run equal to a single
process on the same global batch.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..files import CheckpointError, read_torch_file

# torchvision's VGG16 ("D") feature layout: channel counts, "M" marks a max-pool.
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _vgg16_atrous_features() -> nn.Sequential:
    """VGG16's conv layers at the indices torchvision uses, made atrous for output stride 8.

    pool1-3: 3x3 stride 2 pad 1; pool4, pool5: 3x3 stride 1 pad 1; conv5_x: dilation 2.
    Keeping torchvision's indexing lets ``features.N.*`` weights load without renaming.
    """
    layers: list[nn.Module] = []
    in_ch = 3
    n_pool = 0
    for v in _VGG16_CFG:
        if v == "M":
            n_pool += 1
            stride = 2 if n_pool <= 3 else 1
            layers.append(nn.MaxPool2d(3, stride=stride, padding=1))
        else:
            dilation = 2 if n_pool == 4 else 1
            layers.append(nn.Conv2d(in_ch, v, 3, padding=dilation, dilation=dilation))
            layers.append(nn.ReLU(inplace=True))
            in_ch = v
    return nn.Sequential(*layers)


class DeepLabLargeFOV(nn.Module):
    """DeepLab-LargeFOV: VGG16 atrous features, fc6 3x3 dilation 12 with 1024 channels, fc7 1x1
    1024, fc8 1x1 ``num_classes`` (Chen et al., ICLR 2015; the model of Papandreou et al.)."""

    output_stride = 8

    def __init__(self, num_classes: int = 21, dropout: float = 0.5):
        super().__init__()
        self.backbone = _vgg16_atrous_features()
        self.head = nn.Sequential(
            nn.Conv2d(512, 1024, 3, padding=12, dilation=12),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(1024, 1024, 1),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.classifier = nn.Conv2d(1024, num_classes, 1)  # fc8
        _init_random(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.head(self.backbone(x)))


class DeepLabSmall(nn.Module):
    """A few-layer DeepLab look-alike for CPU runs and tests: three stride-2 stages (a strided
    convolution, two 3x3 max-pools), then two context convolutions at stride 8, then a 1x1
    classifier. About 0.04-0.06 M parameters at width 16 (by context).

    ``context`` gives the dilation of the two context convolutions (0: a 1x1 convolution). It sets
    the receptive field, :attr:`receptive_field` = 27 + 16 (d1 + d2) pixels: a network whose every
    score sees the whole image cannot learn from image labels where an object is (see
    :func:`context_for_crop`, which sizes it like DeepLab-LargeFOV's on VOC crops). The defaults are
    the built-in recipe's: width 16, the context of its 64-pixel crops.
    """

    output_stride = 8

    def __init__(self, num_classes: int = 21, width: int = 16, dropout: float = 0.1, context: tuple[int, int] = (0, 1)):
        super().__init__()
        if len(context) != 2 or min(context) < 0:
            raise ValueError(f"context must be two dilations >= 0 (0: a 1x1 convolution), got {context}")
        w = width
        self.context = tuple(int(d) for d in context)
        self.backbone = nn.Sequential(
            # a strided first layer: full-resolution convolutions cost most on a CPU
            nn.Conv2d(3, w, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            _context_conv(2 * w, 2 * w, self.context[0]),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            _context_conv(2 * w, 4 * w, self.context[1]),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(4 * w, 4 * w, 1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(4 * w, num_classes, 1)
        _init_random(self)

    @property
    def receptive_field(self) -> int:
        """Side in pixels of the image window one score depends on."""
        return 27 + 16 * sum(self.context)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.head(self.backbone(x)))


def _context_conv(cin: int, cout: int, dilation: int) -> nn.Conv2d:
    if dilation == 0:
        return nn.Conv2d(cin, cout, 1)
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)


#: DeepLab-LargeFOV's receptive field over the side of its VOC training crop: 224 px (Chen et al.,
#: ICLR 2015, Table 2) on 321 px crops.
LARGEFOV_FIELD_SHARE = 224 / 321


def context_for_crop(crop_size: int) -> tuple[int, int]:
    """The small model's context dilations whose receptive field is closest to
    LARGEFOV_FIELD_SHARE of ``crop_size`` (ties: the smaller field)."""
    target = LARGEFOV_FIELD_SHARE * crop_size
    options = [(d1, d2) for d1 in range(0, 9) for d2 in range(0, 9) if d1 <= d2]
    return min(options, key=lambda c: (abs(27 + 16 * sum(c) - target), sum(c), c))


def _init_random(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    # DeepLab initialises fc8 with a Gaussian of std 0.01: the first scores are near-uniform.
    nn.init.normal_(model.classifier.weight, std=0.01)
    nn.init.zeros_(model.classifier.bias)


def convert_vgg16_state_dict(vgg: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map an ImageNet VGG16 state_dict in torchvision's layout onto DeepLab-LargeFOV's keys.

    ``features.N.*`` -> ``backbone.N.*`` unchanged. The fully connected fc6/fc7 are decimated as
    DeepLab-LargeFOV did: fc6 ``[4096, 512*7*7]`` -> every 4th filter and every 3rd spatial tap
    -> ``[1024, 512, 3, 3]``; fc7 ``[4096, 4096]`` -> every 4th output and input -> ``[1024, 1024,
    1, 1]``. The ImageNet classifier (``classifier.6``) is dropped: fc8 starts from scratch.
    """
    out: dict[str, Tensor] = {}
    for key, value in vgg.items():
        if key.startswith("features."):
            out["backbone." + key[len("features.") :]] = value
    try:
        w6, b6 = vgg["classifier.0.weight"], vgg["classifier.0.bias"]
        w7, b7 = vgg["classifier.3.weight"], vgg["classifier.3.bias"]
    except KeyError as exc:
        raise ValueError(
            f"not a torchvision VGG16 state_dict: missing {exc.args[0]!r} "
            "(expected keys features.N.weight/bias and classifier.0/3/6.weight/bias)"
        ) from None
    if tuple(w6.shape) != (4096, 512 * 7 * 7) or tuple(w7.shape) != (4096, 4096):
        raise ValueError(
            f"unexpected VGG16 fc shapes: classifier.0 {tuple(w6.shape)}, classifier.3 "
            f"{tuple(w7.shape)} (expected (4096, 25088) and (4096, 4096))"
        )
    out["head.0.weight"] = w6.view(4096, 512, 7, 7)[::4, :, ::3, ::3].contiguous()
    out["head.0.bias"] = b6[::4].contiguous()
    out["head.3.weight"] = w7[::4, ::4].reshape(1024, 1024, 1, 1).contiguous()
    out["head.3.bias"] = b7[::4].contiguous()
    return out


def load_vgg16_weights(model: DeepLabLargeFOV, path: str) -> None:
    """Initialise ``model`` from a local torchvision-layout VGG16 file (e.g. ``vgg16-397923af.pth``).

    Loaded with ``weights_only=True``; a checkpoint wrapping the weights under ``"state_dict"`` or
    ``"model"`` is accepted too. Every backbone and head parameter must be found.
    """
    state = read_torch_file(path)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a VGG16 state_dict (names -> tensors)")
    try:
        converted = convert_vgg16_state_dict(state)
        missing, unexpected = model.load_state_dict(converted, strict=False)
    except (ValueError, RuntimeError) as err:  # load_state_dict reports wrong shapes as RuntimeError
        raise CheckpointError(f"{path}: {' '.join(str(err).split())[:300]}") from None
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise CheckpointError(f"{path}: VGG16 weights do not fit: missing {missing}, unexpected {unexpected}")
