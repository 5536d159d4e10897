"""Rescue meters: well scores fitted on the plate's own control wells, and the primary `rescue_pct`.

The CNN's disease logit separates healthy from GoF but is a poor meter: confident healthy wells spread
over several logit units, so the controls are noisy on the scale rescue is computed on, and partial rescue
is compressed. The meters here are linear discriminants (LDA) fitted on the healthy and disease control
wells only, which put the controls' within-group scatter, not the classifier's confidence, in the
denominator:

- `axis`: the whitened disease axis in the well-embedding space (top `embedding_pcs` principal
  components of the control wells' embeddings);
- `fused`: the same plus the organization co-readout (`features`, e.g. OrientationJ coherency, order,
  nuclear shape) and the CNN logit, each standardized by its within-control SD;
- `logit`: the CNN's well disease score as it is.

A meter's well score is 0 at the healthy-control mean and 1 at the disease-control mean of the wells it
was fitted on (a "disease index"); `rescue_pct` = 100·(μ_d − s)/(μ_d − μ_h) on the primary meter's score
(`readout_score`), per plate. The within-group covariance is pooled over the plates scored together (each
plate's groups around their own means) with Ledoit–Wolf shrinkage; one direction serves every plate, each
plate keeps its own 0 % / 100 % anchors. Control wells are scored cross-fitted: each by the direction
fitted without it, so Z′ and the controls' own rescue are not flattered by the fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf

from fibroclass.schema import DISEASE_SCORE, PLATE, ROLE_DISEASE, ROLE_HEALTHY
from fibroclass.scoring.config import RescueParams
from fibroclass.scoring.wells.normalize import PlateControls, control_roles, normalize_plates

READOUT_SCORE = "readout_score"  # well: the primary meter's score (rescue_pct and Z′ use this scale)
RESCUE_PCT_LOGIT = "rescue_pct_logit"  # well: rescue on the CNN logit (disease_score)
AXIS_SCORE, RESCUE_PCT_AXIS = "axis_score", "rescue_pct_axis"
FUSED_SCORE, RESCUE_PCT_FUSED = "fused_score", "rescue_pct_fused"
METER_COLUMNS = {  # meter -> (score column, rescue column)
    "fused": (FUSED_SCORE, RESCUE_PCT_FUSED),
    "axis": (AXIS_SCORE, RESCUE_PCT_AXIS),
    "logit": (DISEASE_SCORE, RESCUE_PCT_LOGIT),
}


@dataclass
class Meter:
    """One fitted meter: its well scores and what it was fitted on."""

    name: str
    scores: np.ndarray
    features: list[str] = field(default_factory=list)
    n_controls: int = 0
    note: str = ""


def _standardize(x: np.ndarray, plates: np.ndarray, role: np.ndarray) -> np.ndarray:
    """Per plate: centre on the disease-control mean; scale by the pooled within-control SD (all plates)."""
    x = x.copy()
    dev = []
    for p in np.unique(plates):
        m = plates == p
        for r in (ROLE_HEALTHY, ROLE_DISEASE):
            g = m & (role == r)
            if g.sum() >= 2:
                dev.append(x[g] - np.nanmean(x[g], axis=0))
        d = m & (role == ROLE_DISEASE)
        if d.any():
            x[m] -= np.nanmean(x[d], axis=0)
    sd = np.nanstd(np.concatenate(dev), axis=0, ddof=1) if dev else np.ones(x.shape[1])
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    return x / sd


def _direction(x: np.ndarray, plates: np.ndarray, role: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, float]:
    """LDA direction from the control rows in `use`, scaled so that the mean disease − healthy gap is 1,
    and the healthy anchor (mean healthy projection before the shift). Groups are taken per plate."""
    dev, gaps, h_means = [], [], []
    for p in np.unique(plates[use]):
        m = use & (plates == p)
        h, d = x[m & (role == ROLE_HEALTHY)], x[m & (role == ROLE_DISEASE)]
        if len(h) < 1 or len(d) < 1:
            continue
        dev += [h - h.mean(axis=0), d - d.mean(axis=0)]
        gaps.append((d.mean(axis=0) - h.mean(axis=0), len(h) + len(d)))
        h_means.append((h.mean(axis=0), len(h)))
    resid = np.concatenate(dev)
    gap = sum(g * n for g, n in gaps) / sum(n for _, n in gaps)
    cov = LedoitWolf(assume_centered=True).fit(resid).covariance_ if len(resid) > 2 else np.eye(x.shape[1])
    reg = cov + 1e-9 * np.trace(cov) / len(cov) * np.eye(len(cov))
    if not (np.all(np.isfinite(reg)) and np.all(np.isfinite(gap))):  # constant or NaN features: no direction
        return np.full(x.shape[1], np.nan), float("nan")
    w = np.linalg.lstsq(reg, gap, rcond=None)[0]  # a singular covariance (collinear controls) is not an error
    scale = float(w @ gap)
    w = w / scale if scale > 0 else w
    h_anchor = sum(hm * n for hm, n in h_means) / sum(n for _, n in h_means)
    return w, float(h_anchor @ w)


def lda_meter(x: np.ndarray, plates: np.ndarray, role: np.ndarray) -> np.ndarray:
    """Cross-fitted LDA scores (0 healthy, 1 disease) of every row of `x`; NaN rows stay NaN.

    Treated wells get the direction fitted on every control; each control the direction fitted on all
    other controls (leave one out), so its score is what an unseen well of its kind would get.
    """
    out = np.full(len(x), np.nan)
    ok = np.isfinite(x).all(axis=1)
    ctrl = ok & np.isin(role, [ROLE_HEALTHY, ROLE_DISEASE])
    if (ctrl & (role == ROLE_HEALTHY)).sum() < 2 or (ctrl & (role == ROLE_DISEASE)).sum() < 2:
        return out
    w, anchor = _direction(x, plates, role, ctrl)
    out[ok] = x[ok] @ w - anchor
    for j in np.flatnonzero(ctrl):
        use = ctrl.copy()
        use[j] = False
        same = use & (role == role[j]) & (plates == plates[j])
        if not same.any():  # the only control of its kind on its plate: keep the full fit
            continue
        wj, aj = _direction(x, plates, role, use)
        out[j] = x[j] @ wj - aj
    return out


def _embedding_pcs(emb: np.ndarray, role: np.ndarray, k: int) -> np.ndarray:
    """Projections of every well on the top `k` principal components of the control wells' embeddings."""
    ok = np.isfinite(emb).all(axis=1)
    ctrl = ok & np.isin(role, [ROLE_HEALTHY, ROLE_DISEASE])
    out = np.full((len(emb), 0), np.nan)
    if emb.ndim != 2 or emb.shape[1] == 0 or ctrl.sum() < 3 or k < 1:
        return out
    c = emb[ctrl].astype(np.float64)
    mu = c.mean(axis=0)
    _, _, vt = np.linalg.svd(c - mu, full_matrices=False)
    k = min(k, len(vt), int(ctrl.sum()) - 2)
    out = np.full((len(emb), k), np.nan)
    out[ok] = (emb[ok].astype(np.float64) - mu) @ vt[:k].T
    return out


