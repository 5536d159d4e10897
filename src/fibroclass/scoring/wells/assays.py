"""Secondary per-well readouts (io.assays) joined to the wells and normalized to each plate's own controls.

For readout `r` (log10 first when its scale is `log`), per plate:
`r_rescue_pct = 100·(μ_disease − v)/(μ_disease − μ_healthy)`, the same definition as `rescue_pct`: 0 % at the
disease-control mean, 100 % at the healthy-control mean, whichever way the readout moves with disease
(IL-6 falls, wound closure rises on rescue). A plate whose controls lack the readout gets NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.assays import SOURCE, AssayData, AssaySpec
from fibroclass.schema import PLATE, PM_PLATE, PM_WELL, ROLE_DISEASE, ROLE_HEALTHY, WELL
from fibroclass.scoring.wells.plate_qc import z_prime

RESCUE_SUFFIX = "_rescue_pct"


def rescue_col(name: str) -> str:
    """Column of a readout's control-normalized rescue: `il6_pg_ml` -> `il6_pg_ml_rescue_pct`."""
    return f"{name}{RESCUE_SUFFIX}"


def _plates(assays: AssayData, plates: list[str]) -> pd.Series:
    """The plate of every assay row; a file without a plate column only fits a one-plate run."""
    plate = assays.table[PM_PLATE].astype(str)
    blank = plate == ""
    if blank.any():
        if len(plates) != 1:
            src = assays.table.loc[blank, SOURCE].iloc[0]
            raise FibroclassError(
                f"assay file {src} has no plate column but the run has {len(plates)} plates ({', '.join(plates[:5])})"
            )
        plate = plate.where(~blank, plates[0])
    unknown = sorted(set(plate) - set(plates))
    if unknown:
        src = assays.table.loc[plate == unknown[0], SOURCE].iloc[0]
        raise FibroclassError(
            f"assay file {src}: plate '{unknown[0]}' is not a plate of this run (plates: {', '.join(plates[:10])})"
        )
    return plate


def check_assays(assays: AssayData, keys: pd.DataFrame) -> None:
    """Fail early (before any scoring) on plates the run does not have or readout names that clash
    with columns of the field index / well table `keys`."""
    plates = sorted(keys[PLATE].astype(str).unique())
    _plates(assays, plates)
    for name in assays.names:
        for col in (name, rescue_col(name)):
            if col in keys.columns:
                raise FibroclassError(
                    f"assay file {assays.specs[name].source}: readout '{name}' clashes with column '{col}' "
                    "of the plate map / outputs; rename the column"
                )


def attach_assays(wells: pd.DataFrame, assays: AssayData) -> tuple[pd.DataFrame, list[str]]:
    """The wells with one raw column per readout (NaN where not measured); rows for wells the run did
    not image are left out with a warning."""
    check_assays(assays, wells)
    plates = sorted(wells[PLATE].astype(str).unique())
    table = assays.table.assign(**{PM_PLATE: _plates(assays, plates)})
    keys = pd.MultiIndex.from_arrays([wells[PLATE].astype(str), wells[WELL].astype(str)])
    own = pd.MultiIndex.from_arrays([table[PM_PLATE], table[PM_WELL]])
    missing = ~own.isin(keys)
    warnings = []
    if missing.any():
        eg = ", ".join(f"{p} {w}" for p, w in own[missing][:3])
        files = ", ".join(sorted(set(table.loc[missing, SOURCE])))
        warnings.append(
            f"assay {files}: {int(missing.sum())} row(s) for wells without images ignored (e.g. {eg})"
        )
    values = table.set_index([PM_PLATE, PM_WELL])[assays.names]
    joined = values.reindex(keys)
    out = wells.copy()
    for name in assays.names:
        out[name] = joined[name].to_numpy(float)
    return out, warnings


def _scaled(values: np.ndarray, spec: AssaySpec) -> np.ndarray:
    if not spec.log:
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log10(values), np.nan)


def _back(value: float, spec: AssaySpec) -> float:
    return 10.0**value if spec.log and math.isfinite(value) else value


def _plate_summary(h: np.ndarray, d: np.ndarray, spec: AssaySpec) -> dict:
    h, d = h[np.isfinite(h)], d[np.isfinite(d)]
    mh = float(h.mean()) if len(h) else math.nan
    md = float(d.mean()) if len(d) else math.nan
    reasons = []
    if not len(h) or not len(d):
        reasons.append(f"no {'healthy' if not len(h) else 'disease'} control wells with a value")
    elif mh == md:
        reasons.append("healthy and disease controls have the same mean")
    hm, dm = _back(mh, spec), _back(md, spec)
    fold = dm / hm if math.isfinite(hm) and hm != 0 and math.isfinite(dm) else math.nan
    return {
        "label": spec.label,
        "unit": spec.unit,
        "scale": spec.scale,
        "n_healthy": int(len(h)),
        "n_disease": int(len(d)),
        "healthy_mean": hm,  # geometric mean on a log scale
        "disease_mean": dm,
        "fold_disease_vs_healthy": fold,
        "z_prime": z_prime(h, d),
        "usable": not reasons,
        "reasons": reasons,
    }


def normalize_assays(
    wells: pd.DataFrame, roles: pd.Series, specs: Mapping[str, AssaySpec]
) -> tuple[pd.DataFrame, dict[str, dict[str, dict]]]:
    """Add `<readout>_rescue_pct` per plate from the control roles (`normalize.control_roles`); returns
    the wells and {plate: {readout: control summary (means in the readout's units, fold, Z′)}}."""
    out = wells.reset_index(drop=True).copy()
    roles = pd.Series(np.asarray(roles), index=out.index)
    summary: dict[str, dict[str, dict]] = {}
    for name, spec in specs.items():
        v = _scaled(out[name].to_numpy(float), spec)
        rescue = np.full(len(out), np.nan)
        for plate, idx in out.groupby(PLATE, sort=False).indices.items():
            r = roles.to_numpy()[idx]
            h, d = v[idx][r == ROLE_HEALTHY], v[idx][r == ROLE_DISEASE]
            s = _plate_summary(h, d, spec)
            summary.setdefault(str(plate), {})[name] = s
            if s["usable"]:
                mh, md = float(np.nanmean(h)), float(np.nanmean(d))
                rescue[idx] = 100.0 * (md - v[idx]) / (md - mh)
        out[rescue_col(name)] = rescue
    return out, summary


__all__ = ["RESCUE_SUFFIX", "attach_assays", "check_assays", "normalize_assays", "rescue_col"]
