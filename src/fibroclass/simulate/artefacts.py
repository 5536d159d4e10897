"""Imaging: smooth noise textures, vignetting, defocus, debris and camera noise (numpy/scipy only)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ARTEFACTS = ("none", "blur", "empty", "debris")
CAMERA_OFFSET = 100.0  # counts added by the camera everywhere
COUNTS_PER_ELECTRON = 1.5
READ_NOISE = 4.0  # counts (Gaussian)
SATURATION = 65535.0
POISSON_EXACT = 30.0  # electrons; above this shot noise uses the normal approximation


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (coarse grid + zoom for large sigma)."""
    h, w = shape
    factor = max(1.0, sigma / 2.0)
    gh, gw = int(np.ceil(h / factor)) + 3, int(np.ceil(w / factor)) + 3
    grid = ndimage.gaussian_filter(rng.standard_normal((gh, gw)), sigma / factor, mode="wrap")
    if factor > 1.0:
        grid = ndimage.zoom(grid, factor, order=1, grid_mode=False)
    out = grid[:h, :w].astype(np.float32)
    out -= out.mean()
    sd = float(out.std())
    return out / sd if sd > 0 else out


def vignette(shape: tuple[int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Radial illumination fall-off: 1 at the (slightly off-centre) optical axis, 1 - strength at corners."""
    h, w = shape
    cy = (h - 1) / 2 + rng.normal(0, 0.04 * h)
    cx = (w - 1) / 2 + rng.normal(0, 0.04 * w)
    yy, xx = np.ogrid[:h, :w]
    r2 = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2
    return np.clip(1.0 - strength * r2 / 2.0, 0.05, 1.0).astype(np.float32)


def defocus(img: np.ndarray, scale: float) -> np.ndarray:
    """Out-of-focus blur (a strong Gaussian, about 3.5 reference px)."""
    return ndimage.gaussian_filter(img, 3.5 * scale, mode="reflect")


def debris_mask(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """1-4 irregular bright blobs (dust, fibres, precipitate) as a soft mask in [0, 1]."""
    h, w = shape
    mask = np.zeros(shape, np.float32)
    yy, xx = np.ogrid[:h, :w]
    for _ in range(int(rng.integers(1, 5))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        for _ in range(int(rng.integers(2, 6))):
            r = rng.uniform(3.0, 12.0) * max(scale, 0.4)
            oy, ox = rng.normal(0, 1.5 * r, 2)
            d2 = (yy - cy - oy) ** 2 + (xx - cx - ox) ** 2
            mask = np.maximum(mask, np.exp(-d2 / (2 * r * r)))
    return np.clip(mask * 2.5 - 0.4, 0.0, 1.0)


def camera(rng: np.random.Generator, signal: np.ndarray) -> np.ndarray:
    """Poisson shot noise + Gaussian read noise + offset, clipped and rounded to uint16.

    Shot noise is drawn exactly below POISSON_EXACT electrons and by its normal approximation
    (mean = variance = electrons) above, which is indistinguishable there and much faster.
    """
    lam = np.maximum(signal, 0.0).astype(np.float32) / np.float32(COUNTS_PER_ELECTRON)
    z = rng.standard_normal(lam.shape, dtype=np.float32)
    electrons = lam + np.sqrt(lam) * z
    low = lam < POISSON_EXACT
    if low.any():
        electrons[low] = rng.poisson(lam[low])
    read = rng.standard_normal(lam.shape, dtype=np.float32) * np.float32(READ_NOISE)
    counts = electrons * np.float32(COUNTS_PER_ELECTRON) + read + np.float32(CAMERA_OFFSET)
    return np.clip(np.rint(counts), 0, SATURATION).astype(np.uint16)
