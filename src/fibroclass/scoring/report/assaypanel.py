"""The secondary-readout panel (`--assay`): per readout, its control window per plate, morphology vs
readout rescue per compound (both with their 4PL, on one dose axis per compound) and the per-dose
agreement across compounds."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fibroclass.io.assays import AssaySpec
from fibroclass.schema import COMPOUND, CONC, RESCUE_PCT
from fibroclass.scoring.compounds.doseresponse import Fit4PL, viable_dose_mask
from fibroclass.scoring.report.curves import dose_grid, readout_traces, treated_wells
from fibroclass.scoring.report.figures import ASSAY_COLORS, call_color, dom_id, esc, figure_div, note
from fibroclass.scoring.report.tables import Column, sortable_table
from fibroclass.scoring.wells.assays import rescue_col

NCOLS = 4
MORPH_COLOR = "#1a9850"


def window_table(name: str, spec: AssaySpec, plates: Mapping[str, Mapping]) -> str:
    rows = []
    for plate, q in sorted(plates.items()):
        a = (q.get("assays") or {}).get(name)
        if a is None:
            continue
        rows.append({
            "plate": plate, "healthy": a.get("healthy_mean"), "disease": a.get("disease_mean"),
            "fold": a.get("fold_disease_vs_healthy"), "z_prime": a.get("z_prime"),
            "n": f"{a.get('n_healthy', 0)} / {a.get('n_disease', 0)}", "why": "; ".join(a.get("reasons") or []),
        })  # fmt: skip
    if not rows:
        return note(f"No plate has {esc(spec.label)} values on its controls.")
    mean = "geometric mean" if spec.log else "mean"
    cols = [
        Column("plate", "plate"),
        Column("healthy", f"healthy {mean} ({spec.unit})", "num"),
        Column("disease", f"disease {mean} ({spec.unit})", "num"),
        Column("fold", "disease / healthy", "num", ".2f"),
        Column("z_prime", f"Z′ ({'log10' if spec.log else 'linear'})", "num", ".2f"),
        Column("n", "controls (h / d)"),
        Column("why", "not usable because"),
    ]
    return sortable_table(pd.DataFrame(rows), cols, dom_id("assay-window", name))


def concordance_table(name: str, spec: AssaySpec, compounds: pd.DataFrame) -> str:
    cols = [
        Column(COMPOUND, "compound"),
        Column("call", "morphology call", "call"),
        Column("max_rescue_pct", "morphology max rescue %", "num", ".0f"),
        Column(f"{name}_max_rescue_pct", f"{spec.label} max rescue %", "num", ".0f"),
        Column(f"{name}_ec50_uM", f"{spec.label} EC50 (µM)", "num"),
        Column(f"{name}_emax_pct", f"{spec.label} Emax %", "num", ".0f"),
        Column(
            f"{name}_rho",
            "ρ across doses",
            "num",
            ".2f",
            "Spearman: morphology vs readout rescue, per-dose medians",
        ),
        Column(f"{name}_discordant", "discordant", "bool"),
    ]
    df = compounds.replace({np.nan: None})
    return sortable_table(df, cols, dom_id("assay-compounds", name))


def grid_figure(
    name: str,
    spec: AssaySpec,
    treated: pd.DataFrame,
    compounds: pd.DataFrame,
    fits: Mapping[str, Fit4PL],
    assay_fits: Mapping[str, Fit4PL],
    color: str,
    viability_min_pct: float = 70.0,
) -> go.Figure:
    """One subplot per compound: morphology rescue and readout rescue vs dose, each with its 4PL."""
    names = [n for n in compounds[COMPOUND].astype(str) if n in set(treated[COMPOUND].astype(str))]
    calls = dict(
        zip(
            compounds[COMPOUND].astype(str),
            compounds.get("call", pd.Series("", index=compounds.index)).astype(str),
            strict=True,
        )
    )
    ncols = min(NCOLS, max(len(names), 1))
    nrows = max(math.ceil(len(names) / ncols), 1)
    disc = (
        compounds.set_index(COMPOUND)[f"{name}_discordant"]
        if f"{name}_discordant" in compounds
        else pd.Series(dtype=bool)
    )
    titles = [
        f"{esc(n)} ({esc(calls.get(n, ''))}){' ⚠ discordant' if bool(disc.get(n, False)) else ''}"
        for n in names
    ]
    fig = make_subplots(
        rows=nrows, cols=ncols, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=0.5 / nrows
    )
    col = rescue_col(name)
    shown_names: set[str] = set()
    for i, n in enumerate(names):
        r, c = divmod(i, ncols)
        sub = treated[treated[COMPOUND].astype(str) == n].sort_values(CONC)
        x = dose_grid(sub[CONC].to_numpy(float))
        viable = viable_dose_mask(sub, viability_min_pct).to_numpy(bool)
        traces = readout_traces(
            sub, RESCUE_PCT, fits.get(n), x, MORPH_COLOR, "morphology", "circle", "solid", viable
        )
        traces += readout_traces(sub, col, assay_fits.get(n), x, color, spec.label, "diamond", "dash", viable)
        for tr in traces:
            tr.showlegend = tr.showlegend is not False and tr.name not in shown_names  # once per name
            shown_names.add(tr.name)
            fig.add_trace(tr, row=r + 1, col=c + 1)
        shown = sub[[RESCUE_PCT, col]].to_numpy(float)
        shown = shown[np.isfinite(shown)]
        top = min(max(140.0, float(shown.max()) + 10) if shown.size else 140.0, 300.0)
        bottom = max(min(-40.0, float(shown.min()) - 10) if shown.size else -40.0, -200.0)
        fig.update_xaxes(type="log", row=r + 1, col=c + 1)
        fig.update_yaxes(range=[bottom, top], row=r + 1, col=c + 1)
    for y, line in ((0, "#d73027"), (100, "#1a9850")):
        fig.add_hline(y=y, line={"color": line, "width": 1, "dash": "dot"})
    fig.update_annotations(font={"size": 11})
    fig.update_layout(
        height=260 * nrows + 90, hovermode="closest",
        title={"text": f"rescue % per compound: morphology (circles) vs {esc(spec.label)} (diamonds)", "font": {"size": 12}},
        legend={"orientation": "h", "y": 1.0 + 40 / (260 * nrows + 90), "yanchor": "bottom", "x": 1, "xanchor": "right"},
    )  # fmt: skip
    return fig


def dose_scatter(
    name: str,
    spec: AssaySpec,
    treated: pd.DataFrame,
    compounds: pd.DataFrame,
    viability_min_pct: float = 70.0,
) -> go.Figure:
    """Per compound × viable dose: median morphology rescue (x) vs median readout rescue (y)."""
    col = rescue_col(name)
    treated = treated[viable_dose_mask(treated, viability_min_pct)]
    med = treated.groupby([COMPOUND, CONC])[[RESCUE_PCT, col]].median().reset_index()
    calls = dict(
        zip(
            compounds[COMPOUND].astype(str),
            compounds.get("call", pd.Series("", index=compounds.index)).astype(str),
            strict=True,
        )
    )
    fig = go.Figure()
    for n, sub in med.groupby(COMPOUND, sort=False):
        fig.add_trace(go.Scatter(
            x=sub[RESCUE_PCT], y=sub[col], mode="markers+lines", name=str(n),
            marker={"color": call_color(calls.get(str(n), "")), "size": 8}, line={"width": 0.8},
            text=[f"<b>{esc(n)}</b> {c:.3g} µM" for c in sub[CONC]],
            hovertemplate="%{text}<br>morphology %{x:.0f}%<br>" + esc(spec.label) + " %{y:.0f}%<extra></extra>",
        ))  # fmt: skip
    fig.add_shape(type="line", x0=-40, y0=-40, x1=150, y1=150, line={"color": "#bbb", "dash": "dash"})
    fig.update_layout(
        height=420, xaxis={"title": {"text": "morphology rescue % (median per dose)"}},
        yaxis={"title": {"text": f"{esc(spec.label)} rescue % (median per dose)"}, "scaleanchor": "x"},
        title={"text": "per viable dose, colored by morphology call (dashed: identity)", "font": {"size": 12}},
    )  # fmt: skip
    return fig


def assays_section(
    wells: pd.DataFrame,
    compounds: pd.DataFrame,
    plates: Mapping[str, Mapping],
    fits: Mapping[str, Fit4PL],
    specs: Mapping[str, AssaySpec],
    assay_fits: Mapping[str, Mapping[str, Fit4PL]],
    viability_min_pct: float = 70.0,
) -> str:
    """Everything about the secondary readouts ('' without any)."""
    if not specs:
        return ""
    treated = treated_wells(wells, compounds)
    parts = [note(
        "Readouts measured on the same wells (<code>--assay</code>), each normalized to its plate's own controls "
        "like the morphology rescue: 0 % at the disease-control mean, 100 % at the healthy-control mean "
        "(log10 first for concentrations). Per compound, Spearman ρ across doses compares the two rescues; "
        "<b>discordant</b>: one rescues (≥ hit threshold) while the other does not (< inactive threshold), "
        "e.g. a morphology hit that does not lower IL-6 — a different kind of hit."
    )]  # fmt: skip
    for k, (name, spec) in enumerate(specs.items()):
        color = ASSAY_COLORS[k % len(ASSAY_COLORS)]
        parts.append(f'<h3 id="{dom_id("assay", name)}">{esc(spec.title())}</h3>')
        parts.append(window_table(name, spec, plates))
        if (
            rescue_col(name) not in treated
            or not np.isfinite(treated[rescue_col(name)].to_numpy(float)).any()
        ):
            parts.append(note(f"No treated well has a {esc(spec.label)} rescue (no usable controls?)."))
            continue
        parts.append(concordance_table(name, spec, compounds))
        fig = grid_figure(
            name, spec, treated, compounds, fits, assay_fits.get(name, {}), color, viability_min_pct
        )
        parts.append(figure_div(fig, dom_id("assay-grid", name)))
        parts.append(
            figure_div(
                dose_scatter(name, spec, treated, compounds, viability_min_pct),
                dom_id("assay-scatter", name),
                "fc-half",
            )
        )
    return "".join(parts)


__all__ = ["assays_section", "concordance_table", "dose_scatter", "grid_figure", "window_table"]
