"""Replicate-plate concordance of a screen: the same compound × dose on different plates (or runs).

A *unit* is one plate of one run (`run/plate`). Per unit, the rescue of each compound × dose is the mean
over its replicate wells. For every pair of units sharing at least `MIN_SHARED` compound × dose points:
Spearman ρ (and Pearson r) between the two plates' rescues, and Bland-Altman statistics of their
differences (`bias` = mean of a − b, `sd_diff`, 95 % limits of agreement `bias ± 1.96·sd_diff`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from fibroclass.schema import COMPOUND, CONC, PLATE, RESCUE_PCT
from fibroclass.scoring.wells.normalize import query_mask

UNIT = "unit"
MIN_SHARED = 3
PAIR_COLUMNS = (
    "unit_a",
    "unit_b",
    "n_points",
    "spearman_rho",
    "pearson_r",
    "bias_pct",
    "sd_diff_pct",
    "loa_low_pct",
    "loa_high_pct",
    "pass_a",
    "pass_b",
)


def dose_means(wells: pd.DataFrame, unit_of: str, query: str, value: str = RESCUE_PCT) -> pd.DataFrame:
    """Mean `value` over replicate wells per plate × compound × dose of the wells matching `query`;
    columns unit, compound, concentration_uM, value, n_wells (`unit_of` prefixes the plate: `run/plate`)."""
    sel = wells[query_mask(wells, query, "compounds")] if len(wells) else wells
    sel = sel[np.isfinite(pd.to_numeric(sel[value], errors="coerce"))] if len(sel) else sel
    if sel.empty:
        return pd.DataFrame(columns=[UNIT, COMPOUND, CONC, value, "n_wells"])
    g = sel.assign(**{UNIT: unit_of + "/" + sel[PLATE].astype(str)}).groupby(
        [UNIT, COMPOUND, CONC], sort=True
    )
    out = g[value].mean().rename(value).to_frame()
    out["n_wells"] = g.size()
    return out.reset_index()


def pair_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Spearman ρ, Pearson r and Bland-Altman bias / SD / limits of agreement of paired values."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    rho = r = math.nan
    if n >= MIN_SHARED and np.ptp(a) > 0 and np.ptp(b) > 0:
        rho = float(stats.spearmanr(a, b).statistic)
        r = float(stats.pearsonr(a, b).statistic)
    d = a - b
    bias = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    return {
        "n_points": int(n),
        "spearman_rho": rho,
        "pearson_r": r,
        "bias_pct": bias,
        "sd_diff_pct": sd,
        "loa_low_pct": bias - 1.96 * sd,
        "loa_high_pct": bias + 1.96 * sd,
    }


def concordance(
    doses: pd.DataFrame, passed: dict[str, bool] | None = None, value: str = RESCUE_PCT
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs: one row per pair of units with ≥ MIN_SHARED shared points, PAIR_COLUMNS;
    points: unit_a, unit_b, compound, concentration_uM, a, b, mean, diff) from `dose_means` rows."""
    passed = passed or {}
    wide = doses.pivot_table(index=[COMPOUND, CONC], columns=UNIT, values=value, aggfunc="mean")
    pairs, points = [], []
    for ua, ub in itertools.combinations(list(wide.columns), 2):
        both = wide[[ua, ub]].dropna()
        if len(both) < MIN_SHARED:
            continue
        a, b = both[ua].to_numpy(float), both[ub].to_numpy(float)
        pairs.append(
            {
                "unit_a": ua,
                "unit_b": ub,
                **pair_stats(a, b),
                "pass_a": passed.get(ua),
                "pass_b": passed.get(ub),
            }
        )
        pts = both.reset_index().rename(columns={ua: "a", ub: "b"})
        pts.insert(0, "unit_b", ub)
        pts.insert(0, "unit_a", ua)
        points.append(pts.assign(mean=(pts["a"] + pts["b"]) / 2, diff=pts["a"] - pts["b"]))
    pair_df = pd.DataFrame(pairs, columns=list(PAIR_COLUMNS))
    cols = ["unit_a", "unit_b", COMPOUND, CONC, "a", "b", "mean", "diff"]
    point_df = pd.concat(points, ignore_index=True)[cols] if points else pd.DataFrame(columns=cols)
    return pair_df, point_df


__all__ = ["MIN_SHARED", "PAIR_COLUMNS", "UNIT", "concordance", "dose_means", "pair_stats"]
