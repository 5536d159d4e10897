"""Per-dose and per-compound summaries of treated wells (4PL fits and calls are filled in later steps)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fibroclass.schema import COMPOUND, CONC, RESCUE_PCT, VIABILITY_PCT
from fibroclass.scoring.compounds.activity import ACTIVITY_COLUMNS
from fibroclass.scoring.wells.normalize import query_mask

COMPOUND_COLUMNS = (
    COMPOUND,
    "n_doses",
    "ec50_uM",
    "ec50_ci_low_uM",
    "ec50_ci_high_uM",
    "emax_pct",
    "hill",
    "max_rescue_pct",
    "min_viability_pct",
    "call",
    # beyond the DESIGN.md contract: how the call was reached (scoring.compounds.calls)
    "call_reason",
    "ec50_qualifier",
    "r2",
    "n_wells",
    "n_viable_doses",
    "n_active_doses",
    "max_offtarget_z",
    *ACTIVITY_COLUMNS,  # phenotypic activity (scoring.compounds.activity; NaN until computed)
)
FIT_COLUMNS = ("ec50_uM", "ec50_ci_low_uM", "ec50_ci_high_uM", "emax_pct", "hill")
DETAIL_COLUMNS = ("r2", "n_wells", "n_viable_doses", "n_active_doses", "max_offtarget_z")
DOSE_COLUMNS = (COMPOUND, CONC, "n_wells", RESCUE_PCT, "rescue_sd", VIABILITY_PCT)


def per_dose(selected: pd.DataFrame) -> pd.DataFrame:
    """Mean (and SD) of rescue/viability over replicate wells, all plates pooled, per compound × concentration."""
    if selected.empty:
        return pd.DataFrame(columns=list(DOSE_COLUMNS))
    grouped = selected.groupby([COMPOUND, CONC], sort=True)
    table = grouped.agg(
        n_wells=(RESCUE_PCT, "size"),
        rescue_pct=(RESCUE_PCT, "mean"),
        rescue_sd=(RESCUE_PCT, "std"),
        viability_pct=(VIABILITY_PCT, "mean"),
    ).reset_index()
    return table[list(DOSE_COLUMNS)]


def dose_table(wells: pd.DataFrame, query: str, name: str = "compounds") -> pd.DataFrame:
    """`per_dose` of the wells matching `query`."""
    wells = wells.reset_index(drop=True)
    return per_dose(wells.loc[query_mask(wells, query, name)] if len(wells) else wells)


def reference_dose_table(wells: pd.DataFrame, reference: str, compounds: str) -> pd.DataFrame:
    """Rescue by dose of the reference compound(s): every well matching `reference` or `compounds` whose
    compound is named by a `reference` well (e.g. a single-dose reference plus a treatment dose series)."""
    wells = wells.reset_index(drop=True)
    if wells.empty:
        return per_dose(wells)
    is_ref = query_mask(wells, reference, "reference")
    treated = is_ref | query_mask(wells, compounds, "compounds")
    same_drug = wells[COMPOUND].isin(set(wells.loc[is_ref, COMPOUND])).to_numpy()
    return per_dose(wells.loc[treated & same_drug])


def compound_table(wells: pd.DataFrame, query: str) -> pd.DataFrame:
    """One row per compound matched by `query` (non-vehicle treatments), DESIGN.md compounds.csv columns.

    `max_rescue_pct` is the max over doses of the mean replicate rescue, `min_viability_pct` the min over
    doses of the mean replicate viability; fit columns are NaN and `call` is `inconclusive` until the
    dose-response and calls steps (`scoring.compounds.calls.compound_readout`) fill them.
    """
    doses = dose_table(wells.reset_index(drop=True), query)
    rows = []
    for compound, d in doses.groupby(COMPOUND, sort=True):
        rows.append(
            {
                COMPOUND: compound,
                "n_doses": int(d[CONC].nunique()),
                **dict.fromkeys(FIT_COLUMNS, np.nan),
                "max_rescue_pct": _nanmax(d[RESCUE_PCT]),
                "min_viability_pct": _nanmin(d[VIABILITY_PCT]),
                "call": "inconclusive",
                "call_reason": "",
                "ec50_qualifier": "",
                **dict.fromkeys(DETAIL_COLUMNS, np.nan),
            }
        )
    return pd.DataFrame(rows, columns=list(COMPOUND_COLUMNS))


def _nanmax(values: pd.Series) -> float:
    v = values.to_numpy(float)
    return float(np.nanmax(v)) if np.isfinite(v).any() else float("nan")


def _nanmin(values: pd.Series) -> float:
    v = values.to_numpy(float)
    return float(np.nanmin(v)) if np.isfinite(v).any() else float("nan")
