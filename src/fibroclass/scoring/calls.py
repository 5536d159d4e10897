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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from fibroclass.errors import FibroclassError
from fibroclass.schema import COMPOUND, CONC, RESCUE_PCT, VIABILITY_PCT
from fibroclass.scoring.doseresponse import DoseResponseParams, Fit4PL, compound_mask, fit_compounds
from fibroclass.scoring.nuclei import NucleiParams
from fibroclass.scoring.offtarget import OFFTARGET_Z, ON_TARGET_PCT
from fibroclass.scoring.qc import FieldQCParams

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


@dataclass(frozen=True)
class CallParams:
    """The `calls` section of `configs/score/readout.yaml` (+ `offtarget.z_min`)."""

    viability_min_pct: float = 70.0
    toxic_min_doses: int = 1
    offtarget_z_min: float = 3.0
    hit_rescue_pct: float = 50.0
    active_rescue_pct: float = 25.0
    hit_min_active_doses: int = 2
    hit_min_r2: float = 0.5
    hit_min_spearman: float = 0.6
    ontarget_min_pct: float = 25.0
    inactive_max_rescue_pct: float = 25.0

    @classmethod
    def from_dict(cls, d: Mapping | None) -> CallParams:
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise FibroclassError(f"unknown key(s) {sorted(unknown)} in config section 'calls'")
        return cls(**d)


@dataclass(frozen=True)
class OffTargetParams:
    """The `offtarget` section of `configs/score/readout.yaml`."""

    z_min: float = 3.0
    min_spread_frac: float = 0.05


@dataclass(frozen=True)
class ReadoutConfig:
    """All readout sections: `field_qc`, `nuclei`, `offtarget`, `dose_response`, `calls`."""

    field_qc: FieldQCParams = field(default_factory=FieldQCParams)
    nuclei: NucleiParams = field(default_factory=NucleiParams)
    offtarget: OffTargetParams = field(default_factory=OffTargetParams)
    dose_response: DoseResponseParams = field(default_factory=DoseResponseParams)
    calls: CallParams = field(default_factory=CallParams)

    @classmethod
    def from_dict(cls, raw: Mapping | None, source: str = "readout config") -> ReadoutConfig:
        raw = dict(raw or {})
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise FibroclassError(f"{source}: unknown section(s) {sorted(unknown)}")
        for name, value in raw.items():
            if value is not None and not isinstance(value, Mapping):
                raise FibroclassError(f"{source}: section '{name}' must be a mapping")
        off = dict(raw.get("offtarget") or {})
        bad = set(off) - set(OffTargetParams.__dataclass_fields__)
        if bad:
            raise FibroclassError(f"{source}: unknown key(s) {sorted(bad)} in section 'offtarget'")
        calls = dict(raw.get("calls") or {})
        calls.setdefault("offtarget_z_min", off.get("z_min", OffTargetParams.z_min))
        dr = dict(raw.get("dose_response") or {})
        dr.setdefault("viability_min_pct", calls.get("viability_min_pct", CallParams.viability_min_pct))
        try:
            return cls(
                field_qc=FieldQCParams.from_dict(raw.get("field_qc")),
                nuclei=NucleiParams.from_dict(raw.get("nuclei")),
                offtarget=OffTargetParams(**off),
                dose_response=DoseResponseParams.from_dict(dr),
                calls=CallParams.from_dict(calls),
            )
        except TypeError as exc:
            raise FibroclassError(f"{source}: {exc}") from exc


def load_readout_config(path: str | Path) -> ReadoutConfig:
    """Read the readout sections from a YAML file (other top-level keys are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FibroclassError(f"readout config {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FibroclassError(f"readout config {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise FibroclassError(f"readout config {path} must be a mapping at the top level")
    sections = {k: v for k, v in raw.items() if k in ReadoutConfig.__dataclass_fields__}
    return ReadoutConfig.from_dict(sections, source=f"readout config {path}")


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
