"""Grad-CAM on whole fields: shape, range, any backbone, and evidence where the phenotype is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
import torch
import torch.nn.functional as F

from fibroclass.data.preprocess import tile_field
from fibroclass.errors import FibroclassError
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.gradcam import (
    explain_field,
    explanation_figure,
    find_target_layer,
    gradcam_field,
    overlay,
    stitch,
    windows,
)
from fibroclass.models.spec import ModelSpec

REPO = Path(__file__).resolve().parents[2]


def _field(rng: np.random.Generator, aligned: bool, size: int) -> np.ndarray:
    actin, nuclei = tinyplate.line_field(rng, size, aligned)
    return np.stack([actin, nuclei]).astype(np.float32) / 65535


@pytest.fixture(scope="module")
def trained() -> FibroClassifier:
    """A tiny classifier trained (plain torch, ~3 s) on aligned (healthy) vs random (GoF) line fields."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.tensor(np.stack([_field(rng, aligned=i % 2 == 0, size=32) for i in range(160)]))
    y = torch.tensor([i % 2 for i in range(160)], dtype=torch.float32)
    mean, std = x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()
    model = FibroClassifier(ModelSpec(crop_size=32, mean=mean, std=std))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(6):
        for batch in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(x[batch]), y[batch]).backward()
            opt.step()
    for m in model.modules():  # exact BatchNorm statistics of the training set
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def test_heatmap_has_the_field_shape_and_is_a_normalized_map(trained):
    img = _field(np.random.default_rng(1), aligned=False, size=75)[:, :, :61]  # odd, non-square, > 1 tile
    heat, rgb = explain_field(trained, img)
    assert heat.shape == img.shape[1:] and rgb.shape == (*img.shape[1:], 3) and rgb.dtype == np.uint8
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert heat.std() > 0.05  # not constant
    exp = gradcam_field(trained, img)
    assert exp.target == ("disease" if exp.logit > 0 else "healthy") and exp.layer == "14"  # last ReLU
    assert exp.p_disease == pytest.approx(1 / (1 + np.exp(-exp.logit)))
    cold = heat == 0  # no heat: the overlay is the gray actin image
    assert (rgb[cold][:, 0] == rgb[cold][:, 1]).all() and (rgb[cold][:, 1] == rgb[cold][:, 2]).all()
    fig = explanation_figure(img, exp, "P1 B02 s1")
    assert len(fig.axes) == 4  # three panels + colorbar


@pytest.mark.parametrize(
    ("backbone", "crop", "layer"),
    [("resnet18", 64, "layer4"), ("resnet18", 32, "layer3"), ("efficientnet_b0", 64, "features")],
)
def test_any_backbone_with_downsampling(backbone: str, crop: int, layer: str) -> None:
    torch.manual_seed(0)
    model = FibroClassifier(ModelSpec(backbone=backbone, crop_size=crop, downsample=2)).eval()
    img = np.random.default_rng(0).random((2, 101, 90), dtype=np.float32)
    assert find_target_layer(model, 2, crop)[0] == layer
    exp = gradcam_field(model, img, "disease")
    assert exp.heatmap.shape == (101, 90) and np.isfinite(exp.cam).all()
    assert exp.heatmap.std() > 0 and exp.layer == layer
    assert model.training is False and all(p.grad is None for p in model.parameters())


def test_evidence_for_healthy_sits_on_the_aligned_half(trained):
    """Fields half aligned fibres, half random: the healthy evidence is on the aligned half."""
    rng = np.random.default_rng(100)
    gaps = []
    for _ in range(4):
        aligned, random = _field(rng, True, 64), _field(rng, False, 64)
        left = aligned.copy()
        left[:, :, 32:] = random[:, :, 32:]  # aligned on the left
        right = random.copy()
        right[:, :, 32:] = aligned[:, :, 32:]  # aligned on the right
        h_left = gradcam_field(trained, left, "healthy").heatmap
        h_right = gradcam_field(trained, right, "healthy").heatmap
        gaps += [
            h_left[:, :32].mean() - h_left[:, 32:].mean(),
            h_right[:, 32:].mean() - h_right[:, :32].mean(),
        ]
    assert np.mean(gaps) > 0.1 and np.mean(np.array(gaps) > 0) >= 0.75


def test_stitching_and_errors():
    img = np.arange(2 * 6 * 7, dtype=np.float32).reshape(2, 6, 7)
    tiles, positions = windows(img, 4, 4)  # stride = size: exactly the scoring tiles
    assert np.array_equal(tiles, tile_field(img, 4)) and positions == [(0, 0), (0, 3), (2, 0), (2, 3)]
    assert windows(img, 4, 2)[1] == [(y, x) for y in (0, 2) for x in (0, 2, 3)]
    maps = np.stack([np.full((4, 4), v, np.float32) for v in (1, 2, 3, 4)])
    positions = [(0, 0), (0, 2), (2, 0), (2, 2)]
    out = stitch(maps, positions, 6, 6, taper=False)  # overlaps averaged
    assert out[0, 0] == 1 and out[5, 5] == 4 and out[0, 3] == pytest.approx(1.5)
    blended = stitch(maps, positions, 6, 6)  # tapered: each window weighs most at its own centre
    assert blended[0, 0] == pytest.approx(1) and 1 < blended[0, 3] < 2 and blended[2, 2] < blended[3, 3]
    assert stitch(np.full((4, 4, 4), 0.7), positions, 6, 6) == pytest.approx(np.full((6, 6), 0.7))
    model = FibroClassifier(ModelSpec(crop_size=16))
    with pytest.raises(FibroclassError, match="takes \\(C, H, W\\) with C = 2"):
        gradcam_field(model, np.zeros((3, 20, 20), np.float32))
    with pytest.raises(FibroclassError, match="target must be"):
        gradcam_field(model, np.zeros((2, 20, 20), np.float32), "GoF")  # type: ignore[arg-type]
    assert overlay(np.zeros((2, 5, 5)), np.ones((5, 5))).shape == (5, 5, 3)
