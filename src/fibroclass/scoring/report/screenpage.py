"""`screen.html`: the interactive page of a screen over several score runs (report.screen builds the
numbers). Sections: `runs` (links to each run's report), `compounds`, `concordance` (replicate-plate
scatter and Bland-Altman), `plates` (Z′ and domain flags per plate over time)."""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fibroclass import __version__
from fibroclass.schema import COMPOUND, CONC
from fibroclass.scoring.report.figures import PALETTE, esc, figure_div, note, num
from fibroclass.scoring.report.interactive import write_page
from fibroclass.scoring.report.screen import Screen, safe_label
from fibroclass.scoring.report.tables import Column, sortable_table


def _rel(target: Path, page: Path) -> str:
    return Path(os.path.relpath(target.resolve(), page.parent.resolve())).as_posix()


def runs_section(screen: Screen, page: Path) -> str:
    items = []
    for run in screen.runs:
        n_pass = sum(bool(q.get("pass")) for q in run.plates.values())
        hits = int((run.compounds.get("call", pd.Series(dtype=str)) == "hit").sum())
        link = f'<a href="{esc(_rel(run.report, page))}">report.html</a>' if run.report else "no report.html"
        items.append(
            f"<li><b>{esc(run.label)}</b> ({esc(run.created or 'time unknown')}): {len(run.plates)} plate(s), "
            f"{n_pass} passed QC, {len(run.wells)} wells, {len(run.compounds)} compounds, {hits} hit(s) — {link} "
            f'<span class="note">{esc(run.path)}</span></li>'
        )
    return f'<ul class="fc-links">{"".join(items)}</ul>'


def compounds_section(screen: Screen) -> str:
    df = screen.compounds
    labels = [r.label for r in screen.runs]
    cols = [
        Column(COMPOUND, "compound"),
        Column("overall_call", "overall call", "call", title="pooled wells of all runs"),
    ]
    cols += [Column(f"call_{safe_label(lab)}", f"call {lab}", "call") for lab in labels]
    cols += [
        Column("calls_agree", "runs agree", "agree"),
        Column("n_runs", "runs", "num", ".0f"),
        Column("n_hit_runs", "hit in", "num", ".0f"),
        Column("ec50_uM", "pooled EC50 (µM)", "num"),
        Column("ec50_ci_low_uM", "CI low", "num"),
        Column("ec50_ci_high_uM", "CI high", "num"),
        Column("max_rescue_pct", "pooled max rescue %", "num", ".0f"),
    ]
    cols += [Column(f"ec50_uM_{safe_label(lab)}", f"EC50 {lab}", "num") for lab in labels]
    cols += [
        Column(f"max_rescue_pct_{safe_label(lab)}", f"max rescue {lab} %", "num", ".0f") for lab in labels
    ]
    for name, spec in screen.readouts.items():
        cols += [
            Column(f"{name}_max_rescue_pct", f"{spec.label} max rescue %", "num", ".0f"),
            Column(f"{name}_rho", f"ρ morphology vs {spec.label}", "num", ".2f"),
            Column(f"{name}_discordant", f"{spec.label} discordant", "bool"),
        ]
    cols.append(Column("overall_call_reason", "why (pooled)"))
    text = (
        "One row per compound: its call in every run and the <b>overall call</b> from the wells of all runs "
        "pooled (each plate normalized to its own controls; plates that failed QC left out). "
        "Also in <code>screen_compounds.csv</code>."
    )
    return note(text) + sortable_table(
        df.replace({np.nan: None}), cols, "fc-screen-compounds", filter_box=True
    )


def _colors(keys: list[str]) -> dict[str, str]:
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}


