"""On-/off-target decomposition of each well's shift in the classifier's embedding space.

Per plate, the disease axis runs from the disease-control centroid c_d to the healthy-control centroid
c_h. A well's shift δ = e − c_d splits into
  - the component along the axis, reported as `on_target_pct` = 100·(δ·u)/|c_h − c_d| (0 = disease
    controls, 100 = healthy controls), and
  - the orthogonal residual r = δ − (δ·u)u, whose norm is compared with the residual norms of the
    control wells themselves (each control around its own centroid, leave-one-out corrected):
    `offtarget_z` = (|r| − median_ctrl) / robust SD of the control norms, and `offtarget_ratio` =
    |r| / median_ctrl.
A compound that changes morphology without moving along the axis has a large `offtarget_z` and an
`on_target_pct` near 0; a true rescue moves along the axis with `offtarget_z` near 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.schema import OFFTARGET, PLATE, ROLE_DISEASE, ROLE_HEALTHY
from fibroclass.scoring.config import ReadoutSettings
from fibroclass.scoring.wells.organization import ORG_CONFIRMS, ORG_DISCORDANCE_Z

ON_TARGET_PCT = "on_target_pct"
OFFTARGET_Z = "offtarget_z"
OFFTARGET_RATIO = "offtarget_ratio"
ORTH_NORM = "orth_norm"
AXIS_LENGTH = "axis_length"
OUTPUT_COLUMNS = (ON_TARGET_PCT, ORTH_NORM, OFFTARGET_Z, OFFTARGET_RATIO, AXIS_LENGTH, OFFTARGET)


def _control_residual_norms(emb: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Orthogonal residual norms of control wells around their own centroid, leave-one-out corrected."""
    n = len(emb)
    if n < 2:
        return np.empty(0)
    dev = emb - emb.mean(axis=0)
    dev -= np.outer(dev @ u, u)
    # A well's deviation from a centroid that includes it shrinks by (n-1)/n in expectation.
    return np.linalg.norm(dev, axis=1) * n / (n - 1)


def disease_axis_decomposition(
    well_emb: np.ndarray,
    roles: pd.Series,
    plate: pd.Series,
    offtarget_z_min: float = 3.0,
    min_spread_frac: float = 0.05,
) -> pd.DataFrame:
    """Per-well `on_target_pct`, `orth_norm`, `offtarget_z`, `offtarget_ratio`, `axis_length`, `offtarget`.

    `well_emb` is (W, D), row-aligned with `roles` and `plate` (the output keeps `roles`' index). Wells
    with non-finite embeddings get NaN and `offtarget` False. The robust control spread is floored at
    `min_spread_frac` × the median control norm so a handful of near-identical controls cannot make
    every well look off-target.
    """
    emb = np.asarray(well_emb, dtype=float)
    if emb.ndim != 2 or emb.shape[0] != len(roles) or len(plate) != len(roles):
        raise FibroclassError(
            f"embeddings {emb.shape} do not match {len(roles)} roles and {len(plate)} plate labels"
        )
    cols = {c: np.full(len(roles), np.nan) for c in OUTPUT_COLUMNS[:-1]}
    role = roles.astype(str).to_numpy()
    plates = plate.astype(str).to_numpy()
    finite = np.isfinite(emb).all(axis=1)
    for name in pd.unique(plates):
        in_plate = plates == name
        ctrl = {r: emb[in_plate & finite & (role == r)] for r in (ROLE_DISEASE, ROLE_HEALTHY)}
        for r, e in ctrl.items():
            if len(e) < 2:
                raise FibroclassError(
                    f"plate {name}: need >= 2 '{r}' control wells with embeddings, found {len(e)} (column role)"
                )
        c_d, c_h = ctrl[ROLE_DISEASE].mean(axis=0), ctrl[ROLE_HEALTHY].mean(axis=0)
        axis = c_h - c_d
        length = float(np.linalg.norm(axis))
        if length == 0:
            raise FibroclassError(f"plate {name}: healthy and disease controls have identical embeddings")
        u = axis / length
        norms = np.concatenate([_control_residual_norms(e, u) for e in ctrl.values()])
        med = float(np.median(norms))
        mad = 1.4826 * float(np.median(np.abs(norms - med)))
        spread = max(mad, min_spread_frac * med, 1e-12)

        rows = in_plate & finite
        delta = emb[rows] - c_d
        along = delta @ u
        orth = np.linalg.norm(delta - np.outer(along, u), axis=1)
        cols[ON_TARGET_PCT][rows] = 100.0 * along / length
        cols[ORTH_NORM][rows] = orth
        cols[OFFTARGET_Z][rows] = (orth - med) / spread
        cols[OFFTARGET_RATIO][rows] = orth / med if med > 0 else np.nan
        cols[AXIS_LENGTH][rows] = length
    out = pd.DataFrame(cols, index=roles.index)
    out[OFFTARGET] = np.nan_to_num(out[OFFTARGET_Z].to_numpy(), nan=-np.inf) > offtarget_z_min
    return out


OFFTARGET_EVIDENCE_Z = "offtarget_evidence_z"  # well: off-target evidence used by the calls
FLAG_OFFTARGET = "off_target"  # well flag: offtarget_evidence_z ≥ offtarget.z_min


def add_offtarget(
    wells: pd.DataFrame, well_emb: np.ndarray, roles: pd.Series, settings: ReadoutSettings
) -> tuple[pd.DataFrame, list[str]]:
    """`on_target_pct` and `offtarget_z` per well, plate by plate (NaN, with a warning, for a plate whose
    controls cannot define the disease axis or a model without embeddings)."""
    wells = wells.copy()
    on, z = np.full(len(wells), np.nan), np.full(len(wells), np.nan)
    emb = np.asarray(well_emb, dtype=float)
    p = settings.offtarget
    warnings = []
    for plate, idx in wells.groupby(PLATE, sort=False).indices.items():
        if emb.ndim != 2 or emb.shape[1] == 0:
            warnings.append(f"plate {plate}: no off-target readout (the model gives no embedding)")
            continue
        try:
            dec = disease_axis_decomposition(
                emb[idx], roles.iloc[idx], wells[PLATE].iloc[idx], p.z_min, p.min_spread_frac
            )
        except FibroclassError as exc:
            warnings.append(f"no off-target readout: {exc}")
            continue
        on[idx], z[idx] = dec[ON_TARGET_PCT].to_numpy(), dec[OFFTARGET_Z].to_numpy()
    wells[ON_TARGET_PCT], wells[OFFTARGET_Z] = on, z
    return wells, warnings


def offtarget_evidence(wells: pd.DataFrame, settings: ReadoutSettings) -> pd.DataFrame:
    """`offtarget_evidence_z` (what the calls use) and the boolean `offtarget` per well (module docstring, 3)."""
    wells = wells.copy()
    nan = np.full(len(wells), np.nan)
    emb = wells[OFFTARGET_Z].to_numpy(float) if OFFTARGET_Z in wells else nan
    disc = wells[ORG_DISCORDANCE_Z].to_numpy(float) if ORG_DISCORDANCE_Z in wells else nan
    evidence = np.fmax(emb, disc)  # NaN only where both are; negative discordance is no evidence
    if settings.organization.confirm_offtarget and ORG_CONFIRMS in wells:
        evidence = np.where(wells[ORG_CONFIRMS].to_numpy(bool), disc, evidence)
    wells[OFFTARGET_EVIDENCE_Z] = evidence
    wells[OFFTARGET] = np.nan_to_num(evidence, nan=-np.inf) >= settings.offtarget.z_min
    return wells
