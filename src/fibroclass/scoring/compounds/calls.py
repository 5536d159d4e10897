"""Per-compound calls (hit / inactive / toxic / off_target / inconclusive) from dose-level readouts.

Wells are pooled per compound × concentration (all plates) and summarized by the median over replicate
wells: rescue, viability, off-target z and on-target %. A dose is *viable* when its viability is at
least `viability_min_pct`, *off-target* when its off-target z is at least `offtarget_z_min`, *clean*
when viable and not off-target, and *active* when clean with rescue ≥ `active_rescue_pct`.
The first rule that matches decides (docs/calls.md and configs/score/readout.yaml say the same):

1. inconclusive — no dose with a finite rescue.
2. hit — max rescue over clean doses ≥ `hit_rescue_pct`, at least `hit_min_active_doses` active doses,
   a dose-dependent response (4PL with an EC50 and r² ≥ `hit_min_r2`, or Spearman ρ ≥
   `hit_min_spearman` over viable doses), and — when `on_target_pct` is available — median
   on-target % at the active doses ≥ `ontarget_min_pct` (the morphology moves along the disease axis).
3. toxic — at least `toxic_min_doses` non-viable doses (and not a hit).
4. off_target — at least one viable dose is off-target (and not a hit).
5. inactive — max rescue over viable doses < `inactive_max_rescue_pct`.
6. inconclusive — anything else (partial or single-dose rescue, no dose dependence, off-axis rescue).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from fibroclass.errors import FibroclassError
from fibroclass.schema import (
    COMPOUND,
    CONC,
    PLATE,
    RESCUE_PCT,
    VIABILITY_PCT,
)
from fibroclass.scoring.compounds.doseresponse import Fit4PL, compound_mask, fit_compounds
from fibroclass.scoring.compounds.tables import compound_table
from fibroclass.scoring.config import CallParams, DoseResponseParams, ReadoutSettings
from fibroclass.scoring.wells.normalize import query_mask
from fibroclass.scoring.wells.offtarget import OFFTARGET_EVIDENCE_Z, OFFTARGET_Z, ON_TARGET_PCT

CALL = "call"
CALL_REASON = "call_reason"
CALL_COLUMNS = (
    COMPOUND,
    "n_doses",
    "n_wells",
    "ec50_uM",
    "ec50_qualifier",
    "ec50_ci_low_uM",
    "ec50_ci_high_uM",
    "emax_pct",
    "hill",
    "r2",
    "max_rescue_pct",
    "min_viability_pct",
    "max_offtarget_z",
    "n_viable_doses",
    "n_active_doses",
    CALL,
    CALL_REASON,
)


def dose_summary(wells: pd.DataFrame) -> pd.DataFrame:
    """Median readouts per compound × concentration over replicate wells (+ `n_wells`)."""
    cols = [c for c in (RESCUE_PCT, VIABILITY_PCT, OFFTARGET_Z, ON_TARGET_PCT) if c in wells]
    g = wells.groupby([COMPOUND, CONC], sort=True)
    out = g[cols].median()
    out["n_wells"] = g.size()
    for c in (VIABILITY_PCT, OFFTARGET_Z, ON_TARGET_PCT):
        if c not in out:
            out[c] = np.nan
    return out.reset_index()


def _fmt_conc(c: float) -> str:
    return f"{c:.3g} µM"


def _pct(x: float) -> str:
    """Whole percent without a negative zero."""
    return f"{round(x) + 0:d}%"


def _dose_dependent(d: pd.DataFrame, fit: Fit4PL | None, p: CallParams) -> tuple[bool, str]:
    if fit is not None and fit.converged and not fit.flat and math.isfinite(fit.ec50_uM):
        if fit.r2 >= p.hit_min_r2:
            return True, f"4PL r²={fit.r2:.2f}"
    viable = d[d["viable"]]
    if len(viable) >= 3:
        rho = stats.spearmanr(viable[CONC], viable[RESCUE_PCT]).statistic
        if np.isfinite(rho) and rho >= p.hit_min_spearman:
            return True, f"Spearman ρ={rho:.2f}"
        r2 = fit.r2 if fit is not None else math.nan
        return False, f"no dose dependence (4PL r²={r2:.2f}, Spearman ρ={rho:.2f})"
    return False, "too few viable doses to show dose dependence"


def _call_one(d: pd.DataFrame, fit: Fit4PL | None, p: CallParams) -> tuple[str, str, dict]:
    """(call, reason, summary numbers) for one compound's dose table."""
    d = d[np.isfinite(d[RESCUE_PCT])].copy()
    summary = {"n_doses": int(len(d)), "n_wells": int(d["n_wells"].sum()) if len(d) else 0}
    if d.empty:
        return "inconclusive", "no dose with a usable rescue value", summary
    d["viable"] = d[VIABILITY_PCT].isna() | (d[VIABILITY_PCT] >= p.viability_min_pct)
    d["offt"] = d[OFFTARGET_Z].fillna(-np.inf) >= p.offtarget_z_min
    d["clean"] = d["viable"] & ~d["offt"]
    d["active"] = d["clean"] & (d[RESCUE_PCT] >= p.active_rescue_pct)
    viable, clean, active = d[d["viable"]], d[d["clean"]], d[d["active"]]
    max_viable = float(viable[RESCUE_PCT].max()) if len(viable) else math.nan
    max_clean = float(clean[RESCUE_PCT].max()) if len(clean) else math.nan
    summary.update(
        max_rescue_pct=max_viable,
        min_viability_pct=float(d[VIABILITY_PCT].min()),
        max_offtarget_z=float(viable[OFFTARGET_Z].max()) if len(viable) else math.nan,
        n_viable_doses=int(len(viable)),
        n_active_doses=int(len(active)),
    )
    nonviable = d[~d["viable"]]
    offt_viable = viable[viable["offt"]]
    notes = []
    if len(nonviable):
        notes.append(f"viability < {p.viability_min_pct:g}% from {_fmt_conc(nonviable[CONC].min())}")
    if len(offt_viable):
        notes.append(
            f"off-target (z={offt_viable[OFFTARGET_Z].max():.1f}) from {_fmt_conc(offt_viable[CONC].min())}"
        )

    why_not_hit = ""
    if math.isfinite(max_clean) and max_clean >= p.hit_rescue_pct:
        dependent, dep_text = _dose_dependent(d, fit, p)
        on_axis = float(active[ON_TARGET_PCT].median()) if len(active) else math.nan
        if len(active) < p.hit_min_active_doses:
            why_not_hit = f"rescue at {len(active)} dose(s) only (hit needs {p.hit_min_active_doses})"
        elif not dependent:
            why_not_hit = dep_text
        elif math.isfinite(on_axis) and on_axis < p.ontarget_min_pct:
            why_not_hit = f"rescue off the disease axis (on-target {on_axis:.0f}% < {p.ontarget_min_pct:g}%)"
        else:
            ec50 = f", EC50 {fit.ec50_label()}" if fit is not None else ""
            reason = f"rescue {max_clean:.0f}% at {len(active)} clean doses ({dep_text}{ec50})"
            return "hit", "; ".join([reason, *notes]), summary
    elif math.isfinite(max_clean) and max_clean >= p.inactive_max_rescue_pct:
        why_not_hit = f"partial rescue {max_clean:.0f}% (hit needs {p.hit_rescue_pct:g}%)"

    if len(nonviable) >= p.toxic_min_doses:
        low = nonviable[VIABILITY_PCT].min()
        reason = f"viability {low:.0f}% (< {p.viability_min_pct:g}%) at {len(nonviable)} dose(s)"
        rescue = f"max viable rescue {max_viable:.0f}%" if math.isfinite(max_viable) else "no viable dose"
        return "toxic", "; ".join([reason, rescue, *notes[1:]]), summary
    if len(offt_viable):
        on_axis = float(offt_viable[ON_TARGET_PCT].median())
        axis_txt = f", on-target {_pct(on_axis)}" if math.isfinite(on_axis) else ""
        reason = (
            f"morphology off the disease axis (z={offt_viable[OFFTARGET_Z].max():.1f} ≥ "
            f"{p.offtarget_z_min:g}) at {len(offt_viable)} viable dose(s){axis_txt}"
        )
        return "off_target", reason, summary
    if math.isfinite(max_viable) and max_viable < p.inactive_max_rescue_pct:
        reason = f"max rescue {max_viable:.0f}% < {p.inactive_max_rescue_pct:g}%, viability acceptable"
        return "inactive", reason, summary
    return "inconclusive", "; ".join([why_not_hit or "no rule matched", *notes]), summary


