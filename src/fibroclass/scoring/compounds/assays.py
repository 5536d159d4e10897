"""Secondary readouts per compound: the same 4PL as the morphology rescue, and how the two agree.

For each readout `r` and compound, at viable doses (median viability ≥ `calls.viability_min_pct`; dead
cells secrete less, which is no rescue) of the same wells the calls use (plates that passed QC, else all):
- `r_ec50_uM`, `r_ec50_qualifier`, `r_emax_pct`: `doseresponse.fit_4pl` on `r_rescue_pct`;
- `r_max_rescue_pct`: max over doses of the median readout rescue;
- `r_rho`: Spearman ρ across doses between the median morphology rescue and the median readout rescue
  (NaN below 3 doses with both);
- `r_discordant`: the two disagree on whether the compound rescues: one reaches `calls.hit_rescue_pct`
  while the other stays below `calls.inactive_max_rescue_pct` (e.g. a morphology hit that does not lower
  IL-6), or both rescue with opposite dose trends (ρ ≤ −0.5).
`discordant` is true when any readout is. The morphology call itself does not change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from fibroclass.io.assays import AssaySpec
from fibroclass.schema import COMPOUND, CONC, PLATE, RESCUE_PCT
from fibroclass.scoring.compounds.doseresponse import Fit4PL, fit_compounds, viable_dose_mask
from fibroclass.scoring.config import ReadoutSettings
from fibroclass.scoring.wells.assays import rescue_col
from fibroclass.scoring.wells.normalize import query_mask

DISCORDANT = "discordant"
OPPOSITE_RHO = -0.5
ASSAY_COMPOUND_SUFFIXES = (
    "_ec50_uM",
    "_ec50_qualifier",
    "_emax_pct",
    "_max_rescue_pct",
    "_rho",
    "_discordant",
)


def _trusted(wells: pd.DataFrame, plate_qc: Mapping[str, Mapping], query: str) -> pd.DataFrame:
    """Treated wells the calls count: plates that passed QC, plus compounds seen only on failed plates."""
    treated = wells[query_mask(wells, query, "compounds")] if len(wells) else wells
    failed = {str(p) for p, q in plate_qc.items() if not q.get("pass", False)}
    on_failed = treated[PLATE].astype(str).isin(failed)
    ok_names = set(treated.loc[~on_failed, COMPOUND])
    return treated[~on_failed | ~treated[COMPOUND].isin(ok_names)]


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def _discordant(morph_max: float, readout_max: float, rho: float, hit: float, inactive: float) -> bool:
    if not (math.isfinite(morph_max) and math.isfinite(readout_max)):
        return False
    if (morph_max >= hit and readout_max < inactive) or (readout_max >= hit and morph_max < inactive):
        return True
    return morph_max >= hit and readout_max >= hit and math.isfinite(rho) and rho <= OPPOSITE_RHO


def assay_compound_readout(
    wells: pd.DataFrame,
    compounds: pd.DataFrame,
    plate_qc: Mapping[str, Mapping],
    compounds_query: str,
    settings: ReadoutSettings,
    specs: Mapping[str, AssaySpec],
) -> tuple[pd.DataFrame, dict[str, dict[str, Fit4PL]]]:
    """compounds.csv with the readout columns of the module docstring; fits per readout and compound."""
    out = compounds.copy()
    if not specs or out.empty:
        return out, {}
    calls = settings.calls
    sel = _trusted(wells, plate_qc, compounds_query)
    sel = sel[viable_dose_mask(sel, calls.viability_min_pct)] if len(sel) else sel
    fits: dict[str, dict[str, Fit4PL]] = {}
    any_discordant = pd.Series(False, index=out.index)
    for name in specs:
        col = rescue_col(name)
        part = sel[np.isfinite(sel[col].to_numpy(float))] if len(sel) else sel
        f = (
            fit_compounds(part, settings.dose_response, col, mask=pd.Series(True, index=part.index))
            if len(part)
            else {}
        )
        fits[name] = f
        doses = part.groupby([COMPOUND, CONC])[[RESCUE_PCT, col]].median() if len(part) else None
        cols: dict[str, list] = {s: [] for s in ASSAY_COMPOUND_SUFFIXES}
        for compound in out[COMPOUND].astype(str):
            fit = f.get(compound)
            d = (
                doses.loc[compound]
                if doses is not None and compound in doses.index.get_level_values(0)
                else None
            )
            morph = d[RESCUE_PCT].to_numpy(float) if d is not None else np.array([])
            readout = d[col].to_numpy(float) if d is not None else np.array([])
            rmax = float(np.nanmax(readout)) if np.isfinite(readout).any() else math.nan
            mmax = float(np.nanmax(morph)) if np.isfinite(morph).any() else math.nan
            rho = _rho(morph, readout)
            cols["_ec50_uM"].append(fit.ec50_uM if fit else math.nan)
            cols["_ec50_qualifier"].append(fit.ec50_qualifier if fit else "")
            cols["_emax_pct"].append(fit.emax_pct if fit else math.nan)
            cols["_max_rescue_pct"].append(rmax)
            cols["_rho"].append(rho)
            cols["_discordant"].append(
                _discordant(mmax, rmax, rho, calls.hit_rescue_pct, calls.inactive_max_rescue_pct)
            )
        for suffix, values in cols.items():
            out[f"{name}{suffix}"] = values
        any_discordant |= out[f"{name}_discordant"].astype(bool)
    out[DISCORDANT] = any_discordant
    return out, fits


__all__ = ["ASSAY_COMPOUND_SUFFIXES", "DISCORDANT", "assay_compound_readout"]