def _impute_disease(x: np.ndarray, plates: np.ndarray, role: np.ndarray) -> np.ndarray:
    """Missing co-readout values of a well -> its plate's disease-control mean (no evidence of rescue)."""
    x = x.copy()
    for p in np.unique(plates):
        m = plates == p
        ref = np.nanmean(x[m & (role == ROLE_DISEASE)], axis=0) if (m & (role == ROLE_DISEASE)).any() else None
        if ref is None:
            continue
        rows = np.flatnonzero(m)
        bad = ~np.isfinite(x[rows])
        x[rows] = np.where(bad, np.broadcast_to(ref, x[rows].shape), x[rows])
    return x


def fit_meters(
    wells: pd.DataFrame, well_emb: np.ndarray, roles: pd.Series, params: RescueParams
) -> dict[str, Meter]:
    """Every meter of the module docstring on one run's wells (all plates)."""
    plates = wells[PLATE].astype(str).to_numpy()
    role = roles.astype(str).to_numpy()
    logit = wells[DISEASE_SCORE].to_numpy(float) if DISEASE_SCORE in wells else np.full(len(wells), np.nan)
    meters = {"logit": Meter("logit", logit, [DISEASE_SCORE])}
    emb = np.asarray(well_emb, dtype=float)
    pcs = _embedding_pcs(emb, role, params.embedding_pcs) if emb.ndim == 2 else np.empty((len(wells), 0))
    names = [f"pc{i + 1}" for i in range(pcs.shape[1])]
    n_ctrl = int(np.isin(role, [ROLE_HEALTHY, ROLE_DISEASE]).sum())
    if pcs.shape[1]:
        meters["axis"] = Meter("axis", lda_meter(_standardize(pcs, plates, role), plates, role), names, n_ctrl)
    else:
        meters["axis"] = Meter("axis", np.full(len(wells), np.nan), [], n_ctrl, "no embedding")
    org = [c for c in params.features if c in wells and np.isfinite(wells[c].to_numpy(float)).any()]
    cols = [pcs] if pcs.shape[1] else []
    if params.fused_logit:
        cols.append(logit[:, None])
    if org:
        cols.append(_impute_disease(wells[org].to_numpy(float), plates, role))
    fused_names = names + ([DISEASE_SCORE] if params.fused_logit else []) + org
    if cols:
        x = np.hstack(cols)
        meters["fused"] = Meter("fused", lda_meter(_standardize(x, plates, role), plates, role), fused_names, n_ctrl)
    else:
        meters["fused"] = Meter("fused", np.full(len(wells), np.nan), [], n_ctrl, "no features")
    return meters


