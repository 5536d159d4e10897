"""Wells from fields: counts, mean disease score / nuclei count / embedding over the fields that passed QC."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.measure.field_qc import METRIC_COLUMNS
from fibroclass.measure.organization import ORG_PREFIX
from fibroclass.schema import (
    DISEASE_SCORE,
    N_FIELDS,
    N_FIELDS_USED,
    NUCLEI_COUNT,
    NUCLEI_PYKNOTIC,
    P_DISEASE,
    PYKNOTIC_PCT,
    QC_PASS,
    QC_REASON,
    SITE,
    SKIP_REASON,
    WELL_KEYS,
)

# Field-level columns that are not carried to the well table as-is.
FIELD_ONLY = (SITE, DISEASE_SCORE, P_DISEASE, NUCLEI_COUNT, QC_PASS, QC_REASON, SKIP_REASON)


def carried_columns(fields: pd.DataFrame) -> list[str]:
    """Columns constant within a well (keys, plate-map columns): everything but paths and field results."""
    return [c for c in fields.columns if c not in FIELD_ONLY and not c.startswith("path_")]


def used_mask(fields: pd.DataFrame) -> np.ndarray:
    """Fields that count for their well: passed QC and have a finite score."""
    return fields[QC_PASS].astype(bool).to_numpy() & np.isfinite(fields[DISEASE_SCORE].to_numpy(float))


def aggregate_wells(
    fields: pd.DataFrame, embeddings: np.ndarray | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (plate, well) in order of first appearance, plus the (n_wells, D) mean embeddings.

    `n_fields` counts all fields, `n_fields_used` those that passed QC; `disease_score` and
    `nuclei_count` are means over used fields (NaN when none, or when no used field has a count).
    """
    missing = [k for k in (*WELL_KEYS, DISEASE_SCORE, QC_PASS) if k not in fields.columns]
    if missing:
        raise FibroclassError(f"field table lacks column(s) {missing}")
    fields = fields.reset_index(drop=True)
    if embeddings is None:
        embeddings = np.zeros((len(fields), 0), dtype=np.float32)
    if len(embeddings) != len(fields):
        raise FibroclassError(f"{len(embeddings)} embeddings for {len(fields)} fields")

    group = fields.groupby(list(WELL_KEYS), sort=False, dropna=False).ngroup().to_numpy()
    n_wells = int(group.max()) + 1 if len(group) else 0
    used = used_mask(fields)

    n_fields = np.bincount(group, minlength=n_wells)
    n_used = np.bincount(group, weights=used, minlength=n_wells).astype(int)
    score = _group_mean(group, fields[DISEASE_SCORE].to_numpy(float), used, n_wells)
    nuclei = fields[NUCLEI_COUNT].to_numpy(float) if NUCLEI_COUNT in fields else np.full(len(fields), np.nan)
    nuclei_mean = _group_mean(group, nuclei, used & np.isfinite(nuclei), n_wells)

    emb = np.zeros((n_wells, embeddings.shape[1]), dtype=np.float64)
    np.add.at(emb, group[used], embeddings[used].astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        emb = (emb / n_used[:, None]).astype(np.float32)

    first = pd.Series(np.arange(len(fields))).groupby(group).first().to_numpy()
    wells = fields.loc[first, carried_columns(fields)].reset_index(drop=True)
    wells[N_FIELDS] = n_fields
    wells[N_FIELDS_USED] = n_used
    wells[DISEASE_SCORE] = score
    wells[NUCLEI_COUNT] = nuclei_mean
    return wells, emb


def _group_mean(group: np.ndarray, values: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    total = np.bincount(group[mask], weights=values[mask], minlength=n_groups)
    count = np.bincount(group[mask], minlength=n_groups)
    out = np.full(n_groups, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def well_features(fields: pd.DataFrame, wells: pd.DataFrame) -> pd.DataFrame:
    """Per-well means of the `org_*` features and the pyknotic fraction over the fields that passed QC.

    `aggregate_wells` carries other columns from a well's first field: field-level QC metrics
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
