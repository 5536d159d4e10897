"""Reading microscope images into float32 arrays scaled to [0, 1] (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from fibroclass.errors import FibroclassError


def scale_to_unit(arr: np.ndarray) -> np.ndarray:
    """Scale integer data by its dtype range (uint8 /255, uint16 /65535); floats are passed through."""
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    return arr.astype(np.float32, copy=False)


def read_plane(path: str | Path) -> np.ndarray:
    """Read one 2-D image plane as float32 in [0, 1]."""
    try:
        arr = tifffile.imread(str(path))
    except Exception as exc:  # tifffile raises many types for corrupt/truncated files
        raise FibroclassError(f"cannot read image {path}: {exc}") from exc
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise FibroclassError(f"image {path} has shape {arr.shape}, expected a 2-D plane")
    return scale_to_unit(arr)


def read_field(paths: Sequence[str | Path]) -> np.ndarray:
    """Read one field (one path per channel, in model channel order) as a (C, H, W) float32 array."""
    planes = [read_plane(p) for p in paths]
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise FibroclassError(
            f"channels of one field differ in shape {sorted(shapes)}: {list(map(str, paths))}"
        )
    return np.stack(planes)
