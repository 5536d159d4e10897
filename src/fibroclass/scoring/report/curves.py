"""Interactive dose-response panels: one figure per compound with its wells (hover: plate, well, dose,
rescue, viability, flags), the 4PL fit with its bootstrap 95 % band, the EC50 with its CI and viability;
`readout_traces` adds a secondary readout (rescue of IL-6, ...) to the same axes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fibroclass.schema import (
    COMPOUND,
    CONC,
    FLAGS,
    PLATE,
    RESCUE_PCT,
    ROLE,
    ROLE_REFERENCE,
    ROLE_TREATMENT,
    VIABILITY_PCT,
    WELL,
)
from fibroclass.scoring.compounds.doseresponse import Fit4PL, predict_4pl
from fibroclass.scoring.report.figures import call_color, dom_id, esc, figure_div, note, num
from fibroclass.scoring.report.plots import _ci_band

VIABLE_MIN_PCT = 70.0


def dose_grid(conc: np.ndarray) -> np.ndarray:
    """Concentrations to draw curves at: the tested range ± 0.3 decades (log spaced)."""
    pos = conc[np.isfinite(conc) & (conc > 0)]
    lo, hi = (float(pos.min()), float(pos.max())) if pos.size else (0.01, 10.0)
    return np.logspace(math.log10(lo) - 0.3, math.log10(hi) + 0.3, 90)


def _well_text(sub: pd.DataFrame, value_col: str, label: str) -> list[str]:
    out = []
    for rec in sub.to_dict("records"):
        flags = str(rec.get(FLAGS, "") or "")
        out.append(
            f"<b>{esc(rec.get(PLATE, ''))} {esc(rec.get(WELL, ''))}</b><br>{num(rec.get(CONC), '.3g', ' µM')}<br>"
            f"{label} {num(rec.get(value_col), '.0f', '%')} · viability {num(rec.get(VIABILITY_PCT), '.0f', '%')}"
            + (f"<br>flags: {esc(flags)}" if flags and flags != "nan" else "")
        )
    return out


def fit_traces(
    fit: Fit4PL | None, x: np.ndarray, color: str, name: str, group: str, dash: str = "solid"
) -> list[go.Scatter]:
    """The 4PL curve and its bootstrap band (nothing for a flat or failed fit)."""
    if fit is None or not fit.has_curve or fit.flat:
        return []
    traces = []
    band = _ci_band(fit, x)
    if band is not None:
        traces.append(go.Scatter(x=x, y=band[1], mode="lines", line={"width": 0}, hoverinfo="skip",
                                 legendgroup=group, showlegend=False))  # fmt: skip
        traces.append(go.Scatter(x=x, y=band[0], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_alpha(color, 0.16), name=f"{name} 95% band", hoverinfo="skip",
                                 legendgroup=group))  # fmt: skip
    traces.append(
        go.Scatter(
            x=x, y=predict_4pl(x, fit), mode="lines", line={"color": color, "width": 2, "dash": dash},
            name=f"{name} 4PL", legendgroup=group,
            hovertemplate=f"{esc(name)} fit<br>%{{x:.3g}} µM: %{{y:.0f}}%<extra></extra>",
        )
    )  # fmt: skip
    return traces


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"


def readout_traces(
    sub: pd.DataFrame,
    col: str,
    fit: Fit4PL | None,
    x: np.ndarray,
    color: str,
    name: str,
    symbol: str = "diamond",
    dash: str = "dash",
    viable: np.ndarray | None = None,
) -> list[go.Scatter]:
    """Points (wells; hollow where `viable` is False) and 4PL of one response column of a compound's wells."""
    vals = sub[col].to_numpy(float)
    ok = np.isfinite(vals)
    if not ok.any():
        return []
    viable = np.ones(len(sub), bool) if viable is None else np.asarray(viable, bool)
    fill = np.where(viable, color, "white")[ok].tolist()
    pts = go.Scatter(
        x=sub[CONC][ok], y=vals[ok], mode="markers", name=name, legendgroup=name,
        marker={"color": fill, "symbol": symbol, "size": 7, "line": {"width": 1.2, "color": color}},
        text=[t for t, k in zip(_well_text(sub, col, name), ok, strict=True) if k],
        hovertemplate="%{text}<extra></extra>",
    )  # fmt: skip
    return [pts, *fit_traces(fit, x, color, name, name, dash=dash)]