def call_compounds(
    wells_df: pd.DataFrame,
    fits: Mapping[str, Fit4PL] | None = None,
    config: CallParams | Mapping | None = None,
    dose_response: DoseResponseParams | Mapping | None = None,
) -> pd.DataFrame:
    """One row per compound (CALL_COLUMNS) with its `call` and a short `call_reason`.

    `wells_df` needs `compound`, `concentration_uM`, `rescue_pct`; `viability_pct`, `offtarget_z`,
    `on_target_pct` and `role` are used when present (with `role`, only treatment/reference wells with
    a positive concentration count). `fits` defaults to `fit_compounds` on the same wells.
    """
    p = config if isinstance(config, CallParams) else CallParams.from_dict(config)
    for col in (COMPOUND, CONC, RESCUE_PCT):
        if col not in wells_df:
            raise FibroclassError(f"wells table lacks column '{col}' needed for compound calls")
    wells = wells_df
    if "role" in wells:
        wells = wells[compound_mask(wells)]
    else:
        wells = wells[pd.to_numeric(wells[CONC]) > 0]
    if fits is None:
        dr = dose_response if isinstance(dose_response, DoseResponseParams) else None
        if dr is None:
            dr_dict = dict(dose_response or {})
            dr_dict.setdefault("viability_min_pct", p.viability_min_pct)
            dr = DoseResponseParams.from_dict(dr_dict)
        fits = fit_compounds(wells, dr, mask=pd.Series(True, index=wells.index))
    rows = []
    for name, d in dose_summary(wells).groupby(COMPOUND, sort=True):
        fit = fits.get(str(name))
        call, reason, summary = _call_one(d, fit, p)
        fd = fit.to_dict() if fit is not None else {}
        rows.append(
            {
                COMPOUND: name,
                **summary,
                **{k: fd.get(k, math.nan) for k in ("ec50_uM", "ec50_ci_low_uM", "ec50_ci_high_uM")},
                "ec50_qualifier": fd.get("ec50_qualifier", ""),
                **{k: fd.get(k, math.nan) for k in ("emax_pct", "hill", "r2")},
                CALL: call,
                CALL_REASON: reason,
            }
        )
    return pd.DataFrame(rows, columns=list(CALL_COLUMNS))


