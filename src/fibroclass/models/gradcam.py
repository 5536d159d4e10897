"""Grad-CAM for a `FibroClassifier` on whole fields, any backbone.

The field is prepared as scoring prepares it (block-mean `downsample`, then `tile_field` tiles of
`spec.crop_size`). For each tile, Grad-CAM (Selvaraju et al. 2017) weighs the feature maps of the
backbone's last spatial block by the spatially averaged gradient of the explained score and keeps
the positive part. Window maps (windows every half tile) are upsampled to the window, stitched
(overlaps averaged) and brought back to the raw field resolution, so the heatmap has the field's shape.

The explained score is the disease logit for fields the model calls GoF and minus the logit for
fields it calls healthy (``target="predicted"``): the map shows what supports the model's call.
The last spatial block is found by running one tile: the last direct child of the backbone (in call
order) whose output still has a spatial extent (ResNet `layer4`, EfficientNet/ConvNeXt `features`,
the tiny CNN's last ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from fibroclass.data.preprocess import tile_field
from fibroclass.errors import FibroclassError
from fibroclass.measure.resample import downsample

Target = Literal["predicted", "disease", "healthy"]


@dataclass
class FieldExplanation:
    """Grad-CAM of one field: `heatmap` in [0, 1] (field max = 1) and `cam` (unnormalized), both (H, W)."""

    heatmap: np.ndarray
    cam: np.ndarray
    logit: float  # mean tile logit (before temperature)
    p_disease: float  # sigmoid(logit / temperature)
    target: str  # "disease" or "healthy": the class whose evidence the map shows
    layer: str  # name of the backbone block the map comes from


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def find_target_layer(model: nn.Module, in_chans: int, size: int) -> tuple[str, nn.Module]:
    """(name, module) of the backbone's last direct child whose output keeps a spatial extent.

    At tile sizes where the last block is already 1 x 1 (e.g. ResNet at 32 px) the block before it is
    used, so the map still resolves structure within a tile; global pooling layers are never chosen.
    """
    backbone = _backbone(model)
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    hooks = [
        child.register_forward_hook(
            lambda m, i, o, name=name: (
                seen.append((name, m, tuple(o.shape))) if isinstance(o, torch.Tensor) else None
            )
        )
        for name, child in backbone.named_children()
    ]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, size, size, device=device))
    finally:
        for h in hooks:
            h.remove()
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    spatial = [s for s in seen if len(s[2]) == 4 and not isinstance(s[1], pools)]
    if not spatial:
        raise FibroclassError(
            f"backbone {type(backbone).__name__} has no block with a spatial (N, C, H, W) output"
        )
    wide = [s for s in spatial if s[2][2] * s[2][3] > 1]
    name, module, _ = (wide or spatial)[-1]
    return name, module


def tile_cams(
    model: nn.Module, tiles: torch.Tensor, sign: float, layer: nn.Module, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (T, S, S) upsampled to the tile size, and tile logits (T,), for `sign * logit`."""
    store: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        store["act"] = out
        out.register_hook(lambda g: store.__setitem__("grad", g))

    handle = layer.register_forward_hook(keep)
    device = next(model.parameters()).device
    cams, logits = [], []
    try:
        for start in range(0, len(tiles), batch_size):
            x = tiles[start : start + batch_size].to(device).requires_grad_(True)
            with torch.enable_grad():
                z = model(x).float()
                model.zero_grad(set_to_none=True)
                (sign * z.sum()).backward()
            act, grad = store["act"].detach().float(), store["grad"].detach().float()
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * act).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=tiles.shape[-2:], mode="bilinear", align_corners=False)
            cams.append(cam[:, 0].cpu().numpy())
            logits.append(z.detach().cpu().numpy())
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    return np.concatenate(cams), np.concatenate(logits)


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets every `stride` px covering [0, length), the last one edge-aligned (`tile_starts` at stride = size)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, max(1, stride)))
    return starts if starts[-1] == length - size else [*starts, length - size]


