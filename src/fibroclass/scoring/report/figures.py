"""Plotly plumbing of the interactive report: one look for every figure, a figure as an HTML div (the page
loads plotly.js once), number formatting for hover text, and the colors shared with the static plots."""

from __future__ import annotations

import html
import math
import re

import plotly.graph_objects as go
import plotly.io as pio

from fibroclass.scoring.report.plots import CALL_COLORS, ROLE_COLORS

CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "scrollZoom": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}
FONT = '-apple-system, "Segoe UI", Helvetica, Arial, sans-serif'
_AXIS = {"showline": True, "linecolor": "#999", "ticks": "outside", "gridcolor": "#eee", "zeroline": False}
TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": FONT, "size": 11, "color": "#222"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "margin": {"l": 55, "r": 20, "t": 46, "b": 45},
        "title": {"x": 0.01, "xanchor": "left", "font": {"size": 12}},  # left: the mode bar sits on the right
        "xaxis": _AXIS,
        "yaxis": _AXIS,
        "hoverlabel": {"font": {"family": FONT, "size": 11}, "align": "left"},
        "colorway": ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"],
    }
)
ASSAY_COLORS = ("#e6550d", "#3182bd", "#756bb1", "#31a354", "#de2d26")
PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
OTHER_COLOR = "#969696"
_ID_RE = re.compile(r"[^A-Za-z0-9_-]")


def dom_id(*parts: object) -> str:
    """A valid, readable element id from names (`fc-dr-ruxolitinib`)."""
    return "fc-" + "-".join(_ID_RE.sub("_", str(p)) for p in parts)


def figure_div(fig: go.Figure, div_id: str, css: str = "", post_script: str | None = None) -> str:
    """The figure as a `<div class="fc-plot">` whose script draws it with the page's plotly.js;
    `post_script` runs after drawing (`{plot_id}` is the div id)."""
    fig.update_layout(template=TEMPLATE)
    height = fig.layout.height or 420
    div = pio.to_html(
        fig,
        config=CONFIG,
        include_plotlyjs=False,
        include_mathjax=False,
        full_html=False,
        div_id=div_id,
        post_script=post_script,
        default_width="100%",
        default_height=f"{int(height)}px",
        validate=False,
    )
    cls = f"fc-plot {css}".strip()
    return f'<div class="{cls}">{div}</div>'


def plotly_js() -> str:
    """The plotly.js bundle, once per page (offline: nothing is fetched)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def num(v: object, spec: str = ".3g", unit: str = "") -> str:
    """`12.3 µM`, or `n/a` for missing values."""
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return f"{format(f, spec)}{unit}" if math.isfinite(f) else "n/a"


def esc(v: object) -> str:
    return html.escape(str(v))


def call_color(call: str) -> str:
    return CALL_COLORS.get(call, "#2171b5")


def role_color(role: str) -> str:
    return ROLE_COLORS.get(role, OTHER_COLOR)


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


__all__ = [
    "ASSAY_COLORS",
    "PALETTE",
    "CONFIG",
    "TEMPLATE",
    "call_color",
    "dom_id",
    "esc",
    "figure_div",
    "note",
    "num",
    "plotly_js",
    "role_color",
]