NOT_CALLED = "not called: plate(s) {plates} failed QC"


def _failed_plates(plate_qc: Mapping[str, Mapping]) -> set[str]:
    return {str(p) for p, q in plate_qc.items() if not q.get("pass", False)}


def compound_readout(
    wells: pd.DataFrame, plate_qc: Mapping[str, Mapping], compounds_query: str, settings: ReadoutSettings
) -> tuple[pd.DataFrame, dict[str, Fit4PL]]:
    """compounds.csv rows: `compounds.compound_table` filled with 4PL fits (viable doses) and calls.

    Only wells of plates that passed QC count. A compound tested only on failed plates keeps its fit and
    numbers, but its call is `inconclusive`, the reason naming the plate and what the call would be.
    The calls see `offtarget_evidence_z` as their off-target z.
    """
    base = compound_table(wells, compounds_query)
    ro = settings
    treated = wells[query_mask(wells, compounds_query, "compounds")] if len(wells) else wells
    if OFFTARGET_EVIDENCE_Z in treated:
        treated = treated.assign(**{OFFTARGET_Z: treated[OFFTARGET_EVIDENCE_Z]})
    on_failed = treated[PLATE].astype(str).isin(_failed_plates(plate_qc))
    trusted_names = set(treated.loc[~on_failed, COMPOUND])
    parts = (
        (treated[~on_failed], True),
        (treated[on_failed & ~treated[COMPOUND].isin(trusted_names)], False),
    )
    fits: dict[str, Fit4PL] = {}
    tables = []
    for part, trusted in parts:
        if part.empty:
            continue
        part_fits = fit_compounds(part, ro.dose_response, mask=pd.Series(True, index=part.index))
        calls = call_compounds(part, part_fits, ro.calls)
        if not trusted:
            plates = part.groupby(COMPOUND)[PLATE].agg(lambda s: ", ".join(sorted(set(map(str, s)))))
            calls[CALL_REASON] = [
                f"{NOT_CALLED.format(plates=plates.get(c, '?'))}; would be {w}: {r}"
                for c, w, r in zip(calls[COMPOUND], calls[CALL], calls[CALL_REASON], strict=True)
            ]
            calls[CALL] = "inconclusive"
        fits.update(part_fits)
        tables.append(calls)
    if not tables:
        return base, fits
    calls = pd.concat(tables, ignore_index=True).set_index(COMPOUND)
    rest = base.set_index(COMPOUND)
    rest = rest[~rest.index.isin(calls.index)]  # not callable (e.g. no usable rescue): placeholders stay
    out = pd.concat([calls, rest]).reindex(base[COMPOUND]).reset_index()
    return out[list(base.columns) + [c for c in out.columns if c not in base.columns]], fits
