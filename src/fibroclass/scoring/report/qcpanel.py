"""The interactive QC panel: a sortable per-plate table (Z′, SSMD, controls, fields flagged, domain shift
when plate_qc.json has it, secondary-readout windows), control well scores per plate (hover: the well),
and why fields were flagged."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from fibroclass.schema import (
    DISEASE_SCORE,
    PLATE,
    QC_PASS,
    QC_REASON,
    ROLE,
    ROLE_DISEASE,
    ROLE_HEALTHY,
    ROLE_REFERENCE,
    WELL,
)
from fibroclass.scoring.report.figures import esc, figure_div, note, num, role_color
from fibroclass.scoring.report.tables import Column, sortable_table


def domain_shift(q: Mapping) -> tuple[str, bool | None]:
    """('0.42 / 0.30', out_of_distribution) from a plate's `domain_shift` entry, ('', None) without one."""
    ds = q.get("domain_shift")
    if not isinstance(ds, Mapping):
        return "", None
    ood = ds.get("out_of_distribution")
    return f"{num(ds.get('score'), '.3g')} / {num(ds.get('threshold'), '.3g')}", (
        None if ood is None else bool(ood)
    )


def _mean_sd(q: Mapping, group: str) -> str:
    """`-7.2 ± 1.5 (n=6)` for a control group, `n/a` when the plate has no statistics for it."""
    mean = num(q.get(f"{group}_mean"))
    if mean == "n/a":
        return "n/a"
    return f"{mean} ± {num(q.get(f'{group}_sd'))} (n={q.get(f'n_{group}', '?')})"


def plate_rows(plates: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per plate: the numbers of plate_qc.json the table shows."""
    rows = []
    for plate, q in sorted(plates.items()):
        ds_text, ood = domain_shift(q)
        row = {
            "plate": plate,
            "verdict": "PASS" if q.get("pass") else "FAIL",
            "z_prime": q.get("z_prime"),
            "ssmd": q.get("ssmd"),
            "healthy": _mean_sd(q, "healthy"),
            "disease": _mean_sd(q, "disease"),
            "flagged": q.get("n_fields_flagged"),
            "n_fields": q.get("n_fields"),
            "domain": ds_text + (" ⚠ out of distribution" if ood else ""),
            "reasons": "; ".join(str(r) for r in q.get("reasons") or []),
        }
        for name, a in (q.get("assays") or {}).items():
            row[f"assay:{a.get('label') or name}"] = (
                f"{num(a.get('fold_disease_vs_healthy'), '.1f')}x, Z′ {num(a.get('z_prime'), '.2f')}"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def plate_table(plates: Mapping[str, Mapping]) -> str:
    df = plate_rows(plates)
    if df.empty:
        return note("No plate statistics.")
    cols = [
        Column("plate", "plate", "text"),
        Column("verdict", "verdict", "badge"),
        Column("z_prime", "Z′", "num", ".2f"),
        Column("ssmd", "SSMD", "num", ".1f"),
        Column("healthy", "healthy score", "text"),
        Column("disease", "disease score", "text"),
        Column("flagged", "fields flagged", "num", ".0f"),
        Column("n_fields", "fields", "num", ".0f"),
    ]
    if df["domain"].astype(bool).any():
        cols.append(Column("domain", "domain shift (score / threshold)", "text"))
    cols += [
        Column(c, f"{c[6:]} (disease/healthy, Z′)", "text") for c in df.columns if c.startswith("assay:")
    ]
    cols.append(Column("reasons", "reasons", "text"))
    return sortable_table(df, cols, "fc-plate-table")


def controls_figure(wells: pd.DataFrame, plates: Mapping[str, Mapping]) -> go.Figure:
    """Control well disease scores per plate (box + points); Z′ in the plate's tick label."""
    fig = go.Figure()
    ticks = {
        p: f"{p}<br>Z′ {num(plates.get(p, {}).get('z_prime'), '.2f')}"
        for p in sorted(wells[PLATE].astype(str).unique())
    }
    for role in (ROLE_HEALTHY, ROLE_DISEASE, ROLE_REFERENCE):
        sub = wells[wells[ROLE].astype(str) == role]
        if sub.empty:
            continue
        fig.add_trace(go.Box(
            x=sub[PLATE].astype(str).map(ticks), y=sub[DISEASE_SCORE], name=role, boxpoints="all", jitter=0.4,
            pointpos=0, marker={"color": role_color(role), "size": 5}, line={"color": role_color(role)},
            text=[f"{p} {w}" for p, w in zip(sub[PLATE], sub[WELL], strict=True)],
            hovertemplate="%{text}<br>score %{y:.2f}<extra>" + role + "</extra>",
        ))  # fmt: skip
    fig.update_layout(
        boxmode="group", height=360, yaxis={"title": {"text": "well disease score"}},
        title={"text": "control wells per plate", "font": {"size": 12}}, legend={"orientation": "h", "y": 1.12},
    )  # fmt: skip
    return fig


def field_qc_figure(fields: pd.DataFrame) -> go.Figure | None:
    """Fields flagged per plate, stacked by reason (None when nothing was flagged)."""
    if fields.empty or QC_PASS not in fields or QC_REASON not in fields:
        return None
    bad = fields[~fields[QC_PASS].astype(bool)]
    if bad.empty:
        return None
    reasons = (
        bad[QC_REASON]
        .fillna("")
        .astype(str)
        .str.split(r"[;,]\s*", regex=True)
        .str[0]
        .replace("", "unspecified")
    )
    counts = pd.crosstab(bad[PLATE].astype(str), reasons)
    total = fields.groupby(PLATE).size()
    fig = go.Figure()
    for reason in counts.columns:
        fig.add_trace(go.Bar(
            x=counts.index, y=counts[reason], name=reason,
            customdata=[[round(float(v), 2)] for v in 100 * counts[reason] / total.reindex(counts.index).to_numpy()],
            hovertemplate="%{x}: %{y} fields (%{customdata[0]:.1f}%)<extra>" + esc(reason) + "</extra>",
        ))  # fmt: skip
    fig.update_layout(barmode="stack", height=260, width=max(360, 140 + 70 * len(counts)), yaxis={"title": {"text": "fields flagged"}},
                      title={"text": "why fields were left out", "font": {"size": 12}})  # fmt: skip
    return fig


def qc_section(fields: pd.DataFrame, wells: pd.DataFrame, plates: Mapping[str, Mapping]) -> str:
    """Table + the control distributions and field-QC reasons."""
    parts = [plate_table(plates)]
    figs = []
    fq = field_qc_figure(fields)
    if fq is not None:
        figs.append(figure_div(fq, "fc-field-qc", "fc-inline"))
    parts.append(f'<div class="fc-row">{"".join(figs)}</div>' if figs else "")
    return "".join(parts)


def controls_section(wells: pd.DataFrame, plates: Mapping[str, Mapping]) -> str:
    if ROLE not in wells or DISEASE_SCORE not in wells or wells.empty:
        return note("No control scores.")
    return figure_div(controls_figure(wells, plates), "fc-controls")


__all__ = [
    "controls_figure",
    "controls_section",
    "domain_shift",
    "field_qc_figure",
    "plate_rows",
    "plate_table",
    "qc_section",
]
