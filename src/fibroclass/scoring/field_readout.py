"""Field-level screening readout: per-field features, field QC flags per plate, per-well feature means.

Features (registered in `scoring.features.FIELD_FEATURES`, run in the reader workers on the decoded raw
field): `QCMetrics` (qc.field_qc_metrics), `NucleiCounts` (nuclei.count_nuclei: `nuclei_count`,
`nuclei_pyknotic`) and `Organization` (organization.field_organization: the `org_*` co-readout).

Per plate, before wells are averaged: `plate_field_qc` turns the metrics into `qc_pass` / `qc_reason`
(qc.flag_fields: blur against the plate's own fields, empty against the other fields of the well,
debris), so a flagged field never reaches a well score; `well_features` replaces the feature columns
that aggregation would carry from a well's first field by means over the fields that passed QC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fibroclass.data.preprocess import downsample
from fibroclass.organization import field_organization
from fibroclass.schema import DISEASE_SCORE, NUCLEI_COUNT, PLATE, QC_PASS, QC_REASON, WELL, WELL_KEYS
from fibroclass.scoring.nuclei import NucleiParams, count_nuclei
from fibroclass.scoring.qc import FG_FRAC, METRIC_COLUMNS, FieldQCParams, field_qc_metrics, flag_fields

if TYPE_CHECKING:
    from fibroclass.scoring.readout import ReadoutSettings

NUCLEI_PYKNOTIC = "nuclei_pyknotic"  # field: condensed (small, bright) nuclei among `nuclei_count`
PYKNOTIC_PCT = "pyknotic_pct"  # well: 100 · pyknotic / all nuclei over the used fields
ORG_PREFIX = "org_"
# FieldQCParams fields read by qc.field_qc_metrics (the others only drive qc.flag_fields).
_METRIC_PARAMS = (
    "sharpness_channel",
    "sharpness_max_side",
    "fg_smooth_sigma",
    "fg_background_px",
    "fg_min_snr",
    "fg_rel_level",
    "fg_rel_background",
    "saturation_level",
    "debris_factor",
    "debris_min_radius_px",
    "debris_min_area_px",
)


@dataclass(frozen=True)
class QCMetrics:
    """Field feature: `qc.field_qc_metrics` (sharpness, foreground, debris, saturation, NaN fractions)."""

    params: FieldQCParams = field(default_factory=FieldQCParams)

    def __call__(self, img: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
        return field_qc_metrics(img, channels, self.params)

    @property
    def feature_id(self) -> str:
        """Identity for chunk fingerprints: only the parameters the metrics depend on, so changing a flag
        threshold (applied at merge) re-merges without rescoring the fields."""
        used = {k: v for k, v in asdict(self.params).items() if k in _METRIC_PARAMS}
        return f"{__name__}.QCMetrics({used})"


@dataclass(frozen=True)
class NucleiCounts:
    """Field feature: nuclei and condensed (pyknotic) nuclei counted on the nuclei channel."""

    params: NucleiParams = field(default_factory=NucleiParams)
    channel: str = "nuclei"

    def __call__(self, img: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
        if self.channel not in channels:
            return {}
        counts = count_nuclei(img[list(channels).index(self.channel)], self.params)
        return {NUCLEI_COUNT: float(counts.n), NUCLEI_PYKNOTIC: float(counts.n_pyknotic)}


@dataclass(frozen=True)
class Organization:
    """Field feature: actin organization co-readout (`org_*`: coherency, orientation, order, nuclei shape)."""

    actin: str = "actin"
    nuclei: str = "nuclei"
    max_side: int = 512  # larger fields are block-mean downsampled first (cost grows with the pixel count)

    def __call__(self, img: np.ndarray, channels: Sequence[str]) -> dict[str, float]:
        names = list(channels)
        if self.actin not in names:
            return {}
        factor = int(np.ceil(max(img.shape[1:]) / self.max_side)) if self.max_side > 0 else 1
        img = downsample(img, factor) if factor > 1 else img
        nuclei = img[names.index(self.nuclei)] if self.nuclei in names else None
        return field_organization(img[names.index(self.actin)], nuclei)


def default_field_features() -> list:
    """The readout's field features with default parameters (registered in `features.FIELD_FEATURES`)."""
    return [QCMetrics(), NucleiCounts(), Organization()]


