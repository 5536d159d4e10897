"""Field sizes from the file headers, before anything is decoded (no torch).

`check_field_sizes` reads the header of every channel file of a discovered-fields table (`io.images.plane_info`:
plane shape, dtype, pages, tiles, planes projected) and records the largest plane of each field
(`megapixels`). A field is `oversize` when one of its planes exceeds the cap (`discovery.max_megapixels`,
default `io.images.DEFAULT_MAX_MEGAPIXELS`), when a channel claims more planes or tiles than may be decoded, or
when its planes are wildly larger (`PLATE_FACTOR` × the area) than its plate's typical field. Such a field is
never decoded: scoring keeps it as a flagged row (`skip_reason` `oversize: ...`), indexing for training
leaves it out; both say so in the discovery problems.

Readers then decode at most what the index approved (`approved_pixels`), so a file that grew after indexing
is still refused.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.images import DEFAULT_MAX_MEGAPIXELS, OversizeError, PlaneInfo, check_size, plane_info
from fibroclass.schema import PLATE, SITE, SKIP_REASON, WELL

MEGAPIXELS = "megapixels"  # field index column: largest plane of the field's channel files (header), Mpx
PLATE_FACTOR = 16.0  # a field whose plane area exceeds this × its plate's median is oversize
MIN_FIELDS_FOR_PLATE = 3  # fewer fields with a readable header: only the absolute cap applies
THREADS = 8  # header reads in parallel (network file systems: latency, not CPU)


def _headers(locators: Sequence[str]) -> list[list[PlaneInfo] | str | None]:
    """Per locator: its PlaneInfos, an `oversize: ...` reason, or None (unreadable header: the decoder
    flags it when the field is read)."""

    def one(loc: str) -> list[PlaneInfo] | str | None:
        if not isinstance(loc, str) or not loc:
            return None
        try:
            return plane_info(loc)
        except OversizeError as exc:
            return str(exc)
        except FibroclassError:
            return None

    if len(locators) < 64:
        return [one(loc) for loc in locators]
    with ThreadPoolExecutor(max_workers=min(THREADS, os.cpu_count() or 1, len(locators))) as pool:
        return list(pool.map(one, locators, chunksize=16))


def _field_claim(
    infos: list[list[PlaneInfo] | str | None], locators: Sequence[str], cap_pixels: float
) -> tuple[float, str]:
    """(largest plane in pixels, NaN when no header was readable; oversize reason or "") of one field."""
    largest, reason = math.nan, ""
    for loc, found in zip(locators, infos, strict=True):
        if isinstance(found, str):
            reason = reason or found
            continue
        if not found:
            continue
        sizes = [i.pixels for i in found]
        largest = max(sizes) if math.isnan(largest) else max(largest, *sizes)
        if not reason:
            total = PlaneInfo(loc, found[0].shape, found[0].dtype, sum(i.planes for i in found))
            for info in (*found, total):
                try:
                    check_size(info, loc if info is total else info.source, cap_pixels)
                except OversizeError as exc:
                    reason = str(exc)
                    break
    return largest, reason


def _typical(pixels: pd.Series, shapes: list[tuple[int, ...] | None]) -> tuple[float, str]:
    """A plate's median plane area and its most common plane shape (for the message)."""
    common = Counter(s for s in shapes if s).most_common(1)
    shape = common[0][0] if common else ()
    text = " × ".join(map(str, (shape[1], shape[0]))) + " px" if len(shape) >= 2 else "?"
    return float(np.nanmedian(pixels.to_numpy(dtype=float))), text


def check_field_sizes(
    fields: pd.DataFrame, max_megapixels: float | None = None, keep: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """Add `megapixels` to a discovered-fields table and flag oversize fields (see the module docstring).

    `keep` (scoring): oversize fields stay, with `oversize: ...` in `skip_reason` (unless a reason is there
    already); otherwise they are left out. Returns the table and one problem line per oversize field.
    """
    cap = float(DEFAULT_MAX_MEGAPIXELS if max_megapixels is None else max_megapixels)
    if not cap > 0:
        raise FibroclassError(f"discovery.max_megapixels must be > 0, got {max_megapixels!r}")
    channels = [c for c in fields.columns if c.startswith("path_")]
    frame = fields.reset_index(drop=True)
    locs = [str(v) if isinstance(v, str) else "" for c in channels for v in frame[c]]
    found = _headers(locs)
    n = len(frame)
    per_row = [[found[k * n + i] for k in range(len(channels))] for i in range(n)]
    row_locs = [[locs[k * n + i] for k in range(len(channels))] for i in range(n)]
    claims = [_field_claim(per_row[i], row_locs[i], cap * 1e6) for i in range(n)]
    pixels = pd.Series([c[0] for c in claims], index=frame.index, dtype="float64")
    reasons = [c[1] for c in claims]
    shapes = [next((f[0].shape for f in row if isinstance(f, list) and f), None) for row in per_row]
    for _, grp in frame.groupby(PLATE, sort=False):
        rows = grp.index.to_numpy()
        readable = pixels[rows].notna()
        if int(readable.sum()) < MIN_FIELDS_FOR_PLATE:
            continue
        median, typical = _typical(pixels[rows], [shapes[i] for i in rows])
        for i in rows:
            if not reasons[i] and pixels[i] > PLATE_FACTOR * median:
                big = next(f[0] for f in per_row[i] if isinstance(f, list) and f and f[0].pixels == pixels[i])
                reasons[i] = (
                    f"oversize: image {big.source} claims {big.describe()} ({pixels[i] / 1e6:.4g} Mpx), "
                    f"{pixels[i] / median:.0f}× the area of its plate's typical field ({typical}); not decoded"
                )
    frame[MEGAPIXELS] = pixels / 1e6
    bad = [i for i, r in enumerate(reasons) if r]
    outcome = "field kept as a flagged row" if keep else "field skipped"
    problems = [
        f"plate {frame[PLATE].iat[i]} well {frame[WELL].iat[i]} site {frame[SITE].iat[i]}: {reasons[i]}; {outcome}"
        for i in bad
    ]
    if not bad:
        return frame, problems
    if not keep:
        return frame.drop(index=bad).reset_index(drop=True), problems
    if SKIP_REASON not in frame.columns:
        frame[SKIP_REASON] = ""
    for i in bad:
        if not frame.at[i, SKIP_REASON]:
            frame.at[i, SKIP_REASON] = reasons[i]
    return frame, problems


def approved_pixels(megapixels: Any) -> float | None:
    """The decode cap for a field the index approved at `megapixels` (at least the default cap; None when
    the index has no header record, i.e. the default cap)."""
    try:
        value = float(megapixels)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return max(DEFAULT_MAX_MEGAPIXELS * 1e6, math.ceil(value * 1e6 * (1 + 1e-9)))


__all__ = ["MEGAPIXELS", "PLATE_FACTOR", "approved_pixels", "check_field_sizes"]
