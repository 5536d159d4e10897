"""Organization feature table of a field index: the classical co-readout per field (no torch).

Each field's actin (and nuclei) plane is read at full resolution in its raw pixel values (as Fiji reads
the file: OrientationJ's ε is absolute) and measured with `fibroclass.measure.organization.field_organization`; the result keeps the index's row index so it lines up
with predictions. `BASELINE_FEATURES` are the columns the classical baseline uses (the absolute
orientation is left out: it says where the fibres point, not how aligned they are).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.images import check_pixels, read_raw
from fibroclass.measure import organization as org
from fibroclass.schema import BIT_DEPTH, FIELD_KEYS, path_col

ORG_COLUMNS = (*org.ACTIN_KEYS, *org.NUCLEI_KEYS)
BASELINE_FEATURES = tuple(c for c in ORG_COLUMNS if c != org.ORG_ORIENTATION_DEG)

Progress = Callable[[int, int], None]


def _bit_depth(row: pd.Series) -> int | None:
    value = row.get(BIT_DEPTH)
    return int(value) if value is not None and pd.notna(value) else None


def field_features(
    actin_path: str,
    nuclei_path: str | None = None,
    bit_depth: int | None = None,
    sigma: float = org.FIELD_SIGMA,
) -> dict[str, float]:
    """`field_organization` of one field read from its channel files (nuclei optional), on the raw values
    (`bit_depth` only scales them back when a plane is stored as floats in [0, 1])."""
    actin = _raw_plane(actin_path, bit_depth)
    nuclei = _raw_plane(nuclei_path, bit_depth) if nuclei_path else None
    return org.field_organization(actin, nuclei, sigma=sigma)


def _raw_plane(path: str, bit_depth: int | None) -> np.ndarray:
    arr = check_pixels(read_raw(path), str(path))
    if np.issubdtype(arr.dtype, np.floating) and bit_depth:
        return arr.astype(np.float32) * np.float32(2**bit_depth - 1)
    return arr.astype(np.float32)


def organization_features(
    index: pd.DataFrame,
    actin: str = "actin",
    nuclei: str | None = "nuclei",
    sigma: float = org.FIELD_SIGMA,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """One row per index row (same row index): the ``org_*`` columns of `ORG_COLUMNS`.

    `actin`/`nuclei` name the channels (`path_<channel>` columns); `nuclei=None` skips the nuclei
    measures (their columns are then NaN). An unreadable field raises a FibroclassError naming it.
    """
    cols = [path_col(actin)] + ([path_col(nuclei)] if nuclei else [])
    missing = [c for c in cols if c not in index.columns]
    if missing:
        raise FibroclassError(f"field index has no column {missing[0]} for the organization features")
    rows = []
    for done, (_, row) in enumerate(index.iterrows(), 1):
        try:
            values = field_features(
                row[cols[0]], row[cols[1]] if nuclei else None, _bit_depth(row), sigma=sigma
            )
        except FibroclassError as exc:
            key = " ".join(str(row.get(k, "?")) for k in FIELD_KEYS)
            raise FibroclassError(f"organization features of field {key}: {exc}") from exc
        rows.append({c: values.get(c, np.nan) for c in ORG_COLUMNS})
        if progress is not None:
            progress(done, len(index))
    return pd.DataFrame(rows, index=index.index, columns=list(ORG_COLUMNS), dtype=float)
