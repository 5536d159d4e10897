"""The well-embedding map: where treated wells sit in the classifier's embedding (well_embeddings.npy).

Each plate's wells are centered on its disease-control centroid (so plates share an origin), then
projected on the first two principal components of all wells. Controls are points; each compound is
its wells plus a line through its per-dose centroids from the lowest to the highest dose, so a rescue
runs from the disease cloud toward the healthy one and an off-target mover leaves the axis. The
disease axis (disease → healthy centroid) is drawn as an arrow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fibroclass.schema import (
    COMPOUND,
    CONC,
    PLATE,
    RESCUE_PCT,
    ROLE,
    ROLE_DISEASE,
    ROLE_HEALTHY,
    ROLE_REFERENCE,
    ROLE_TREATMENT,
    WELL,
)
from fibroclass.scoring.report.figures import PALETTE, esc, figure_div, note, num, role_color

MAX_COMPOUNDS = 60  # beyond this the map shows controls and the first compounds of compounds.csv


def centered(wells: pd.DataFrame, emb: np.ndarray) -> np.ndarray:
    """Embeddings minus their plate's disease-control centroid (the plate mean without disease controls)."""
    out = np.asarray(emb, dtype=np.float64).copy()
    roles = wells[ROLE].astype(str).to_numpy() if ROLE in wells else np.full(len(wells), "")
    for _, idx in wells.groupby(PLATE, sort=False).indices.items():
        block = out[idx]
        ok = np.isfinite(block).all(axis=1)
        ref = ok & (roles[idx] == ROLE_DISEASE)
        base = block[ref] if ref.any() else block[ok]
        if len(base):
            out[idx] = block - base.mean(axis=0)
    return out


def project(wells: pd.DataFrame, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) PCA coordinates (NaN rows for wells without an embedding) and the explained variance ratios."""
    x = centered(wells, emb)
    ok = np.isfinite(x).all(axis=1)
    coords = np.full((len(x), 2), np.nan)
    if ok.sum() < 3:
        return coords, np.full(2, np.nan)
    xc = x[ok] - x[ok].mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(2, vt.shape[0])
    coords[ok, :k] = xc @ vt[:k].T
    if k < 2:
        coords[ok, 1] = 0.0
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.full(2, np.nan)
    return coords, np.pad(ratio, (0, 2 - len(ratio)), constant_values=np.nan)


def _text(sub: pd.DataFrame) -> list[str]:
    return [
        f"<b>{esc(r.get(PLATE, ''))} {esc(r.get(WELL, ''))}</b> {esc(r.get(ROLE, ''))}<br>"
        f"{esc(r.get(COMPOUND, ''))} {num(r.get(CONC), '.3g', ' µM')}<br>rescue {num(r.get(RESCUE_PCT), '.0f', '%')}"
        for r in sub.to_dict("records")
    ]


def embedding_figure(wells: pd.DataFrame, emb: np.ndarray, compounds: list[str]) -> go.Figure:
    coords, ratio = project(wells, emb)
    wells = wells.reset_index(drop=True).assign(_x=coords[:, 0], _y=coords[:, 1])
    wells = wells[np.isfinite(wells["_x"])]
    role = wells[ROLE].astype(str) if ROLE in wells else pd.Series("", index=wells.index)
    fig = go.Figure()
    for r, label in (
        (ROLE_HEALTHY, "healthy controls"),
        (ROLE_DISEASE, "disease controls"),
        (ROLE_REFERENCE, "reference"),
    ):
        sub = wells[role == r]
        if len(sub):
            fig.add_trace(go.Scatter(
                x=sub["_x"], y=sub["_y"], mode="markers", name=label, text=_text(sub),
                marker={"color": role_color(r), "size": 7, "opacity": 0.75, "line": {"width": 0.5, "color": "white"}},
                hovertemplate="%{text}<extra></extra>",
            ))  # fmt: skip
    treated = wells[(role == ROLE_TREATMENT) & (pd.to_numeric(wells[CONC], errors="coerce") > 0)]
    for i, name in enumerate(compounds[:MAX_COMPOUNDS]):
        sub = treated[treated[COMPOUND].astype(str) == name]
        if sub.empty:
            continue
        color = PALETTE[i % len(PALETTE)]
        doses = sub.groupby(CONC)[["_x", "_y"]].mean().sort_index()
        rank = np.argsort(np.argsort(sub[CONC].to_numpy(float)))
        sizes = 5 + 9 * rank / max(len(sub) - 1, 1)
        fig.add_trace(go.Scatter(
            x=sub["_x"], y=sub["_y"], mode="markers", name=name, legendgroup=name, text=_text(sub),
            marker={"color": color, "size": sizes, "opacity": 0.55}, hovertemplate="%{text}<extra></extra>",
        ))  # fmt: skip
        fig.add_trace(go.Scatter(
            x=doses["_x"], y=doses["_y"], mode="lines+markers", legendgroup=name, showlegend=False,
            line={"color": color, "width": 1.5}, marker={"color": color, "size": 4, "symbol": "x"},
            text=[f"{esc(name)} {c:.3g} µM (mean of wells)" for c in doses.index], hovertemplate="%{text}<extra></extra>",
        ))  # fmt: skip
    h, d = wells[role == ROLE_HEALTHY], wells[role == ROLE_DISEASE]
    if len(h) and len(d):
        x0, y0, x1, y1 = d["_x"].mean(), d["_y"].mean(), h["_x"].mean(), h["_y"].mean()
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=3, arrowsize=1.4, arrowwidth=2.5, arrowcolor="#333", text="")  # fmt: skip
        fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text="disease axis", showarrow=False,
                           font={"size": 10, "color": "#333"}, yshift=12, bgcolor="rgba(255,255,255,0.7)")  # fmt: skip
    pct = [num(100 * r, ".0f", "%") for r in ratio]
    fig.update_layout(
        height=560, hovermode="closest",
        xaxis={"title": {"text": f"PC1 ({pct[0]} of variance)"}, "zeroline": False},
        yaxis={"title": {"text": f"PC2 ({pct[1]})"}, "zeroline": False},
        legend={"font": {"size": 10}, "itemsizing": "constant"},
        title={"text": "well embeddings (PCA, plates centered on their disease controls)", "font": {"size": 12}},
    )  # fmt: skip
    return fig


def embedding_section(
    wells: pd.DataFrame, emb: np.ndarray | None, compounds: pd.DataFrame | None = None
) -> str:
    """The map, or a note when the run has no usable well embeddings."""
    if emb is None or len(emb) != len(wells) or np.asarray(emb).ndim != 2 or np.asarray(emb).shape[1] == 0:
        return note("No well embeddings for this run.")
    if np.isfinite(np.asarray(emb, float)).all(axis=1).sum() < 3:
        return note("Too few wells with an embedding to draw a map.")
    names = (
        compounds[COMPOUND].astype(str).tolist()
        if compounds is not None and COMPOUND in compounds
        else sorted(wells[COMPOUND].astype(str).unique())
        if COMPOUND in wells
        else []
    )
    text = (
        "Each point is a well; a compound's line joins its per-dose centroids from low to high dose (larger "
        "points: higher doses). A rescue travels along the disease axis (arrow: disease → healthy centroid); "
        "an off-target mover leaves it. Click a legend entry to hide it, double-click to isolate it."
    )
    if len(names) > MAX_COMPOUNDS:
        text += f" Showing the first {MAX_COMPOUNDS} of {len(names)} compounds."
    return note(text) + figure_div(embedding_figure(wells, np.asarray(emb), names), "fc-embedding")


__all__ = ["centered", "embedding_figure", "embedding_section", "project"]
