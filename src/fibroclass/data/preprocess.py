"""Field tiling shared by training and scoring (numpy only), so both see identical pixels.

Downsampling lives in `fibroclass.measure.resample`."""

from __future__ import annotations

import numpy as np


def tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length) fully; the last one is edge-aligned."""
    if length <= tile:
        return [0]
    n = int(np.ceil(length / tile))
    starts = [i * tile for i in range(n - 1)] + [length - tile]
    return sorted(set(starts))


def tile_field(img: np.ndarray, tile: int) -> np.ndarray:
    """Cut a (C, H, W) field into (T, C, tile, tile) tiles covering every pixel; pads fields smaller than a tile."""
    c, h, w = img.shape
    if h < tile or w < tile:
        ph, pw = max(0, tile - h), max(0, tile - w)
        img = np.pad(img, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
        c, h, w = img.shape
    tiles = [img[:, y : y + tile, x : x + tile] for y in tile_starts(h, tile) for x in tile_starts(w, tile)]
    return np.stack(tiles).astype(np.float32, copy=False)
