"""Organization agreement per plate: the actin-organization co-readout normalized to the controls like rescue
(`org_rescue_pct`), its rank agreement with the CNN rescue, and per-well discordance (`org_discordance_z`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fibroclass.measure.organization import ORG_ORIENTATION_DEG, ORG_PREFIX
from fibroclass.schema import PLATE, RESCUE_PCT, ROLE_DISEASE, ROLE_HEALTHY
from fibroclass.scoring.config import ReadoutSettings

ORG_RESCUE_PCT = "org_rescue_pct"  # well: the organization feature normalized like rescue_pct
ORG_DISCORDANCE_Z = "org_discordance_z"  # well: (CNN rescue − organization rescue) in control-spread units
ORG_CONFIRMS = "org_confirms"  # well: the organization readout confirms the CNN rescue
FLAG_ORG_DISAGREE = "org_disagree"  # well flag: |org_discordance_z| ≥ organization.disagree_z


def _robust(x: np.ndarray, floor: float) -> tuple[float, float]:
    """(median, max(1.4826·MAD, floor)) of the finite values (NaN median when none)."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, floor
    med = float(np.median(x))
    return med, max(1.4826 * float(np.median(np.abs(x - med))), floor)


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 4 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def organization_agreement(
    wells: pd.DataFrame, roles: pd.Series, settings: ReadoutSettings
) -> tuple[pd.DataFrame, dict[str, dict], list[str]]:
    """`org_rescue_pct`, `org_discordance_z`, `org_confirms` per well; per-plate summary and warnings.

    Summary per plate: `feature`, `separation_sd` (controls apart in pooled SDs), `rho_rescue` (Spearman
    across wells, CNN vs organization rescue), `agree` (ρ ≥ `min_rho`), `n_disagree` (wells flagged) and
    `rho_disease_score` (well disease score vs every `org_*` column).
    """
    p = settings.organization
    z_min = settings.offtarget.z_min
    wells = wells.copy()
    org_rescue = np.full(len(wells), np.nan)
    disc = np.full(len(wells), np.nan)
    confirms = np.zeros(len(wells), dtype=bool)
    summary: dict[str, dict] = {}
    warnings: list[str] = []
    if p.feature not in wells:
        wells[ORG_RESCUE_PCT], wells[ORG_DISCORDANCE_Z], wells[ORG_CONFIRMS] = org_rescue, disc, confirms
        return wells, summary, warnings
    skip = (ORG_RESCUE_PCT, ORG_ORIENTATION_DEG)  # an axial angle has no rank order
    org_cols = [c for c in wells.columns if c.startswith(ORG_PREFIX) and c not in skip]
    value = wells[p.feature].to_numpy(float)
    rescue = wells[RESCUE_PCT].to_numpy(float) if RESCUE_PCT in wells else np.full(len(wells), np.nan)
    score = wells["disease_score"].to_numpy(float) if "disease_score" in wells else rescue
    for plate, idx in wells.groupby(PLATE, sort=False).indices.items():
        role = roles.iloc[idx].to_numpy()
        entry: dict[str, Any] = {"feature": p.feature, "rho_rescue": math.nan, "agree": None, "n_disagree": 0}
        entry["rho_disease_score"] = {
            c: _rank_corr(score[idx], wells[c].to_numpy(float)[idx]) for c in org_cols
        }
        summary[str(plate)] = entry
        h, d = value[idx][role == ROLE_HEALTHY], value[idx][role == ROLE_DISEASE]
        h, d = h[np.isfinite(h)], d[np.isfinite(d)]
        if len(h) < 2 or len(d) < 2:
            warnings.append(
                f"plate {plate}: too few control wells with {p.feature} for the organization readout"
            )
            continue
        gap = float(h.mean() - d.mean())
        pooled = math.sqrt((h.var(ddof=1) + d.var(ddof=1)) / 2.0)
        entry["separation_sd"] = abs(gap) / pooled if pooled > 0 else math.inf
        if not entry["separation_sd"] >= p.min_separation:
            warnings.append(
                f"plate {plate}: {p.feature} does not separate the controls "
                f"({entry['separation_sd']:.1f} SD < {p.min_separation:g}); no organization agreement"
            )
            continue
        org = 100.0 * (value[idx] - d.mean()) / gap
        org_rescue[idx] = org
        diff = rescue[idx] - org
        ctrl = np.isin(role, [ROLE_HEALTHY, ROLE_DISEASE])
        med, spread = _robust(diff[ctrl], p.min_spread_pct)
        disc[idx] = (diff - med) / spread
        _, d_spread = _robust(org[role == ROLE_DISEASE], p.min_spread_pct)
        confirms[idx] = (org >= z_min * d_spread) & (np.abs(disc[idx]) < p.disagree_z)
        rho = _rank_corr(rescue[idx], org)
        entry["rho_rescue"], entry["agree"] = rho, not (math.isfinite(rho) and rho < p.min_rho)
        if not entry["agree"]:
            warnings.append(
                f"plate {plate}: CNN rescue and {p.feature} rescue disagree across wells "
                f"(Spearman ρ={rho:.2f} < {p.min_rho:g})"
            )
    wells[ORG_RESCUE_PCT], wells[ORG_DISCORDANCE_Z], wells[ORG_CONFIRMS] = org_rescue, disc, confirms
    disagree = np.abs(np.nan_to_num(disc)) >= p.disagree_z
    for plate, n in pd.Series(disagree).groupby(wells[PLATE].astype(str).to_numpy()).sum().items():
        if plate in summary:
            summary[plate]["n_disagree"] = int(n)
    return wells, summary, warnings