def _rescue(score: np.ndarray, plates: np.ndarray, role: np.ndarray) -> np.ndarray:
    """100·(μ_d − s)/(μ_d − μ_h) per plate on `score` (NaN without two finite controls of each kind)."""
    out = np.full(len(score), np.nan)
    for p in np.unique(plates):
        m = plates == p
        h, d = score[m & (role == ROLE_HEALTHY)], score[m & (role == ROLE_DISEASE)]
        h, d = h[np.isfinite(h)], d[np.isfinite(d)]
        if len(h) and len(d) and h.mean() != d.mean():
            out[m] = 100.0 * (d.mean() - score[m]) / (d.mean() - h.mean())
    return out


def add_meters(
    wells: pd.DataFrame, well_emb: np.ndarray, roles: pd.Series, params: RescueParams
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Wells with every meter's score and rescue column plus `readout_score` (the primary meter's score;
    falls back to the logit, with a note, when the primary cannot be fitted), and a summary for run.json."""
    wells = wells.reset_index(drop=True).copy()
    meters = fit_meters(wells, well_emb, roles.reset_index(drop=True), params)
    plates = wells[PLATE].astype(str).to_numpy()
    role = roles.astype(str).to_numpy()
    for name, (score_col, rescue_col) in METER_COLUMNS.items():
        if score_col != DISEASE_SCORE:
            wells[score_col] = meters[name].scores
        wells[rescue_col] = _rescue(meters[name].scores, plates, role)
    primary = params.meter
    used = primary if np.isfinite(meters[primary].scores).any() else "logit"
    wells[READOUT_SCORE] = meters[used].scores
    summary = {
        "meter": used,
        "requested": primary,
        "features": meters[used].features,
        "note": "" if used == primary else f"{primary} meter could not be fitted ({meters[primary].note}); logit used",
    }
    return wells, {"readout": summary}


def rescue_readout(
    wells: pd.DataFrame, well_emb: np.ndarray, controls: Mapping[str, str], params: RescueParams
) -> tuple[pd.DataFrame, dict[str, PlateControls], dict]:
    """Meters, then `rescue_pct` / `viability_pct` on the primary meter's `readout_score` (per plate), the
    control statistics on that scale (for plate QC) and the meter summary."""
    wells = wells.reset_index(drop=True)
    wells, info = add_meters(wells, well_emb, control_roles(wells, controls), params)
    wells, stats = normalize_plates(wells, dict(controls), READOUT_SCORE)
    return wells, stats, info["readout"]


__all__ = [
    "AXIS_SCORE",
    "FUSED_SCORE",
    "METER_COLUMNS",
    "READOUT_SCORE",
    "RESCUE_PCT_AXIS",
    "RESCUE_PCT_FUSED",
    "RESCUE_PCT_LOGIT",
    "add_meters",
    "fit_meters",
    "lda_meter",
    "rescue_readout",
]
