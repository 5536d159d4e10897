"""Bit depth: integer pixels scaled to [0, 1] by the depth the camera wrote (8, 12 or 16 bit; no torch)."""

from __future__ import annotations

import numpy as np

BIT_DEPTHS = (8, 12, 16)
MAX_12BIT = 4095


def full_scale(dtype: np.dtype, bit_depth: int | None = None) -> float:
    """The value that maps to 1.0: 2**bit_depth - 1, else the integer dtype's maximum (1.0 for floats).

    The bit depth never exceeds the dtype's: an 8-bit file on a 16-bit plate (a mixed export) is scaled by 255.
    """
    if bit_depth and np.issubdtype(dtype, np.integer):
        return float(2 ** min(int(bit_depth), np.dtype(dtype).itemsize * 8) - 1)
    if bit_depth:
        return float(2 ** int(bit_depth) - 1)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def scale_to_unit(arr: np.ndarray, bit_depth: int | None = None) -> np.ndarray:
    """Integer data divided by its full scale (`bit_depth` when given, else the dtype range) as float32.

    Floats pass through unchanged (already intensities).
    """
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / np.float32(full_scale(arr.dtype, bit_depth))
    return arr.astype(np.float32, copy=False)


def bit_depth_from_max(max_value: float, dtype: np.dtype) -> int | None:
    """8 for uint8, 12 for uint16 data that never exceeds 4095, 16 for other uint16; None for floats."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return None
    bits = dtype.itemsize * 8
    if bits == 16 and max_value <= MAX_12BIT:
        return 12
    return bits