def compound_figure(
    name: str,
    sub: pd.DataFrame,
    fit: Fit4PL | None,
    call: str,
    extra: Sequence[tuple[str, Fit4PL | None, str, str]] = (),
    viability_min_pct: float = VIABLE_MIN_PCT,
) -> go.Figure:
    """One compound: rescue wells (hollow where the dose is not viable), viability, fit, band, EC50 + CI;
    `extra`: (column, fit, color, label) of other responses drawn on the same axes."""
    conc = sub[CONC].to_numpy(float)
    x = dose_grid(conc)
    color = call_color(call)
    rescue = sub[RESCUE_PCT].to_numpy(float)
    via = sub[VIABILITY_PCT].to_numpy(float) if VIABILITY_PCT in sub else np.full(len(sub), np.nan)
    viable = ~(via < viability_min_pct)
    text = _well_text(sub, RESCUE_PCT, "rescue")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=conc, y=via, mode="markers", name="viability %", marker={"symbol": "triangle-up", "color": "#969696", "size": 6},
                             text=text, hovertemplate="%{text}<extra>viability</extra>"))  # fmt: skip
    for mask, label, fill in ((viable, "rescue %", color), (~viable, "rescue % (not viable)", "white")):
        if mask.any():
            fig.add_trace(go.Scatter(
                x=conc[mask], y=rescue[mask], mode="markers", name=label, legendgroup="rescue",
                marker={"color": fill, "size": 8, "line": {"color": color, "width": 1.5}},
                text=[t for t, k in zip(text, mask, strict=True) if k], hovertemplate="%{text}<extra></extra>",
            ))  # fmt: skip
    for tr in fit_traces(fit, x, color, "rescue", "rescue"):
        fig.add_trace(tr)
    for col, efit, ecolor, label in extra:
        for tr in readout_traces(sub, col, efit, x, ecolor, label):
            fig.add_trace(tr)
    shapes = [
        {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y, "line": {"color": c, "width": 1, "dash": "dot"}}
        for y, c in ((0, "#d73027"), (100, "#1a9850"))
    ]  # fmt: skip
    ec50 = "n/a"
    if fit is not None:
        ec50 = fit.ec50_label()
        if math.isfinite(fit.ec50_ci_low_uM):
            ec50 += f" ({fit.ec50_ci_low_uM:.3g}–{fit.ec50_ci_high_uM:.3g})"
        if fit.has_curve and not fit.flat and math.isfinite(fit.ec50_uM):
            shapes.append({"type": "line", "yref": "paper", "x0": fit.ec50_uM, "x1": fit.ec50_uM, "y0": 0, "y1": 1,
                           "line": {"color": color, "width": 1, "dash": "dash"}})  # fmt: skip
            if math.isfinite(fit.ec50_ci_low_uM):
                shapes.append({"type": "rect", "yref": "paper", "x0": fit.ec50_ci_low_uM, "x1": fit.ec50_ci_high_uM,
                               "y0": 0, "y1": 1, "fillcolor": _alpha(color, 0.08), "line": {"width": 0}})  # fmt: skip
    shown = np.concatenate([rescue, via, *[sub[c].to_numpy(float) for c, *_ in extra]])
    shown = shown[np.isfinite(shown)]
    top = min(max(140.0, float(shown.max()) + 10) if shown.size else 140.0, 300.0)
    bottom = max(min(-40.0, float(shown.min()) - 10) if shown.size else -40.0, -200.0)
    fig.update_layout(
        title={"text": f"<b>{esc(name)}</b> — {esc(call or 'n/a')}<br><span style='font-size:10px'>EC50 {esc(ec50)}</span>",
               "font": {"color": color, "size": 12}, "x": 0.02, "xanchor": "left"},
        height=330, margin={"l": 45, "r": 10, "t": 52, "b": 40}, shapes=shapes, hovermode="closest",
        xaxis={"type": "log", "title": {"text": "concentration (µM)"}, "range": [math.log10(x[0]), math.log10(x[-1])]},
        yaxis={"title": {"text": "%"}, "range": [bottom, top]},
        legend={"orientation": "h", "y": -0.22, "font": {"size": 9}},
        showlegend=False,
    )  # fmt: skip
    return fig


def treated_wells(wells: pd.DataFrame, compounds: pd.DataFrame) -> pd.DataFrame:
    """Treatment/reference wells with a positive dose, of compounds in compounds.csv."""
    mask = (
        wells[ROLE].isin([ROLE_TREATMENT, ROLE_REFERENCE])
        if ROLE in wells
        else pd.Series(True, index=wells.index)
    )
    treated = wells[mask & (pd.to_numeric(wells[CONC], errors="coerce") > 0)]
    if COMPOUND in compounds and len(compounds):
        treated = treated[treated[COMPOUND].astype(str).isin(compounds[COMPOUND].astype(str))]
    return treated


def dose_response_section(
    wells: pd.DataFrame,
    compounds: pd.DataFrame,
    fits: Mapping[str, Fit4PL],
    viability_min_pct: float = VIABLE_MIN_PCT,
) -> str:
    """One interactive panel per compound, in compounds.csv order (legend: click the first panel's)."""
    treated = treated_wells(wells, compounds)
    if treated.empty or RESCUE_PCT not in treated:
        return note("No treated wells.")
    calls = (
        dict(zip(compounds[COMPOUND].astype(str), compounds["call"].astype(str), strict=True))
        if "call" in compounds
        else {}
    )
    names = [
        n
        for n in (compounds[COMPOUND].astype(str) if COMPOUND in compounds else [])
        if n in set(treated[COMPOUND].astype(str))
    ]
    divs = []
    for i, name in enumerate(names or sorted(treated[COMPOUND].astype(str).unique())):
        sub = treated[treated[COMPOUND].astype(str) == name].sort_values(CONC)
        fig = compound_figure(
            name, sub, fits.get(name), calls.get(name, ""), viability_min_pct=viability_min_pct
        )
        if i == 0:
            fig.update_layout(showlegend=True, height=380)
        divs.append(figure_div(fig, dom_id("dr", name), "fc-dr"))
    text = (
        "Rescue % per well (filled: viable dose; hollow: viability below "
        f"{viability_min_pct:g}%), viability % (grey triangles), 4PL fit with its bootstrap 95% band, EC50 "
        "(dashed) and its CI (shaded). Hover a point for its well; drag to zoom, double-click to reset."
    )
    return note(text) + f'<div class="fc-grid">{"".join(divs)}</div>'


__all__ = [
    "compound_figure",
    "dose_grid",
    "dose_response_section",
    "fit_traces",
    "readout_traces",
    "treated_wells",
]
