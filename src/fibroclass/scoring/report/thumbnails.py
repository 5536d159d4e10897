"""Field thumbnails for the interactive plate heatmaps: one small JPEG (data URI) per well.

Per well the QC-passing field whose disease score is closest to the well's median (the field that looks
like the well's number), block-mean downsampled on reading, composited like the montage (actin green,
nuclei magenta) with one contrast stretch per plate so wells of a plate compare by brightness.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fibroclass.io.images import read_field
from fibroclass.measure.resample import downsample
from fibroclass.schema import CHANNELS, DISEASE_SCORE, PLATE, QC_PASS, WELL, path_col
from fibroclass.scoring.report.plots import composite, stretch_limits

THUMB_PX = 112


def well_key(plate: object, well: object) -> str:
    return f"{plate}|{well}"


def _chosen_fields(fields: pd.DataFrame, max_wells: int) -> pd.DataFrame:
    ok = fields[fields[QC_PASS].astype(bool)] if QC_PASS in fields else fields
    if ok.empty:
        return ok
    if DISEASE_SCORE in ok and ok[DISEASE_SCORE].notna().any():
        med = ok.groupby([PLATE, WELL])[DISEASE_SCORE].transform("median")
        ok = ok.assign(_d=(ok[DISEASE_SCORE] - med).abs()).sort_values("_d", kind="stable")
    return ok.drop_duplicates([PLATE, WELL]).head(max_wells)


def _jpeg(rgb: np.ndarray, size: int) -> str:
    from PIL import Image

    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def well_thumbnails(
    fields: pd.DataFrame, channels: Sequence[str] = CHANNELS, max_wells: int = 1536, size: int = THUMB_PX
) -> dict[str, str]:
    """`plate|well` -> JPEG data URI for up to `max_wells` wells; fields that cannot be read are skipped
    (the heatmap then shows the numbers without a picture)."""
    cols = [path_col(c) for c in channels]
    if max_wells <= 0 or fields.empty or any(c not in fields for c in cols):
        return {}
    small: dict[str, dict[str, np.ndarray]] = {}
    for rec in _chosen_fields(fields, max_wells)[[PLATE, WELL, *cols]].to_dict("records"):
        try:
            img = read_field([rec[c] for c in cols])
        except Exception:  # noqa: BLE001 - a thumbnail is optional: unreadable files stay in fields.parquet
            continue
        factor = max(1, min(img.shape[1:]) // (2 * size))
        small.setdefault(str(rec[PLATE]), {})[well_key(rec[PLATE], rec[WELL])] = downsample(
            np.asarray(img, np.float32), factor
        )
    out: dict[str, str] = {}
    for images in small.values():
        limits = stretch_limits(images)
        for key, img in images.items():
            out[key] = _jpeg(composite(img, limits), size)
    return out


__all__ = ["THUMB_PX", "well_key", "well_thumbnails"]
