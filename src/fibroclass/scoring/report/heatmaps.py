"""Interactive plate heatmaps: one figure per plate in its real geometry, a menu to switch the colored
readout (rescue, viability, disease score, fields failing QC, off-target z, organization and secondary
readouts), hover text with everything known about the well, and its field thumbnail (report.js shows it
beside the plate on hover and pins it on click)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fibroclass.io.assays import AssaySpec
from fibroclass.schema import (
    COMPOUND,
    CONC,
    DISEASE_SCORE,
    FLAGS,
    N_FIELDS,
    N_FIELDS_USED,
    PLATE,
    QC_PASS,
    RESCUE_PCT,
    ROLE,
    VIABILITY_PCT,
    WELL,
)
from fibroclass.scoring.report.figures import dom_id, esc, figure_div, note, num
from fibroclass.scoring.report.plots import ROLE_MARKS, plate_shape, row_label, well_position
from fibroclass.scoring.report.thumbnails import well_key
from fibroclass.scoring.wells.assays import rescue_col

QC_FAIL = "qc_fail_frac"
OFFTARGET_Z = "offtarget_z"
ORG_RESCUE = "org_rescue_pct"


@dataclass(frozen=True)
class Metric:
    """One colorable well readout."""

    column: str
    label: str
    colorscale: str
    zmin: float | None = None
    zmax: float | None = None
    log: bool = False  # color by log10 (raw concentrations)


def metrics_for(wells: pd.DataFrame, specs: Mapping[str, AssaySpec] | None = None) -> list[Metric]:
    """The readouts present in `wells`, rescue first."""
    cands = [
        Metric(RESCUE_PCT, "rescue %", "RdYlGn", -25, 125),
        Metric(VIABILITY_PCT, "viability %", "Magma", 0, 130),
        Metric(DISEASE_SCORE, "disease score", "RdBu_r"),
        Metric(QC_FAIL, "fields failing QC", "Reds", 0, 1),
        Metric(OFFTARGET_Z, "off-target z", "Purples", 0, 6),
        Metric(ORG_RESCUE, "organization rescue %", "RdYlGn", -25, 125),
    ]
    for name, spec in (specs or {}).items():
        cands.append(Metric(rescue_col(name), f"{spec.label} rescue %", "RdYlGn", -25, 125))
        label = f"log10 {spec.title()}" if spec.log else spec.title()
        cands.append(Metric(name, label, "Viridis", log=spec.log))
    return [
        m
        for m in cands
        if m.column in wells and np.isfinite(pd.to_numeric(wells[m.column], errors="coerce")).any()
    ]


def qc_fail_fraction(fields: pd.DataFrame, wells: pd.DataFrame) -> pd.Series:
    """Per well (aligned with `wells`): fraction of its fields failing QC (NaN without fields)."""
    if fields.empty or QC_PASS not in fields:
        return pd.Series(np.nan, index=wells.index)
    failed = (
        (~fields[QC_PASS].astype(bool)).groupby([fields[PLATE].astype(str), fields[WELL].astype(str)]).mean()
    )
    keys = pd.MultiIndex.from_arrays([wells[PLATE].astype(str), wells[WELL].astype(str)])
    return pd.Series(failed.reindex(keys).to_numpy(float), index=wells.index)


def hover_text(row: Mapping, specs: Mapping[str, AssaySpec] | None = None) -> str:
    """Everything about one well, as Plotly hover HTML."""
    role = str(row.get(ROLE, "") or "")
    conc = row.get(CONC)
    drug = (
        f"{esc(row.get(COMPOUND, ''))} {num(conc, '.3g', ' µM')}"
        if num(conc) not in ("n/a", "0")
        else esc(row.get(COMPOUND, ""))
    )
    lines = [
        f"<b>{esc(row[PLATE])} {esc(row[WELL])}</b>  {esc(role)}",
        drug,
        f"rescue {num(row.get(RESCUE_PCT), '.0f', '%')} · viability {num(row.get(VIABILITY_PCT), '.0f', '%')}",
        f"disease score {num(row.get(DISEASE_SCORE), '.2f')} · fields {num(row.get(N_FIELDS_USED), '.0f')}/"
        f"{num(row.get(N_FIELDS), '.0f')}",
    ]
    if OFFTARGET_Z in row:
        lines.append(f"off-target z {num(row.get(OFFTARGET_Z), '.1f')}")
    for name, spec in (specs or {}).items():
        lines.append(
            f"{esc(spec.label)} {num(row.get(name), '.3g', spec.unit if spec.unit == '%' else ' ' + spec.unit)} "
            f"(rescue {num(row.get(rescue_col(name)), '.0f', '%')})"
        )
    flags = str(row.get(FLAGS, "") or "")
    if flags and flags != "nan":
        lines.append(f"<b>flags</b>: {esc(flags.replace(';', '; '))}")
    return "<br>".join(lines)


def _grid(pw: pd.DataFrame, shape: tuple[int, int], values: np.ndarray) -> list[list[float | None]]:
    grid = np.full(shape, np.nan)
    for well, v in zip(pw[WELL], values, strict=True):
        r, c = well_position(well)
        grid[r, c] = v
    return [[None if not np.isfinite(v) else round(float(v), 4) for v in row] for row in grid]


def _values(pw: pd.DataFrame, m: Metric) -> np.ndarray:
    v = pd.to_numeric(pw[m.column], errors="coerce").to_numpy(float)
    if m.log:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(v > 0, np.log10(v), np.nan)
    return v


def _style(m: Metric, z: list[list[float | None]]) -> dict:
    zmin, zmax = m.zmin, m.zmax
    if zmin is None or zmax is None:
        vals = np.array([v for row in z for v in row if v is not None], float)
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        if m.column == DISEASE_SCORE:  # diverging around 0 (the decision boundary of the logit)
            lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
        zmin, zmax = lo, hi if hi > lo else lo + 1
    return {"z": z, "zmin": zmin, "zmax": zmax, "colorscale": m.colorscale}


def plate_figure(
    pw: pd.DataFrame,
    plate: str,
    metrics: list[Metric],
    specs: Mapping[str, AssaySpec] | None,
    thumbs: Mapping[str, str],
) -> go.Figure:
    """One plate: wells colored by `metrics[0]`, a menu for the others."""
    shape = plate_shape(pw[WELL])
    records = pw.to_dict("records")
    info = np.empty(shape, dtype=object)
    info.fill(None)
    marks = [["" for _ in range(shape[1])] for _ in range(shape[0])]
    for rec in records:
        r, c = well_position(rec[WELL])
        key = well_key(plate, rec[WELL])
        info[r, c] = [key, hover_text(rec, specs), "1" if key in thumbs else ""]
        if shape[1] <= 24:
            marks[r][c] = ROLE_MARKS.get(str(rec.get(ROLE, "")), "")
    custom = [[cell if cell is not None else ["", "empty well", ""] for cell in row] for row in info]
    styles = [_style(m, _grid(pw, shape, _values(pw, m))) for m in metrics]
    first = styles[0]
    fig = go.Figure(
        go.Heatmap(
            **first,
            x=[str(i + 1) for i in range(shape[1])],
            y=[row_label(i) for i in range(shape[0])],
            customdata=custom,
            hovertemplate="%{customdata[1]}<extra></extra>",
            text=marks,
            texttemplate="%{text}",
            textfont={"size": 9 if shape[1] <= 12 else 7, "color": "black"},
            xgap=1,
            ygap=1,
            colorbar={"title": {"text": metrics[0].label, "side": "right"}, "thickness": 12},
            hoverongaps=False,
        )
    )
    buttons = [
        {
            "label": m.label,
            "method": "restyle",
            "args": [{"z": [s["z"]], "zmin": s["zmin"], "zmax": s["zmax"], "colorscale": [s["colorscale"]],
                      "colorbar.title.text": m.label}],
        }
        for m, s in zip(metrics, styles, strict=True)
    ]  # fmt: skip
    cell = 34 if shape[1] <= 12 else 20 if shape[1] <= 24 else 12
    step = 1 if shape[1] <= 24 else 4
    xt = list(range(0, shape[1], step))
    yt = list(range(0, shape[0], step))
    fig.update_layout(
        title={"text": f"<b>{plate}</b>", "x": 0.01, "xanchor": "left", "y": 0.985, "yanchor": "top",
               "font": {"size": 13}},
        width=shape[1] * cell + 170,
        height=shape[0] * cell + 150,
        margin={"l": 40, "r": 10, "t": 95, "b": 20},
        plot_bgcolor="#e5e5e5",
        xaxis={"side": "top", "showgrid": False, "showline": False, "ticks": "", "constrain": "domain",
               "tickmode": "array", "tickvals": [str(i + 1) for i in xt], "ticktext": [str(i + 1) for i in xt],
               "tickfont": {"size": 10 if shape[1] <= 24 else 8}},
        yaxis={"autorange": "reversed", "showgrid": False, "showline": False, "ticks": "",
               "scaleanchor": "x", "constrain": "domain", "tickmode": "array",
               "tickvals": [row_label(i) for i in yt], "ticktext": [row_label(i) for i in yt]},
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 0.0, "xanchor": "left", "y": 1.0,
                      "yanchor": "bottom", "pad": {"b": 30}, "showactive": True, "font": {"size": 10}}],
    )  # fmt: skip
    return fig


def heatmaps_section(
    fields: pd.DataFrame,
    wells: pd.DataFrame,
    specs: Mapping[str, AssaySpec] | None = None,
    thumbs: Mapping[str, str] | None = None,
) -> str:
    """Every plate's interactive heatmap, plus the well panel the hover fills."""
    if wells.empty:
        return note("No wells.")
    thumbs = thumbs or {}
    wells = wells.assign(**{QC_FAIL: qc_fail_fraction(fields, wells)})
    metrics = metrics_for(wells, specs)
    if not metrics:
        return note("No well readouts to map.")
    divs = []
    for plate in sorted(wells[PLATE].astype(str).unique()):
        pw = wells[wells[PLATE].astype(str) == plate]
        fig = plate_figure(pw, plate, metrics, specs, thumbs)
        wire = "window.fcWirePlate && window.fcWirePlate('{plot_id}');"  # report.js: hover → well panel
        divs.append(figure_div(fig, dom_id("plate", plate), "fc-plate", post_script=wire))
    text = (
        "Hover a well for its numbers and a field (the QC-passing field closest to the well's median score); "
        "click to pin it. The menu above each plate switches the colored readout. H/D/R: healthy, disease, "
        "reference controls; grey: no well."
    )
    panel = (
        '<aside class="fc-well-panel" id="fc-well-panel"><div class="fc-well-img">'
        '<img id="fc-well-thumb" alt="field thumbnail" hidden></div>'
        '<div id="fc-well-info" class="fc-well-info">hover a well</div></aside>'
    )
    return note(text) + f'<div class="fc-heat"><div class="fc-plates">{"".join(divs)}</div>{panel}</div>'


__all__ = ["Metric", "heatmaps_section", "hover_text", "metrics_for", "plate_figure", "qc_fail_fraction"]