def windows(img: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(T, C, size, size) windows of a (C, H, W) field every `stride` px and their (y, x) offsets.

    Fields smaller than a window are padded as `tile_field` pads them; with ``stride == size`` the windows
    are exactly the scoring tiles.
    """
    c, h, w = img.shape
    if h < size or w < size:
        mode = "reflect" if min(h, w) > 1 else "edge"
        img = np.pad(img, ((0, 0), (0, max(0, size - h)), (0, max(0, size - w))), mode=mode)
        c, h, w = img.shape
    positions = [(y, x) for y in window_starts(h, size, stride) for x in window_starts(w, size, stride)]
    stack = np.stack([img[:, y : y + size, x : x + size] for y, x in positions]).astype(
        np.float32, copy=False
    )
    return stack, positions


def _taper(size: int, floor: float = 0.05) -> np.ndarray:
    """(size, size) tent weights, highest in the window centre and `floor` at its edge."""
    ramp = 1.0 - np.abs(np.linspace(-1.0, 1.0, size))
    t = floor + (1.0 - floor) * ramp
    return np.outer(t, t)


def stitch(
    tile_maps: np.ndarray, positions: list[tuple[int, int]], height: int, width: int, taper: bool = True
) -> np.ndarray:
    """Place (T, S, S) window maps at their (y, x) offsets in an (height, width) map, averaging overlaps.

    With `taper`, each window counts most at its centre (tent weights), so overlapping windows blend
    without seams where one window ends; without it, overlaps are plain means.
    """
    s = tile_maps.shape[-1]
    h, w = max(height, s), max(width, s)
    total = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    if len(positions) != len(tile_maps):
        raise ValueError(f"{len(tile_maps)} tile maps for {len(positions)} tile positions")
    weight = _taper(s) if taper else np.ones((s, s))
    for (y, x), m in zip(positions, tile_maps, strict=True):
        total[y : y + s, x : x + s] += m * weight
        count[y : y + s, x : x + s] += weight
    return (total / np.maximum(count, 1e-12))[:height, :width]


def _to_field(small: np.ndarray, factor: int, height: int, width: int) -> np.ndarray:
    """Upsample a map of the downsampled field back to (height, width) (edges cropped by `downsample` padded)."""
    if factor > 1:
        t = torch.from_numpy(np.ascontiguousarray(small, dtype=np.float32))[None, None]
        small = F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)[0, 0].numpy()
    h, w = small.shape
    return np.pad(small, ((0, max(0, height - h)), (0, max(0, width - w))), mode="edge")[:height, :width]


def gradcam_field(
    model: nn.Module,
    img: np.ndarray,
    target: Target = "predicted",
    batch_size: int = 64,
    stride: int | None = None,
) -> FieldExplanation:
    """Grad-CAM of a raw field `img` (C, H, W) float in [0, 1], channels in `model.spec.channels` order.

    The call (and `logit`) comes from the scoring tiles; the map from windows every `stride` px
    (default half a tile), blended where they overlap (`stitch`), so window edges do not show as seams.
    """
    spec = getattr(model, "spec", None)
    if spec is None:
        raise FibroclassError("Grad-CAM needs a classifier with a ModelSpec (`spec`), e.g. a FibroClassifier")
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] != spec.in_chans:
        raise FibroclassError(
            f"field has shape {arr.shape}; the model takes (C, H, W) with C = {spec.in_chans} {list(spec.channels)}"
        )
    if target not in ("predicted", "disease", "healthy"):
        raise FibroclassError(f"Grad-CAM target must be predicted, disease or healthy, got {target!r}")
    was_training = model.training
    model.eval()
    try:
        small = downsample(arr, spec.downsample)
        tiles = torch.from_numpy(tile_field(small, spec.crop_size))
        name, layer = find_target_layer(model, spec.in_chans, spec.crop_size)
        with torch.no_grad():
            logit = float(
                torch.cat([model(t.to(next(model.parameters()).device)) for t in tiles.split(batch_size)])
                .float()
                .mean()
            )
        cls = ("disease" if logit > 0 else "healthy") if target == "predicted" else target
        step = stride or max(1, spec.crop_size // 2)
        wins, positions = windows(small, spec.crop_size, step)
        cams, _ = tile_cams(
            model, torch.from_numpy(wins), 1.0 if cls == "disease" else -1.0, layer, batch_size
        )
    finally:
        model.train(was_training)
    small_map = stitch(cams, positions, *small.shape[1:])
    cam = _to_field(small_map, spec.downsample, *arr.shape[1:]).astype(np.float32)
    peak = float(cam.max())
    heatmap = cam / peak if peak > 0 else np.zeros_like(cam)
    p = float(1.0 / (1.0 + np.exp(-logit / float(spec.temperature))))
    return FieldExplanation(heatmap, cam, logit, p, cls, name)


# -- display ------------------------------------------------------------------------------------------
def _stretch(plane: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    lo, hi = np.percentile(plane, [low, high])
    return np.clip((plane - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(plane, dtype=np.float32)


def composite(img: np.ndarray, channels: tuple[str, ...] = ("actin", "nuclei")) -> np.ndarray:
    """RGB (H, W, 3) float in [0, 1]: actin green, nuclei blue (others gray), each contrast-stretched."""
    arr = np.asarray(img, dtype=np.float32)
    rgb = np.zeros((*arr.shape[1:], 3), np.float32)
    for plane, name in zip(arr, channels, strict=False):
        s = _stretch(plane)
        if name == "actin":
            rgb[..., 1] = np.maximum(rgb[..., 1], s)
        elif name == "nuclei":
            rgb[..., 2] = np.maximum(rgb[..., 2], s)
        else:
            rgb = np.maximum(rgb, s[..., None] * 0.6)
    return rgb


def overlay(img: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6, cmap: str = "inferno") -> np.ndarray:
    """uint8 RGB (H, W, 3): the first channel (actin) in gray under the heatmap, opacity `alpha * heat`."""
    gray = _stretch(np.asarray(img, dtype=np.float32)[0])[..., None].repeat(3, axis=2)
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    colors = colormaps[cmap](heat)[..., :3].astype(np.float32)
    a = (alpha * heat)[..., None]
    return np.round(255 * ((1 - a) * gray + a * colors)).astype(np.uint8)


def explain_field(
    model: nn.Module, img: np.ndarray, target: Target = "predicted"
) -> tuple[np.ndarray, np.ndarray]:
    """(heatmap (H, W) float32 in [0, 1], overlay (H, W, 3) uint8) of a raw field (C, H, W) in [0, 1]."""
    exp = gradcam_field(model, img, target)
    return exp.heatmap, overlay(img, exp.heatmap)


def explanation_figure(
    img: np.ndarray, exp: FieldExplanation, title: str = "", channels: tuple[str, ...] = ("actin", "nuclei")
) -> Figure:
    """Three panels: actin/nuclei composite, Grad-CAM heatmap, overlay on actin."""
    fig = Figure(figsize=(10.5, 3.9), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    axes[0].imshow(composite(img, channels))
    axes[0].set_title("actin (green) + nuclei (blue)", fontsize=9)
    im = axes[1].imshow(exp.heatmap, cmap="inferno", vmin=0, vmax=1)
    axes[1].set_title(f"Grad-CAM: evidence for '{exp.target}' (block {exp.layer})", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    axes[2].imshow(overlay(img, exp.heatmap))
    axes[2].set_title("overlay on actin", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{title}  p(disease) = {exp.p_disease:.3f}  (logit {exp.logit:+.2f})".strip(), fontsize=10)
    return fig
