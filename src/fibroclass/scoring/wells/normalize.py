"""Per-plate normalization of well scores to the plate's own healthy and disease controls.

`rescue_pct = 100·(μ_disease − s)/(μ_disease − μ_healthy)`: 0 % at the disease-control mean, 100 % at
the healthy-control mean, on the well score `s` of the primary meter (`readout_score`, see
scoring.wells.readout; the CNN logit `disease_score` when no meter was fitted).
`viability_pct = 100 · nuclei_count / mean nuclei count of disease controls`.
Controls are pandas queries on the well table (config `controls.healthy`, `controls.disease`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.schema import (
    DISEASE_SCORE,
    NUCLEI_COUNT,
    PLATE,
    RESCUE_PCT,
    ROLE,
    ROLE_DISEASE,
    ROLE_HEALTHY,
    VIABILITY_PCT,
)


@dataclass
class ControlStats:
    """Mean, SD (ddof=1) and count of the well scores of one control group on one plate."""

    mean: float = float("nan")
    sd: float = float("nan")
    n: int = 0

    @classmethod
    def of(cls, values: np.ndarray) -> ControlStats:
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return cls()
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        return cls(float(np.mean(values)), sd, int(len(values)))


@dataclass
class PlateControls:
    """Control statistics of one plate and why its rescue could not be computed (empty when it could)."""

    plate: str
    healthy: ControlStats
    disease: ControlStats
    healthy_scores: np.ndarray = field(repr=False)
    disease_scores: np.ndarray = field(repr=False)
    disease_nuclei_mean: float = float("nan")
    reasons: list[str] = field(default_factory=list)
    score: str = DISEASE_SCORE  # the well column the scores come from (the rescue scale)
    healthy_logits: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)  # CNN disease_score
    disease_logits: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def usable(self) -> bool:
        return not self.reasons

    def summary(self) -> dict:
        """JSON-friendly statistics (used by plate QC)."""
        return {
            "healthy_mean": self.healthy.mean,
            "healthy_sd": self.healthy.sd,
            "n_healthy": self.healthy.n,
            "disease_mean": self.disease.mean,
            "disease_sd": self.disease.sd,
            "n_disease": self.disease.n,
        }


def query_mask(wells: pd.DataFrame, query: str, name: str) -> np.ndarray:
    """Boolean mask of the wells matching a pandas query; a bad query names itself and the columns."""
    try:
        selected = wells.query(query, engine="python")
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for bad queries
        raise FibroclassError(
            f'control query {name}: "{query}" failed on the well table ({type(exc).__name__}: {exc}); '
            f"columns are {list(wells.columns)}"
        ) from exc
    return wells.index.isin(selected.index)


def plate_controls(
    wells: pd.DataFrame, controls: dict[str, str], score_col: str = DISEASE_SCORE
) -> dict[str, PlateControls]:
    """Control statistics per plate of `score_col` from the `healthy` and `disease` queries."""
    wells = wells.reset_index(drop=True)
    healthy = query_mask(wells, controls["healthy"], "healthy")
    disease = query_mask(wells, controls["disease"], "disease")
    both = healthy & disease
    if both.any():
        raise FibroclassError(
            f"control queries overlap: {int(both.sum())} well(s) match both healthy and disease "
            f"(e.g. {wells.loc[both, PLATE].iloc[0]} {wells.loc[both].iloc[0].get('Metadata_Well')})"
        )
    score = wells[score_col].to_numpy(float)
    logit = wells[DISEASE_SCORE].to_numpy(float) if DISEASE_SCORE in wells else np.full(len(wells), np.nan)
    nuclei = wells[NUCLEI_COUNT].to_numpy(float) if NUCLEI_COUNT in wells else np.full(len(wells), np.nan)
    out: dict[str, PlateControls] = {}
    for plate, idx in wells.groupby(PLATE, sort=False).indices.items():
        h_scores = score[idx][healthy[idx]]
        d_scores = score[idx][disease[idx]]
        h, d = ControlStats.of(h_scores), ControlStats.of(d_scores)
        reasons = []
        if h.n == 0:
            reasons.append(f"no healthy control wells with a score (query: {controls['healthy']})")
        if d.n == 0:
            reasons.append(f"no disease control wells with a score (query: {controls['disease']})")
        if h.n and d.n and h.mean == d.mean:
            reasons.append("healthy and disease controls have the same mean score")
        d_nuc = nuclei[idx][disease[idx]]
        d_nuc = d_nuc[np.isfinite(d_nuc)]
        nuc_mean = float(d_nuc.mean()) if len(d_nuc) else float("nan")
        out[str(plate)] = PlateControls(
            str(plate),
            h,
            d,
            h_scores[np.isfinite(h_scores)],
            d_scores[np.isfinite(d_scores)],
            nuc_mean,
            reasons,
            score_col,
            logit[idx][healthy[idx]],
            logit[idx][disease[idx]],
        )
    return out


def normalize_plates(
    wells: pd.DataFrame, controls: dict[str, str], score_col: str = DISEASE_SCORE
) -> tuple[pd.DataFrame, dict[str, PlateControls]]:
    """Add `rescue_pct` (on `score_col`) and `viability_pct` per plate; plates lacking usable controls get
    NaN rescue."""
    if PLATE not in wells or score_col not in wells:
        raise FibroclassError(f"well table needs columns {PLATE} and {score_col}")
    wells = wells.reset_index(drop=True).copy()
    stats = plate_controls(wells, controls, score_col)
    score = wells[score_col].to_numpy(float)
    nuclei = wells[NUCLEI_COUNT].to_numpy(float) if NUCLEI_COUNT in wells else np.full(len(wells), np.nan)
    rescue = np.full(len(wells), np.nan)
    viability = np.full(len(wells), np.nan)
    for plate, idx in wells.groupby(PLATE, sort=False).indices.items():
        pc = stats[str(plate)]
        if pc.usable:
            rescue[idx] = 100.0 * (pc.disease.mean - score[idx]) / (pc.disease.mean - pc.healthy.mean)
        if np.isfinite(pc.disease_nuclei_mean) and pc.disease_nuclei_mean > 0:
            viability[idx] = 100.0 * nuclei[idx] / pc.disease_nuclei_mean
    wells[RESCUE_PCT] = rescue
    wells[VIABILITY_PCT] = viability
    return wells, stats


# -- steps ------------------------------------------------------------------------------------------------
def control_roles(wells: pd.DataFrame, controls: Mapping[str, str]) -> pd.Series:
    """`healthy` / `disease` for the wells matching the config's control queries, else the well's role."""
    base = wells[ROLE].astype(str) if ROLE in wells else pd.Series("", index=wells.index)
    roles = pd.Series(np.where(base.isin([ROLE_HEALTHY, ROLE_DISEASE]), "", base), index=wells.index)
    roles[query_mask(wells, controls["healthy"], "healthy")] = ROLE_HEALTHY
    roles[query_mask(wells, controls["disease"], "disease")] = ROLE_DISEASE
    return roles
