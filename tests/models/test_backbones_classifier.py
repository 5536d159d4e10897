"""Backbone factory (channel adaptation, pretrained weights) and the plain-nn.Module classifier."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torchvision import models as tvm

from fibroclass.errors import FibroclassError
from fibroclass.models.backbones import BACKBONES, adapt_first_conv, build_backbone
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.spec import ModelSpec

EXPECTED_DIMS = {
    "tiny": 64,
    "tiny_gn": 64,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "efficientnet_b0": 1280,
    "convnext_tiny": 768,
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_for_two_channels(name):
    spec = ModelSpec(backbone=name, crop_size=32, mean=[0.1, 0.2], std=[0.05, 0.1])
    model = FibroClassifier(spec)
    assert model.spec.embedding_dim == EXPECTED_DIMS[name]
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 2


@pytest.mark.parametrize("name", ["tiny", "resnet18"])
def test_forward_and_embed_shapes(name):
    torch.manual_seed(0)
    model = FibroClassifier(ModelSpec(backbone=name, crop_size=32)).eval()
    x = torch.rand(3, 2, 32, 32)
    with torch.no_grad():
        logits, emb = model(x), model.embed(x)
    assert logits.shape == (3,) and emb.shape == (3, EXPECTED_DIMS[name])
    torch.testing.assert_close(logits, model.head(emb).squeeze(-1))


def test_normalization_buffers_are_applied():
    torch.manual_seed(0)
    spec = ModelSpec(crop_size=16, mean=[0.2, 0.4], std=[0.1, 0.5])
    norm = FibroClassifier(spec).eval()
    plain = FibroClassifier(ModelSpec(crop_size=16)).eval()
    state = {k: v for k, v in norm.state_dict().items() if k not in ("mean", "std")}
    plain.load_state_dict(state, strict=False)
    assert norm.state_dict()["mean"].flatten().tolist() == pytest.approx([0.2, 0.4])
    x = torch.rand(4, 2, 16, 16)
    mean, std = torch.tensor([0.2, 0.4]).view(1, 2, 1, 1), torch.tensor([0.1, 0.5]).view(1, 2, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(norm(x), plain((x - mean) / std))
        assert not torch.allclose(norm(x), plain(x))


def test_bad_specs_and_names_are_user_errors():
    with pytest.raises(FibroclassError, match="2 channels.*1 means"):
        FibroClassifier(ModelSpec(mean=[0.0], std=[1.0, 1.0]))
    with pytest.raises(FibroclassError, match="unknown backbone 'vgg11'"):
        build_backbone("vgg11", 2)
    with pytest.raises(FibroclassError, match="no pretrained weights"):
        build_backbone("tiny", 2, pretrained=True)


def test_first_conv_adaptation_averages_rgb_filters():
    conv = torch.nn.Conv2d(3, 8, 3, bias=True)
    new = adapt_first_conv(conv, 2)
    avg = conv.weight.mean(dim=1)
    for c in range(2):
        torch.testing.assert_close(new.weight[:, c], avg * 1.5)
    torch.testing.assert_close(new.bias, conv.bias)
    gray = torch.rand(1, 1, 9, 9)  # a gray image gives the RGB network's response
    torch.testing.assert_close(new(gray.repeat(1, 2, 1, 1)), conv(gray.repeat(1, 3, 1, 1)))


def test_pretrained_weights_from_the_hub_cache_are_adapted(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = tvm.resnet18()
    url = tvm.ResNet18_Weights.DEFAULT.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / url.rsplit("/", 1)[-1])
    net, dim = build_backbone("resnet18", 2, pretrained=True)
    assert dim == 512
    torch.testing.assert_close(net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    expected = reference.conv1.weight.mean(dim=1, keepdim=True).repeat(1, 2, 1, 1) * 1.5
    torch.testing.assert_close(net.conv1.weight, expected)


def test_pretrained_without_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(
        FibroclassError, match="pretrained ImageNet weights for backbone 'resnet34'.*pretrained: false"
    ):
        build_backbone("resnet34", 2, pretrained=True)
