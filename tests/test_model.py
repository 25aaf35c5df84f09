"""Networks: output stride and alignment, VGG16 conversion from torchvision's key layout."""

import math

import pytest
import torch

from emseg.models import (
    DeepLabLargeFOV,
    DeepLabSmall,
    build_model,
    convert_vgg16_state_dict,
)


def random_vgg16_state_dict(seed=0):
    """A randomly initialised VGG16 state_dict in torchvision's layout, built without torchvision."""
    g = torch.Generator().manual_seed(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    sd, idx, cin = {}, 0, 3
    for v in cfg:
        if v == "M":
            idx += 1
            continue
        sd[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3, generator=g)
        sd[f"features.{idx}.bias"] = torch.randn(v, generator=g)
        idx += 2  # conv + relu
        cin = v
    for i, (o, n) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096))):
        sd[f"classifier.{i}.weight"] = torch.randn(o, n, generator=g) * 0.01
        sd[f"classifier.{i}.bias"] = torch.randn(o, generator=g)
    return sd


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (9, 17), (33, 40)])
def test_small_output_stride(size):
    model = DeepLabSmall(num_classes=5, width=4).eval()
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, math.ceil(size[0] / 8), math.ceil(size[1] / 8))


def test_largefov_output_stride_321():
    model = DeepLabLargeFOV(num_classes=21).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 50))
    assert out.shape == (1, 21, 9, 7)


def test_score_cell_is_centred_on_stride_pixel():
    """A single bright pixel at (8i, 8j) must influence score cell (i, j) most among its
    neighbours for an all-ones (averaging) network: checks the mask[::8] alignment."""
    model = DeepLabSmall(num_classes=1, width=1).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
        model.head = torch.nn.Identity()
        model.backbone = model.backbone[:8]  # the three stride-2 stages, no context layers
        model.classifier = torch.nn.Identity()
        x = torch.zeros(1, 3, 64, 64)
        x[..., 8 * 3, 8 * 4] = 1.0
        out = model(x)[0, 0]
    assert out.shape == (8, 8)
    assert out[3, 4] > 0
    assert out[3, 4] >= out.max()


def test_vgg16_conversion_keys_and_decimation():
    vgg = random_vgg16_state_dict()
    conv = convert_vgg16_state_dict(vgg)
    model = DeepLabLargeFOV(num_classes=21)
    missing, unexpected = model.load_state_dict(conv, strict=False)
    assert unexpected == []
    assert sorted(missing) == ["classifier.bias", "classifier.weight"]
    assert torch.equal(conv["backbone.28.weight"], vgg["features.28.weight"])
    w6 = vgg["classifier.0.weight"].view(4096, 512, 7, 7)
    assert torch.equal(conv["head.0.weight"][5, 7, 2, 1], w6[20, 7, 6, 3])
    assert torch.equal(conv["head.3.weight"][3, 9, 0, 0], vgg["classifier.3.weight"][12, 36])
    assert torch.equal(conv["head.3.bias"], vgg["classifier.3.bias"][::4])


def test_load_vgg16_from_file(tmp_path):
    vgg = random_vgg16_state_dict(1)
    path = tmp_path / "vgg16.pth"
    torch.save(vgg, path)
    model = build_model("deeplab-largefov", 21, pretrained=str(path))
    assert torch.equal(model.backbone[0].weight, vgg["features.0.weight"])
    assert torch.equal(model.head[0].bias, vgg["classifier.0.bias"][::4])


def test_load_vgg16_rejects_wrong_layout(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="torchvision VGG16"):
        build_model("deeplab-largefov", 21, pretrained=str(path))


def test_torchvision_vgg16_layout_matches_if_installed():
    tv = pytest.importorskip("torchvision")
    sd = tv.models.vgg16().state_dict()
    assert sorted(sd) == sorted(random_vgg16_state_dict())


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", 21)
    with pytest.raises(ValueError, match="deeplab-largefov only"):
        build_model("small", 21, pretrained="x.pth")