def configure_features(features: Sequence, settings: ReadoutSettings) -> list:
    """`features` with the readout's own features given the config's field-QC and nuclei parameters."""
    out = []
    for fn in features:
        if isinstance(fn, QCMetrics):
            fn = replace(fn, params=settings.readout.field_qc)
        elif isinstance(fn, NucleiCounts):
            fn = replace(fn, params=settings.readout.nuclei)
        elif isinstance(fn, Organization):
            fn = replace(fn, max_side=settings.organization.max_side)
        out.append(fn)
    return out


def _join(a: pd.Series, b: pd.Series) -> pd.Series:
    a, b = a.fillna("").astype(str), b.fillna("").astype(str)
    both = (a != "") & (b != "")
    return (a + np.where(both, ";", "") + b).astype(str)


def plate_field_qc(fields: pd.DataFrame, settings: ReadoutSettings) -> pd.DataFrame:
    """Field QC flags of one plate's fields, combined with the scoring flags (unreadable, nonfinite).

    Only fields that have QC metrics are judged (an unreadable field keeps its own reason). No metric
    columns (QC feature not run): the table is returned unchanged.
    """
    if not set(METRIC_COLUMNS) <= set(fields.columns):
        return fields
    judged = fields[FG_FRAC].notna()
    if not judged.any():
        return fields
    fields = fields.copy()
    ok, reason = flag_fields(fields[judged], settings.readout.field_qc, plate_col=PLATE, well_col=WELL)
    fields.loc[judged, QC_PASS] = fields.loc[judged, QC_PASS].astype(bool) & ok
    fields.loc[judged, QC_REASON] = _join(fields.loc[judged, QC_REASON], reason)
    fields[QC_PASS] = fields[QC_PASS].astype(bool)
    return fields


def well_features(fields: pd.DataFrame, wells: pd.DataFrame) -> pd.DataFrame:
    """Per-well means of the `org_*` features and the pyknotic fraction over the fields that passed QC.

    `aggregate.aggregate_wells` carries other columns from a well's first field: field-level QC metrics
    and pyknotic counts are dropped from the well table, `org_*` columns replaced by their means.
    """
    wells = wells.drop(columns=[c for c in (*METRIC_COLUMNS, NUCLEI_PYKNOTIC) if c in wells])
    keys = list(WELL_KEYS)
    used = fields[QC_PASS].astype(bool) & np.isfinite(pd.to_numeric(fields[DISEASE_SCORE]))
    groups = fields[used].groupby(keys, sort=False)
    org = [c for c in fields.columns if c.startswith(ORG_PREFIX) and pd.api.types.is_numeric_dtype(fields[c])]
    means = groups[org].mean()
    if NUCLEI_PYKNOTIC in fields and NUCLEI_COUNT in fields:
        sums = groups[[NUCLEI_PYKNOTIC, NUCLEI_COUNT]].sum(min_count=1)
        means[PYKNOTIC_PCT] = 100.0 * sums[NUCLEI_PYKNOTIC] / sums[NUCLEI_COUNT].where(sums[NUCLEI_COUNT] > 0)
    if means.columns.empty:
        return wells
    wells = wells.drop(columns=[c for c in means.columns if c in wells])
    return wells.merge(means.reset_index(), on=keys, how="left", validate="one_to_one")


__all__ = [
    "NUCLEI_PYKNOTIC",
    "PYKNOTIC_PCT",
    "NucleiCounts",
    "Organization",
    "QCMetrics",
    "configure_features",
    "default_field_features",
    "plate_field_qc",
    "well_features",
]
