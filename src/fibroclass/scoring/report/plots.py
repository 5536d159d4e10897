"""Figures of the screening report (matplotlib, Agg): plate heatmaps, dose-response panels, control
distributions and field montages. Every function returns a Figure; `report.py` embeds them."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.patheffects as pe  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fibroclass.schema import (  # noqa: E402
    COMPOUND,
    CONC,
    DISEASE_SCORE,
    RESCUE_PCT,
    ROLE,
    ROLE_DISEASE,
    ROLE_HEALTHY,
    ROLE_REFERENCE,
    VIABILITY_PCT,
    WELL,
)
from fibroclass.scoring.compounds.doseresponse import Fit4PL, predict_4pl  # noqa: E402

CALL_COLORS = {
    "hit": "#1a9850",
    "inactive": "#737373",
    "toxic": "#d73027",
    "off_target": "#7b3294",
    "inconclusive": "#fdae61",
}
ROLE_MARKS = {ROLE_HEALTHY: "H", ROLE_DISEASE: "D", ROLE_REFERENCE: "R"}
ROLE_COLORS = {ROLE_HEALTHY: "#1a9850", ROLE_DISEASE: "#d73027", ROLE_REFERENCE: "#4575b4"}
PLATE_SHAPES = ((8, 12), (16, 24), (32, 48))  # 96, 384, 1536 wells
_WELL_RE = re.compile(r"^([A-Za-z]{1,2})(\d{1,2})$")


def well_position(well: str) -> tuple[int, int]:
    """0-based (row, column) of `A01`-style names; rows A..Z then AA..AF (1536-well plates)."""
    m = _WELL_RE.match(str(well).strip())
    if not m:
        raise ValueError(f"not a well name: {well!r}")
    letters, col = m.group(1).upper(), int(m.group(2))
    row = ord(letters[-1]) - 65 if len(letters) == 1 else 26 + ord(letters[1]) - 65
    return row, col - 1


def plate_shape(wells: pd.Series) -> tuple[int, int]:
    """Smallest standard plate (96/384/1536) holding every well."""
    pos = np.array([well_position(w) for w in wells]) if len(wells) else np.zeros((1, 2), int)
    rows, cols = pos[:, 0].max() + 1, pos[:, 1].max() + 1
    for shape in PLATE_SHAPES:
        if rows <= shape[0] and cols <= shape[1]:
            return shape
    return int(rows), int(cols)


def row_label(i: int) -> str:
    return chr(65 + i) if i < 26 else "A" + chr(65 + i - 26)


def plate_heatmap(
    plate_wells: pd.DataFrame,
    value_col: str,
    title: str,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    label: str = "",
) -> Figure:
    """One plate in its real geometry, wells colored by `value_col`; controls lettered H/D/R."""
    shape = plate_shape(plate_wells[WELL])
    grid = np.full(shape, np.nan)
    for well, value in zip(plate_wells[WELL], plate_wells[value_col], strict=True):
        r, c = well_position(well)
        grid[r, c] = value
    scale = 0.42 if shape[1] <= 12 else 0.28 if shape[1] <= 24 else 0.17
    fig, ax = plt.subplots(figsize=(shape[1] * scale + 1.6, shape[0] * scale + 0.9))
    cm = plt.get_cmap(cmap).with_extremes(bad="#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cm, vmin=vmin, vmax=vmax, aspect="equal")
    if ROLE in plate_wells and shape[1] <= 24:
        for well, role in zip(plate_wells[WELL], plate_wells[ROLE], strict=True):
            if role in ROLE_MARKS:
                r, c = well_position(well)
                ax.text(
                    c,
                    r,
                    ROLE_MARKS[role],
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black",
                    weight="bold",
                    path_effects=[pe.withStroke(linewidth=2, foreground="white")],
                )
    step = 1 if shape[1] <= 24 else 4
    ax.set_xticks(range(0, shape[1], step), [str(i + 1) for i in range(0, shape[1], step)], fontsize=7)
    ax.set_yticks(range(0, shape[0], step), [row_label(i) for i in range(0, shape[0], step)], fontsize=7)
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label=label)
    fig.tight_layout()
    return fig


def _ci_band(fit: Fit4PL, x: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray] | None:
    if fit.boot_params.shape[0] < 10:
        return None
    curves = np.array([predict_4pl(x, p) for p in fit.boot_params])
    a = (1 - level) / 2
    return np.nanquantile(curves, a, axis=0), np.nanquantile(curves, 1 - a, axis=0)


def dose_response_panel(
    ax: plt.Axes,
    wells: pd.DataFrame,
    fit: Fit4PL | None,
    call: str = "",
    viability_min_pct: float = 70.0,
) -> None:
    """Rescue per well (points; hollow where viability is unacceptable), viability (grey), the 4PL fit,
    its bootstrap 95% band and the EC50 with its CI, on a log dose axis."""
    name = str(wells[COMPOUND].iloc[0]) if len(wells) else "?"
    conc = wells[CONC].to_numpy(float)
    rescue = wells[RESCUE_PCT].to_numpy(float)
    viable = np.ones(len(wells), bool)
    if VIABILITY_PCT in wells:
        via = wells[VIABILITY_PCT].to_numpy(float)
        viable = ~(via < viability_min_pct)
        ax.scatter(conc, via, marker="^", s=14, color="#969696", alpha=0.8, label="viability %", zorder=2)
    color = CALL_COLORS.get(call, "#2171b5")
    ax.scatter(conc[viable], rescue[viable], s=18, color=color, label="rescue %", zorder=3)
    ax.scatter(conc[~viable], rescue[~viable], s=18, facecolors="none", edgecolors=color, zorder=3)
    lo, hi = (conc[conc > 0].min(), conc.max()) if (conc > 0).any() else (0.01, 10.0)
    x = np.logspace(math.log10(lo) - 0.3, math.log10(hi) + 0.3, 120)
    if fit is not None and fit.has_curve and not fit.flat:
        band = _ci_band(fit, x)
        if band is not None:
            ax.fill_between(x, band[0], band[1], color=color, alpha=0.15, lw=0, label="95% band")
        ax.plot(x, predict_4pl(x, fit), color=color, lw=1.8, label="4PL fit", zorder=4)
        if math.isfinite(fit.ec50_uM):
            ax.axvline(fit.ec50_uM, color=color, ls="--", lw=1)
            if math.isfinite(fit.ec50_ci_low_uM):
                ax.axvspan(fit.ec50_ci_low_uM, fit.ec50_ci_high_uM, color=color, alpha=0.08)
    ax.axhline(0, color="#d73027", lw=0.6, ls=":")
    ax.axhline(100, color="#1a9850", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(float(x[0]), float(x[-1]))  # positive limits even when no point is finite (all wells failed)
    shown = np.concatenate([rescue, wells[VIABILITY_PCT].to_numpy(float) if VIABILITY_PCT in wells else []])
    shown = shown[np.isfinite(shown)]
    top = min(max(140.0, float(shown.max()) + 10) if shown.size else 140.0, 300.0)
    bottom = max(min(-40.0, float(shown.min()) - 10) if shown.size else -40.0, -200.0)
    ax.set_ylim(bottom, top)
    ax.set_xlabel("concentration (µM)", fontsize=8)
    ax.set_ylabel("%", fontsize=8)
    ax.tick_params(labelsize=7)
    ec50 = fit.ec50_label() if fit is not None else "n/a"
    ax.set_title(f"{name} — {call or 'n/a'}\nEC50 {ec50}", fontsize=9, color=color)


def dose_response_grid(
    wells: pd.DataFrame,
    fits: Mapping[str, Fit4PL],
    calls: Mapping[str, str],
    viability_min_pct: float = 70.0,
    ncols: int = 4,
) -> Figure:
    """One `dose_response_panel` per compound, in a grid."""
    names = sorted(wells[COMPOUND].astype(str).unique())
    n = max(len(names), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        sub = wells[wells[COMPOUND].astype(str) == name]
        dose_response_panel(ax, sub, fits.get(name), calls.get(name, ""), viability_min_pct)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if names:
        axes.flat[0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def control_distributions(wells: pd.DataFrame, plate_col: str, plate_qc: Mapping[str, Mapping]) -> Figure:
    """Per plate: control well disease scores (healthy / disease / reference) with Z′ in the title."""
    plates = sorted(wells[plate_col].astype(str).unique())
    n = max(len(plates), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    roles = (ROLE_HEALTHY, ROLE_DISEASE, ROLE_REFERENCE)
    rng = np.random.default_rng(0)
    for ax, plate in zip(axes.flat, plates, strict=False):
        sub = wells[wells[plate_col].astype(str) == plate]
        for i, role in enumerate(roles):
            vals = sub.loc[sub[ROLE] == role, DISEASE_SCORE].dropna().to_numpy(float)
            if len(vals) == 0:
                continue
            ax.boxplot(vals, positions=[i], widths=0.5, showfliers=False)
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(vals)), vals, s=12, color=ROLE_COLORS[role], zorder=3)
        q = plate_qc.get(plate, {})
        zp = q.get("z_prime")
        zp_txt = f"{zp:.2f}" if isinstance(zp, int | float) and math.isfinite(zp) else "n/a"
        verdict = "PASS" if q.get("pass") else "FAIL"
        ax.set_xticks(range(len(roles)), roles, fontsize=8)
        ax.set_ylabel("well disease score", fontsize=8)
        ax.set_title(
            f"{plate}: Z′ {zp_txt} ({verdict})", fontsize=9, color="#1a9850" if q.get("pass") else "#d73027"
        )
    fig.tight_layout()
    return fig


def stretch_limits(images: Mapping[str, np.ndarray], low: float = 1.0, high: float = 99.5) -> np.ndarray:
    """Per-channel (lo, hi) shared by a set of fields: median over fields of their own percentiles,
    so an empty field stays dark instead of having its noise stretched to full contrast."""
    per = np.array(
        [
            [np.percentile(np.nan_to_num(plane), [low, high]) for plane in np.asarray(img)[:2]]
            for img in images.values()
        ]
    )
    return np.median(per, axis=0)  # (C, 2)


def composite(field: np.ndarray, limits: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W) field → RGB: actin (channel 0) green, nuclei (channel 1) magenta, contrast-stretched
    to `limits` (per channel (lo, hi); default: the field's own 1st/99.5th percentiles)."""
    field = np.nan_to_num(np.asarray(field, dtype=np.float32))
    if limits is None:
        limits = stretch_limits({"": field})
    chans = [
        np.clip((plane - lo) / max(hi - lo, 1e-9), 0, 1)
        for plane, (lo, hi) in zip(field[:2], limits, strict=False)
    ]
    actin = chans[0]
    nuclei = chans[1] if len(chans) > 1 else np.zeros_like(actin)
    return np.stack([nuclei, actin, nuclei], axis=-1)


def montage(images: Mapping[str, np.ndarray], ncols: int = 4) -> Figure:
    """Labelled 2-channel composites (actin green, nuclei magenta) of representative fields, with one
    contrast stretch shared by all of them so brightness is comparable."""
    items = list(images.items())
    n = max(len(items), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    limits = stretch_limits(images) if items else None
    for ax, (label, img) in zip(axes.flat, items, strict=False):
        ax.imshow(composite(img, limits))
        ax.set_title(label, fontsize=8)
    fig.patch.set_facecolor("white")
    fig.tight_layout()
    return fig
