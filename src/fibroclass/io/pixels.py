"""Pixel values and pixel size: bit-depth scaling, per-plate bit-depth detection, resampling (no torch).

Bit depth: cameras write 8-, 12- or 16-bit data; 12-bit data is usually stored as uint16 and must be
scaled by 4095, not 65535. The depth is decided once per plate (never per field, so one dark field is not
rescaled differently from its neighbours): a depth declared by the export's metadata (OME
`SignificantBits`) wins; otherwise the plate's uint16 data counts as 12-bit when no sampled plane exceeds
4095. `annotate_fields` writes the result in the field index (`bit_depth`) with the per-field
`pixel_size_um` (NaN when the export does not say).

Pixel size: `rescale_to_pixel_size` resamples a field to the model's training resolution (anti-aliased).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.bitdepth import BIT_DEPTHS, bit_depth_from_max
from fibroclass.io.images import check_pixels, read_raw
from fibroclass.schema import BIT_DEPTH, PIXEL_SIZE, PLATE, SKIP_REASON

DETECT_FIELDS = 16  # fields per plate whose planes are read to detect the bit depth
RESCALE_TOLERANCE = 0.01  # relative pixel-size difference below which fields are not resampled


def _sample_rows(n: int, k: int) -> list[int]:
    """k row numbers spread evenly over n rows (all when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def detect_bit_depth(locators: list[str]) -> int | None:
    """Bit depth of a plate from the maximum of the given planes (see `bit_depth_from_max`).

    Planes that cannot be read or whose pixel type the model cannot use are skipped (they are flagged per
    field when scored), so one bad file never changes the scaling of the whole plate.
    """

    peak, dtype = 0.0, None
    for loc in locators:
        try:
            arr = check_pixels(read_raw(loc), loc)
        except FibroclassError:
            continue
        if not np.issubdtype(arr.dtype, np.integer):
            continue
        peak = max(peak, float(arr.max()) if arr.size else 0.0)
        dtype = arr.dtype if dtype is None or arr.dtype.itemsize > dtype.itemsize else dtype
    return bit_depth_from_max(peak, dtype) if dtype is not None else None


def annotate_fields(
    fields: pd.DataFrame, meta: Mapping[str, Any], sample: int = DETECT_FIELDS
) -> tuple[pd.DataFrame, list[str]]:
    """Add `bit_depth` (per plate) and `pixel_size_um` (per field) to a discovered-fields table.

    `meta`: locator -> record with optional `bit_depth` / `pixel_size_um` attributes (the formats'
    `ImageFile`s). Returns the table and notes (unreadable planes during detection, mixed declarations).
    """
    channels = [c for c in fields.columns if c.startswith("path_")]
    notes: list[str] = []
    sizes = []
    for row in fields[channels].itertuples(index=False):
        found = [getattr(meta.get(p), "pixel_size_um", None) for p in row]
        found = [float(v) for v in found if v is not None and math.isfinite(v) and v > 0]
        sizes.append(float(np.median(found)) if found else math.nan)
    depths = pd.Series(0, index=fields.index, dtype="int64")
    for plate, grp in fields.groupby(PLATE, sort=True):
        declared = {getattr(meta.get(p), "bit_depth", None) for c in channels for p in grp[c]} - {None}
        if declared:
            depth = max(int(d) for d in declared)
            if len(declared) > 1:
                notes.append(f"plate {plate}: files declare bit depths {sorted(declared)}; using {depth}")
        else:
            usable = grp[grp[SKIP_REASON] == ""] if SKIP_REASON in grp else grp  # never decode oversize fields
            rows = _sample_rows(len(usable), sample)
            locs = [usable[c].iat[r] for r in rows for c in channels]
            try:
                depth = detect_bit_depth(locs) or 0
            except Exception as exc:  # noqa: BLE001 - an unreadable file must not stop indexing
                notes.append(f"plate {plate}: bit depth not detected ({exc}); scaling by data type")
                depth = 0
        depths[grp.index] = depth
    out = fields.copy()
    out[BIT_DEPTH] = depths.astype("int64")  # 0 = unknown: scale by the data type
    out[PIXEL_SIZE] = pd.Series(sizes, index=fields.index, dtype="float64")
    return out, notes


def field_bit_depth(value: Any) -> int | None:
    """The `bit_depth` of an index row as `read_field` takes it (None when missing/unknown)."""
    try:
        depth = int(value)
    except (TypeError, ValueError):
        return None
    return depth if depth in BIT_DEPTHS else None


def rescale_to_pixel_size(
    img: np.ndarray,
    pixel_size_um: float | None,
    target_um: float | None,
    tolerance: float = RESCALE_TOLERANCE,
) -> np.ndarray:
    """Resample a (C, H, W) field from `pixel_size_um` to `target_um` µm/pixel (anti-aliased bilinear).

    Unknown sizes (None/NaN) or a difference under `tolerance` return the field unchanged.
    """
    if not known_size(pixel_size_um) or not known_size(target_um):
        return img
    factor = float(pixel_size_um) / float(target_um)
    if abs(factor - 1.0) < tolerance:
        return img
    from skimage.transform import rescale

    out = rescale(
        img, factor, order=1, channel_axis=0, anti_aliasing=factor < 1, preserve_range=True, mode="reflect"
    )
    return out.astype(np.float32, copy=False)


def known_size(value: Any) -> bool:
    """Whether a pixel size is a usable positive number."""
    try:
        return value is not None and math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


__all__ = [
    "BIT_DEPTH",
    "PIXEL_SIZE",
    "annotate_fields",
    "detect_bit_depth",
    "field_bit_depth",
    "known_size",
    "rescale_to_pixel_size",
]