def scatter_figure(points: pd.DataFrame) -> go.Figure:
    """Rescue of the same compound × dose on plate a vs plate b, one trace per pair."""
    fig = go.Figure()
    pairs = list(dict.fromkeys(points["unit_a"] + " vs " + points["unit_b"]))
    colors = _colors(pairs)
    for (ua, ub), sub in points.groupby(["unit_a", "unit_b"], sort=False):
        key = f"{ua} vs {ub}"
        fig.add_trace(go.Scatter(
            x=sub["a"], y=sub["b"], mode="markers", name=key, marker={"color": colors[key], "size": 7, "opacity": 0.8},
            text=[f"<b>{esc(c)}</b> {d:.3g} µM" for c, d in zip(sub[COMPOUND], sub[CONC], strict=True)],
            hovertemplate="%{text}<br>" + esc(ua) + ": %{x:.0f}%<br>" + esc(ub) + ": %{y:.0f}%<extra></extra>",
        ))  # fmt: skip
    lo = float(np.nanmin(points[["a", "b"]].to_numpy(float))) - 10 if len(points) else -40
    hi = float(np.nanmax(points[["a", "b"]].to_numpy(float))) + 10 if len(points) else 140
    fig.add_shape(type="line", x0=lo, y0=lo, x1=hi, y1=hi, line={"color": "#bbb", "dash": "dash"})
    fig.update_layout(
        height=460, title={"text": "rescue % per compound × dose, plate a vs plate b (dashed: identity)", "font": {"size": 12}},
        xaxis={"title": {"text": "plate a rescue %"}}, yaxis={"title": {"text": "plate b rescue %"}, "scaleanchor": "x"},
        legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return fig


def bland_altman_figure(points: pd.DataFrame, pairs: pd.DataFrame) -> go.Figure:
    """Difference vs mean of paired rescues; bias and 95 % limits of agreement (over all pairs)."""
    fig = go.Figure()
    keys = list(dict.fromkeys(points["unit_a"] + " vs " + points["unit_b"]))
    colors = _colors(keys)
    for (ua, ub), sub in points.groupby(["unit_a", "unit_b"], sort=False):
        key = f"{ua} vs {ub}"
        fig.add_trace(go.Scatter(
            x=sub["mean"], y=sub["diff"], mode="markers", name=key, marker={"color": colors[key], "size": 7, "opacity": 0.8},
            text=[f"<b>{esc(c)}</b> {d:.3g} µM" for c, d in zip(sub[COMPOUND], sub[CONC], strict=True)],
            hovertemplate="%{text}<br>mean %{x:.0f}%<br>a − b %{y:.1f}%<extra></extra>",
        ))  # fmt: skip
    d = points["diff"].to_numpy(float)
    if len(d) > 1:
        bias, sd = float(d.mean()), float(d.std(ddof=1))
        lines = ((bias, "bias", "#333", "solid"), (bias - 1.96 * sd, "−1.96 SD", "#b2182b", "dash"),
                 (bias + 1.96 * sd, "+1.96 SD", "#b2182b", "dash"))  # fmt: skip
        for y, label, color, dash in lines:
            fig.add_hline(y=y, line={"color": color, "dash": dash, "width": 1},
                          annotation_text=f"{label} {y:.1f}", annotation_position="right")  # fmt: skip
    scope = "this pair" if len(pairs) == 1 else f"all {len(pairs)} pairs"
    fig.update_layout(
        height=460, title={"text": f"Bland-Altman: a − b vs mean (lines: {scope})", "font": {"size": 12}},
        xaxis={"title": {"text": "mean rescue % of the two plates"}}, yaxis={"title": {"text": "difference a − b (%)"}},
        legend={"orientation": "h", "y": -0.2}, margin={"r": 90},
    )  # fmt: skip
    return fig


def concordance_section(screen: Screen) -> str:
    pairs, points = screen.pairs, screen.points
    if pairs.empty:
        return note(
            "No two plates share at least 3 compound × dose points, so there is no replicate concordance to show."
        )
    cols = [
        Column("unit_a", "plate a"),
        Column("unit_b", "plate b"),
        Column("n_points", "compound × dose", "num", ".0f"),
        Column("spearman_rho", "Spearman ρ", "num", ".3f"),
        Column("pearson_r", "Pearson r", "num", ".3f"),
        Column("bias_pct", "bias a − b (%)", "num", ".1f"),
        Column("sd_diff_pct", "SD of differences", "num", ".1f"),
        Column("loa_low_pct", "LoA low", "num", ".1f"),
        Column("loa_high_pct", "LoA high", "num", ".1f"),
    ]
    text = (
        "Replicate plates: the mean rescue of each compound × dose on one plate against another (every pair "
        "of plates sharing ≥ 3 points). ρ: rank agreement; Bland-Altman: bias and 95% limits of agreement "
        "(bias ± 1.96 SD of the differences). Also in <code>screen_concordance.csv</code>."
    )
    figs = figure_div(scatter_figure(points), "fc-concordance-scatter", "fc-half") + figure_div(
        bland_altman_figure(points, pairs), "fc-bland-altman", "fc-half"
    )
    return (
        note(text)
        + sortable_table(pairs.replace({np.nan: None}), cols, "fc-pairs")
        + f'<div class="fc-row">{figs}</div>'
    )


def zprime_figure(plates: pd.DataFrame) -> go.Figure:
    """Z′ per plate in run order; failed plates red, plates flagged out of distribution ringed."""
    fig = go.Figure()
    hover = [
        f"<b>{esc(u)}</b><br>{esc(c or 'time unknown')}<br>Z′ {num(z, '.2f')} · SSMD {num(s, '.1f')}"
        + (f"<br>domain shift {num(ds, '.3g')} / {num(th, '.3g')}" if ds is not None and not _nan(ds) else "")
        + (f"<br>{esc(r)}" if r else "")
        for u, c, z, s, ds, th, r in zip(
            plates["unit"], plates["created"], plates["z_prime"], plates["ssmd"], plates["domain_shift_score"],
            plates["domain_shift_threshold"], plates["reasons"], strict=True,
        )
    ]  # fmt: skip
    colors = ["#1a9850" if p else "#d73027" for p in plates["pass"]]
    fig.add_trace(go.Scatter(
        x=plates["unit"], y=plates["z_prime"], mode="lines+markers", name="Z′", text=hover,
        line={"color": "#999", "width": 1}, marker={"color": colors, "size": 10}, hovertemplate="%{text}<extra></extra>",
    ))  # fmt: skip
    ood = plates["out_of_distribution"].fillna(False).astype(bool)
    if ood.any():
        fig.add_trace(go.Scatter(
            x=plates.loc[ood, "unit"], y=plates.loc[ood, "z_prime"], mode="markers", name="out of distribution",
            marker={"symbol": "circle-open", "size": 20, "color": "#7b3294", "line": {"width": 2.5}}, hoverinfo="skip",
        ))  # fmt: skip
    zmin = plates["z_prime_min"].dropna()
    if len(zmin):
        fig.add_hline(
            y=float(zmin.iloc[0]), line={"color": "#d73027", "dash": "dot"}, annotation_text="Z′ min"
        )
    if plates["domain_shift_score"].notna().any():
        fig.add_trace(go.Scatter(
            x=plates["unit"], y=plates["domain_shift_score"], mode="markers", yaxis="y2", name="domain shift",
            marker={"symbol": "diamond", "color": "#7b3294", "size": 8}, hovertemplate="domain shift %{y:.3g}<extra></extra>",
        ))  # fmt: skip
        fig.update_layout(
            yaxis2={"overlaying": "y", "side": "right", "title": {"text": "domain shift score", "standoff": 8},
                    "showgrid": False, "rangemode": "tozero"},
            margin={"r": 80},
        )  # fmt: skip
    fig.update_layout(
        height=380, title={"text": "Z′ per plate, in run order (green: passed, red: failed)", "font": {"size": 12}},
        yaxis={"title": {"text": "Z′"}, "range": [min(0.0, float(np.nanmin(plates["z_prime"].astype(float))) - 0.1)
                                                   if plates["z_prime"].notna().any() else 0.0, 1.05]},
        xaxis={"type": "category", "title": {"text": "run / plate"}},
        legend={"orientation": "h", "y": 1.1},
    )  # fmt: skip
    return fig


def _nan(v: object) -> bool:
    try:
        return math.isnan(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


def plates_section(screen: Screen) -> str:
    plates = screen.plates
    if plates.empty:
        return note("No plate statistics.")
    df = plates.assign(verdict=np.where(plates["pass"], "PASS", "FAIL"))
    cols = [
        Column("run", "run"),
        Column("plate", "plate"),
        Column("created", "scored"),
        Column("verdict", "verdict", "badge"),
        Column("z_prime", "Z′", "num", ".2f"),
        Column("ssmd", "SSMD", "num", ".1f"),
        Column("n_fields_flagged", "fields flagged", "num", ".0f"),
    ]
    if df["domain_shift_score"].notna().any():
        cols += [
            Column("domain_shift_score", "domain shift", "num"),
            Column("domain_shift_threshold", "threshold", "num"),
            Column("out_of_distribution", "out of distribution", "bool"),
        ]
    cols.append(Column("reasons", "reasons"))
    return figure_div(zprime_figure(plates), "fc-zprime") + sortable_table(
        df.replace({np.nan: None}), cols, "fc-screen-plates"
    )


def write_screen_page(screen: Screen, path: Path, title: str = "fibroclass screen summary") -> Path:
    """Write `screen.html` (interactive, self-contained)."""
    sections = {
        "runs": ("Runs", runs_section(screen, path)),
        "compounds": ("Compounds across runs", compounds_section(screen)),
        "concordance": ("Replicate-plate concordance", concordance_section(screen)),
        "plates": ("Plate QC over time", plates_section(screen)),
    }
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_plates = len(screen.plates)
    meta = f"fibroclass {__version__} · {stamp} · {len(screen.runs)} run(s), {n_plates} plate(s), {len(screen.compounds)} compounds"
    return write_page(path, title, meta, sections)


__all__ = ["write_screen_page"]
