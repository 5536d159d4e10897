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
from fibroclass.schema import ROLE_DISEASE, ROLE_HEALTHY

ON_TARGET_PCT = "on_target_pct"
OFFTARGET_Z = "offtarget_z"
OFFTARGET_RATIO = "offtarget_ratio"
ORTH_NORM = "orth_norm"
AXIS_LENGTH = "axis_length"
OFFTARGET = "offtarget"  # same name as schema.OFFTARGET: boolean call per well
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
