"""Field QC flags judged against each plate's own fields (the metrics come from `measure.field_qc`).

`flag_fields` turns a table of `field_qc_metrics` columns into `qc_pass` / `qc_reason`; the reasons and
how each is judged are listed in `fibroclass.measure.field_qc`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.measure.field_qc import (
    DEBRIS_FRAC,
    FG_FRAC,
    METRIC_COLUMNS,
    NONFINITE_FRAC,
    NUCLEI_FG_FRAC,
    REASON_BLUR,
    REASON_DEBRIS,
    REASON_EMPTY,
    REASON_NONFINITE,
    SATURATED_FRAC,
    SHARPNESS,
    FieldQCParams,
    params_of,
)
from fibroclass.schema import NUCLEI_COUNT, PLATE, QC_PASS, QC_REASON, WELL
from fibroclass.scoring.config import ReadoutSettings
from fibroclass.scoring.fields.features import FEATURE_ERROR, REASON_FEATURE_ERROR, parse_feature_errors


def robust_z(x: pd.Series, min_spread: float = 0.0) -> pd.Series:
    """(x − median) / max(1.4826·MAD, min_spread), ignoring NaN."""
    med = x.median()
    mad = 1.4826 * (x - med).abs().median()
    return (x - med) / max(float(mad) if np.isfinite(mad) else 0.0, min_spread, 1e-12)


def _content(df: pd.DataFrame, p: FieldQCParams) -> tuple[pd.Series, float]:
    """Per-field amount of cells (nuclei count, else nuclei foreground) and its sparse-well floor."""
    if NUCLEI_COUNT in df:
        return df[NUCLEI_COUNT].astype(float).fillna(0.0), p.empty_well_min_nuclei
    return df[NUCLEI_FG_FRAC].astype(float).fillna(0.0), p.empty_well_min_nuclei_fg_frac


def _empty_fields(df: pd.DataFrame, p: FieldQCParams, plates: pd.Series, well_col: str | None) -> pd.Series:
    """Fields with far fewer nuclei than their sibling fields (or, alone in their well, none at all)."""
    content, well_min = _content(df, p)
    absolute = (content <= 0) & (df[FG_FRAC].astype(float).fillna(0.0) < p.empty_fg_frac)
    # A plate whose typical field shows no nuclei at all says nothing about single fields being empty.
    absolute &= content.groupby(plates).transform("median") > 0
    if not well_col or well_col not in df:
        return absolute
    wells = [plates, df[well_col].astype(str)]
    well_median = content.groupby(wells).transform("median")
    single = content.groupby(wells).transform("size") == 1
    relative = (content <= p.empty_rel_well * well_median) & (well_median >= well_min)
    return relative | (single & absolute)


def flag_fields(
    metrics_df: pd.DataFrame,
    config: FieldQCParams | dict | None = None,
    plate_col: str = "Metadata_Plate",
    well_col: str | None = WELL,
) -> tuple[pd.Series, pd.Series]:
    """(`qc_pass`, `qc_reason`) per row of a metrics table (`field_qc_metrics` columns + plate column).

    Blur is judged against the plate's own fields, emptiness against the other fields of the same well
    (`well_col`; `nuclei_count` when present, else nuclei foreground); see the module docstring.
    """
    p = params_of(config)
    missing = [c for c in (*METRIC_COLUMNS, plate_col) if c not in metrics_df]
    if missing:
        raise FibroclassError(f"field QC table lacks column(s) {missing}")
    df = metrics_df
    reasons = pd.DataFrame(False, index=df.index, columns=[])
    reasons[REASON_NONFINITE] = df[NONFINITE_FRAC] > p.nonfinite_max_frac

    plates = df[plate_col].astype(str)
    debris = (df[DEBRIS_FRAC] > p.debris_max_frac) | (df[SATURATED_FRAC] > p.saturated_max_frac)
    # Debris throws nuclei segmentation off, so a debris field is not also called empty.
    empty = _empty_fields(df, p, plates, well_col) & ~reasons[REASON_NONFINITE] & ~debris
    reasons[REASON_EMPTY] = empty

    log_sharp = np.log(df[SHARPNESS].astype(float).clip(lower=1e-6))
    # Focus is judged where there is something to focus on: not on fields without cells.
    has_cells = _content(df, p)[0] > 0
    judged = has_cells & ~empty & ~reasons[REASON_NONFINITE] & np.isfinite(log_sharp)
    blur = np.zeros(len(df), dtype=bool)
    plate_arr, judged_arr, log_arr = plates.to_numpy(), judged.to_numpy(dtype=bool), log_sharp.to_numpy()
    for name in pd.unique(plate_arr):
        sel = (plate_arr == name) & judged_arr
        if sel.sum() >= p.min_fields_for_plate_stats:
            z = robust_z(pd.Series(log_arr[sel]), p.blur_min_log_spread).to_numpy()
            blur[sel] = z < -p.blur_robust_z
    blur |= judged_arr & (df[SHARPNESS].astype(float).to_numpy() < p.blur_abs_floor)
    reasons[REASON_BLUR] = blur
    reasons[REASON_DEBRIS] = debris

    joined = np.full(len(df), "", dtype=object)
    for name in reasons.columns:
        hit = reasons[name].to_numpy(dtype=bool)
        joined[hit] = [f"{j};{name}" if j else name for j in joined[hit]]
    qc_reason = pd.Series(joined, index=df.index, dtype=str)
    return (qc_reason == "").rename("qc_pass"), qc_reason.rename("qc_reason")


def _join(a: pd.Series, b: pd.Series) -> pd.Series:
    a, b = a.fillna("").astype(str), b.fillna("").astype(str)
    both = (a != "") & (b != "")
    return (a + np.where(both, ";", "") + b).astype(str)


REASON_QC_MISSING = "qc_metrics_missing"  # a scored field without QC metrics is never trusted


def _feature_reasons(values: pd.Series) -> pd.Series:
    """`feature_error: QCMetrics raised ValueError` (`;`-joined per failed feature) per `feature_error` value."""
    return values.map(
        lambda v: ";".join(
            f"{REASON_FEATURE_ERROR}: {name} raised {kind}"
            for name, kind in dict.fromkeys(parse_feature_errors(v))
        )
    ).astype(str)


def _flag(fields: pd.DataFrame, hit: pd.Series, reason: pd.Series | str) -> None:
    hit = hit.to_numpy(dtype=bool)
    if not hit.any():
        return
    reason = reason if isinstance(reason, pd.Series) else pd.Series(reason, index=fields.index)
    fields.loc[hit, QC_PASS] = False
    fields.loc[hit, QC_REASON] = _join(fields.loc[hit, QC_REASON], reason[hit])


def plate_field_qc(fields: pd.DataFrame, settings: ReadoutSettings) -> pd.DataFrame:
    """Field QC flags of one plate's fields, combined with the scoring flags (unreadable, nonfinite).

    A field where a feature raised is flagged `feature_error: <feature> raised <ExceptionType>` (the message
    is in `feature_error`). Fields with QC metrics are judged (blur, empty, debris, nonfinite); a field the
    model scored but that has no metrics while others do is flagged `qc_metrics_missing`, so a metrics
    failure never lets a field into the well means. No metric columns and no feature errors (the QC feature
    is not in the feature list): the flags are left as they are.
    """
    fields = fields.copy()
    fields[QC_PASS] = fields[QC_PASS].astype(bool)
    fields[QC_REASON] = fields[QC_REASON].fillna("").astype(str)
    if FEATURE_ERROR in fields.columns:
        reasons = _feature_reasons(fields[FEATURE_ERROR])
        _flag(fields, reasons != "", reasons)
    if not set(METRIC_COLUMNS) <= set(fields.columns):
        return fields
    judged = fields[FG_FRAC].notna()
    _flag(fields, ~judged & fields[QC_PASS], REASON_QC_MISSING)
    if not judged.any():
        return fields
    ok, reason = flag_fields(fields[judged], settings.field_qc, plate_col=PLATE, well_col=WELL)
    fields.loc[judged, QC_PASS] = fields.loc[judged, QC_PASS].astype(bool) & ok
    fields.loc[judged, QC_REASON] = _join(fields.loc[judged, QC_REASON], reason)
    fields[QC_PASS] = fields[QC_PASS].astype(bool)
    return fields
