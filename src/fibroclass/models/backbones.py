"""Backbone factory: torchvision CNNs (first conv adapted to N channels) and a tiny CNN for CPU runs.

Every backbone maps (N, C, H, W) to pooled (N, D) features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision import models as tvm

from fibroclass.errors import FibroclassError


class TinyCNN(nn.Sequential):
    """Four conv blocks and global average pooling (~60k parameters): tests and the CPU demo."""

    def __init__(self, in_chans: int, width: int = 16, group_norm: bool = False) -> None:
        def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.GroupNorm(4, cout) if group_norm else nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        w = width
        super().__init__(
            *block(in_chans, w, True),
            *block(w, 2 * w, True),
            *block(2 * w, 4 * w, True),
            *block(4 * w, 4 * w, False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 4 * w


def adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A copy of `conv` taking `in_chans` channels.

    Each new channel's filter is the average of the RGB filters, scaled by 3/in_chans, so a gray image
    repeated on all channels gives the same activations as the pretrained RGB network.
    """
    if conv.in_channels == in_chans:
        return conv
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        avg = conv.weight.mean(dim=1, keepdim=True) * (conv.in_channels / in_chans)
        new.weight.copy_(avg.repeat(1, in_chans, 1, 1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _resnet(factory: Callable, weights: object) -> Callable[[bool, int], tuple[nn.Module, int]]:
    def build(pretrained: bool, in_chans: int) -> tuple[nn.Module, int]:
        net = factory(weights=weights if pretrained else None)
        net.conv1 = adapt_first_conv(net.conv1, in_chans)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim

    return build


def _efficientnet_b0(pretrained: bool, in_chans: int) -> tuple[nn.Module, int]:
    net = tvm.efficientnet_b0(weights=tvm.EfficientNet_B0_Weights.DEFAULT if pretrained else None)
    net.features[0][0] = adapt_first_conv(net.features[0][0], in_chans)
    dim = net.classifier[-1].in_features
    net.classifier = nn.Identity()
    return net, dim


def _convnext_tiny(pretrained: bool, in_chans: int) -> tuple[nn.Module, int]:
    net = tvm.convnext_tiny(weights=tvm.ConvNeXt_Tiny_Weights.DEFAULT if pretrained else None)
    net.features[0][0] = adapt_first_conv(net.features[0][0], in_chans)
    dim = net.classifier[-1].in_features
    net.classifier[-1] = nn.Identity()  # keeps LayerNorm2d + Flatten
    return net, dim


def _tiny(pretrained: bool, in_chans: int) -> tuple[nn.Module, int]:
    if pretrained:
        raise FibroclassError("backbone 'tiny' has no pretrained weights (set model.pretrained: false)")
    net = TinyCNN(in_chans)
    return net, net.out_dim


def _tiny_gn(pretrained: bool, in_chans: int) -> tuple[nn.Module, int]:
    """TinyCNN with GroupNorm: batch-independent, so CPU DDP (no SyncBatchNorm there) equals one process."""
    if pretrained:
        raise FibroclassError("backbone 'tiny_gn' has no pretrained weights (set model.pretrained: false)")
    net = TinyCNN(in_chans, group_norm=True)
    return net, net.out_dim


BACKBONES: dict[str, Callable[[bool, int], tuple[nn.Module, int]]] = {
    "tiny": _tiny,
    "tiny_gn": _tiny_gn,
    "resnet18": _resnet(tvm.resnet18, tvm.ResNet18_Weights.DEFAULT),
    "resnet34": _resnet(tvm.resnet34, tvm.ResNet34_Weights.DEFAULT),
    "resnet50": _resnet(tvm.resnet50, tvm.ResNet50_Weights.DEFAULT),
    "efficientnet_b0": _efficientnet_b0,
    "convnext_tiny": _convnext_tiny,
}


def build_backbone(name: str, in_chans: int, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Backbone `name` taking `in_chans` channels, and its pooled feature dimension.

    With `pretrained=True` the ImageNet weights come from the torch hub cache (downloaded if the
    network allows); when they cannot be obtained this raises a FibroclassError.
    """
    if name not in BACKBONES:
        raise FibroclassError(f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    if in_chans < 1:
        raise FibroclassError(f"backbone '{name}' needs at least one input channel, got {in_chans}")
    try:
        return BACKBONES[name](pretrained, in_chans)
    except FibroclassError:
        raise
    except Exception as exc:  # download/cache failures surface as URLError, OSError, RuntimeError...
        if not pretrained:
            raise
        raise FibroclassError(
            f"cannot load pretrained ImageNet weights for backbone '{name}' ({type(exc).__name__}: {exc}); "
            "put them in the torch hub cache (torch.hub.get_dir()/checkpoints) or set model.pretrained: false"
        ) from exc
