"""Resampling of (C, H, W) fields (numpy only), shared by QC, training and scoring."""

from __future__ import annotations

import numpy as np


def downsample(img: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean downsample a (C, H, W) array by an integer factor (edges cropped to a multiple)."""
    if factor <= 1:
        return img
    c, h, w = img.shape
    h2, w2 = h // factor, w // factor
    img = img[:, : h2 * factor, : w2 * factor]
    return img.reshape(c, h2, factor, w2, factor).mean(axis=(2, 4), dtype=np.float32)
