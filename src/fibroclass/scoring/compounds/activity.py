"""Phenotypic activity: does a compound (at a dose) move cells anywhere, not only back to healthy?

Per compound × dose, the mean average precision (mAP; copairs, the cytomining library) of its replicate
wells retrieving each other against the plate's vehicle wells (the disease controls: GoF cells + DMSO) in
the CNN's well-embedding space, with copairs' permutation p-values and Benjamini–Hochberg FDR over every
compound × dose tested. A replicate's average precision ranks, by cosine similarity, the other replicates
of its group and the vehicle wells of its own plate. Embeddings are centred on each plate's vehicle mean
and scaled per dimension by the spread of the plate's wells, so a group that looks like vehicle scores the
mAP of chance; one that is consistently moved (towards healthy, or somewhere else: off-target, toxic)
scores high. This catches activity the disease axis alone misses.

`per_dose`: compound, concentration_uM, n_wells, map (mean average precision), p_value, q_value,
active (q < `threshold`). `per_compound` (columns `activity_*` of compounds.csv): the best dose's mAP and
the smallest q over the doses, the number of active doses, the lowest active dose and whether any dose is
active. (Pooling all doses of a compound as "replicates" would mix inactive low doses with active ones.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fibroclass.schema import COMPOUND, CONC, PLATE, ROLE_DISEASE

GROUP = "_activity_group"
REF = "_activity_reference"
ACTIVITY_COLUMNS = (
    "activity_map_max",
    "activity_q_min",
    "activity_n_active_doses",
    "activity_min_active_dose_uM",
    "activity_active",
)
DOSE_COLUMNS = (COMPOUND, CONC, "n_wells", "map", "p_value", "q_value", "active")


@dataclass
class Activity:
    per_dose: pd.DataFrame  # DOSE_COLUMNS
    per_compound: pd.DataFrame  # compound + ACTIVITY_COLUMNS
    note: str = ""


def _empty(note: str) -> Activity:
    return Activity(pd.DataFrame(columns=list(DOSE_COLUMNS)), pd.DataFrame(columns=[COMPOUND, *ACTIVITY_COLUMNS]), note)


def _profiles(emb: np.ndarray, plates: np.ndarray, vehicle: np.ndarray) -> np.ndarray:
    """Per plate: minus the vehicle mean, over the per-dimension SD of the plate's wells (0 SD -> 1)."""
    out = np.full(emb.shape, np.nan)
    for p in np.unique(plates):
        m = plates == p
        v = m & vehicle
        if not v.any():
            continue
        sd = np.nanstd(emb[m], axis=0)
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        out[m] = (emb[m] - np.nanmean(emb[v], axis=0)) / sd
    return out


def _map_table(meta: pd.DataFrame, feats: np.ndarray, by: list[str], null_size: int, seed: int, threshold: float):
    from copairs import map as cmap  # lazy: copairs (duckdb, statsmodels) only when activity is computed

    ap = cmap.average_precision(
        meta,
        feats,
        pos_sameby=[GROUP, REF],
        pos_diffby=[],
        neg_sameby=[PLATE],
        neg_diffby=[GROUP, REF],
        progress_bar=False,
    )
    ap = ap[ap[REF] < 0]  # treated wells only (vehicle wells are the negatives)
    res = cmap.mean_average_precision(ap, by, null_size=null_size, threshold=threshold, seed=seed, progress_bar=False)
    return res.rename(columns={"mean_average_precision": "map", "corrected_p_value": "q_value"})


def phenotypic_activity(
    wells: pd.DataFrame,
    well_emb: np.ndarray,
    roles: pd.Series,
    treated: np.ndarray,
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
) -> Activity:
    """mAP of replicate treated wells (`treated` mask) against vehicle wells (`roles` == disease), per
    compound × dose and per compound; an empty result with a `note` when it cannot be computed."""
    emb = np.asarray(well_emb, dtype=float)
    if emb.ndim != 2 or emb.shape[1] == 0 or len(emb) != len(wells):
        return _empty("no embeddings")
    wells = wells.reset_index(drop=True)
    plates = wells[PLATE].astype(str).to_numpy()
    vehicle = roles.reset_index(drop=True).astype(str).to_numpy() == ROLE_DISEASE
    ok = np.isfinite(emb).all(axis=1)
    treated = np.asarray(treated, dtype=bool) & ok
    use = (treated | vehicle) & ok
    feats = _profiles(emb, plates, vehicle)
    use &= np.isfinite(feats).all(axis=1)
    if not (use & vehicle).any() or not (use & treated).any():
        return _empty("no vehicle or treated wells with embeddings")
    meta = wells.loc[use, [PLATE, COMPOUND, CONC]].reset_index(drop=True)
    meta[CONC] = pd.to_numeric(meta[CONC], errors="coerce").astype(float)
    is_vehicle = vehicle[use]
    meta[REF] = np.where(is_vehicle, np.arange(len(meta)), -1)  # vehicle wells never pair with each other
    x = feats[use]
    by = [COMPOUND, CONC]
    meta[GROUP] = np.where(is_vehicle, "__vehicle__", meta[COMPOUND].astype(str) + "|" + meta[CONC].astype(str))
    if not (meta.loc[~is_vehicle].groupby(GROUP).size() >= 2).any():
        return _empty("no compound dose with two replicate wells")
    try:
        res = _map_table(meta, x, by, null_size, seed, threshold)
    except Exception as exc:  # noqa: BLE001 - copairs raises plain exceptions for unpairable layouts
        return _empty(f"copairs: {type(exc).__name__}: {exc}")
    n = meta.loc[~is_vehicle].groupby(by).size().rename("n_wells").reset_index()
    per_dose = res.merge(n, on=by, how="left").assign(active=lambda d: d["q_value"] < threshold)
    per_dose = per_dose[list(DOSE_COLUMNS)].sort_values(by).reset_index(drop=True)
    rows = []
    for name, d in per_dose.groupby(COMPOUND, sort=True):
        active = d[d["active"]]
        rows.append(
            {
                COMPOUND: name,
                "activity_map_max": float(d["map"].max()),
                "activity_q_min": float(d["q_value"].min()),
                "activity_n_active_doses": int(len(active)),
                "activity_min_active_dose_uM": float(active[CONC].min()) if len(active) else math.nan,
                "activity_active": bool(len(active)),
            }
        )
    return Activity(per_dose, pd.DataFrame(rows, columns=[COMPOUND, *ACTIVITY_COLUMNS]))


__all__ = ["ACTIVITY_COLUMNS", "DOSE_COLUMNS", "Activity", "phenotypic_activity"]
