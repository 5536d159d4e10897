"""The classifier as a plain `nn.Module` (no Lightning), so it can be loaded and scored anywhere."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from fibroclass.errors import FibroclassError
from fibroclass.models.backbones import build_backbone
from fibroclass.models.spec import ModelSpec


class FibroClassifier(nn.Module):
    """Backbone + linear head scoring disease (GoF) vs healthy tiles.

    `forward` takes [0, 1]-scaled float tiles (N, C, H, W) in `spec.channels` order and normalizes
    them with the training-split statistics stored as buffers (`spec.mean`/`spec.std`), so callers
    never normalize. `spec` is the declarative description (with `embedding_dim` filled) that is
    saved next to the weights.
    """

    def __init__(self, spec: ModelSpec, pretrained: bool = False) -> None:
        super().__init__()
        c = spec.in_chans
        if len(spec.mean) != c or len(spec.std) != c:
            raise FibroclassError(
                f"model spec has {c} channels {list(spec.channels)} but {len(spec.mean)} means and "
                f"{len(spec.std)} stds"
            )
        if any(s <= 0 for s in spec.std):
            raise FibroclassError(f"model spec std must be positive, got {list(spec.std)}")
        self.backbone, dim = build_backbone(spec.backbone, c, pretrained=pretrained)
        self.spec = replace(spec, embedding_dim=dim)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, c, 1, 1))
        self.head = nn.Linear(dim, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel standardization with the training-split statistics."""
        return (x - self.mean) / self.std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (N, D) of [0, 1]-scaled tiles."""
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Disease logits (N,) of [0, 1]-scaled tiles; p = sigmoid(logit / spec.temperature)."""
        return self.head(self.embed(x)).squeeze(-1)
