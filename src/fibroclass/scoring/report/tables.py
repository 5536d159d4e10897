"""Sortable HTML tables (report.js sorts on a header click, numerically where cells carry `data-v`, and
filters rows from the box above the table), and the interactive report's compound table."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fibroclass.schema import COMPOUND
from fibroclass.scoring.report.figures import dom_id, esc, num


@dataclass(frozen=True)
class Column:
    """One table column: `kind` is text, num (format `fmt`), badge (PASS/FAIL), call, bool (yes is a
    warning), agree (no is a warning) or link."""

    key: str
    label: str
    kind: str = "text"
    fmt: str = ".3g"
    title: str = ""  # header tooltip


def _cell(value: object, col: Column, row: dict, link: Callable[[dict], str] | None) -> str:
    if col.kind == "num":
        try:
            f = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            f = math.nan
        prefix = ""
        if col.key == "ec50_uM" and isinstance(row.get("ec50_qualifier"), str):
            prefix = esc(row["ec50_qualifier"]) + " " if row["ec50_qualifier"] else ""
        sort = repr(f) if math.isfinite(f) else ""
        return f'<td data-v="{sort}">{prefix}{num(f, col.fmt)}</td>'
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if col.kind == "call":
        return f'<td class="text"><span class="call {esc(text)}">{esc(text)}</span></td>'
    if col.kind == "badge":
        cls = "pass" if text.upper() == "PASS" else "fail"
        return f'<td class="text"><span class="badge {cls}">{esc(text)}</span></td>'
    if col.kind in ("bool", "agree"):
        on = text.lower() in ("true", "1", "yes")
        warn = on if col.kind == "bool" else not on
        shown = "yes" if on else "no"
        return f'<td class="text" data-v="{int(on)}">{f"<b class=warn>{shown}</b>" if warn else shown}</td>'
    if col.kind == "link" and link is not None:
        return f'<td class="text"><a href="{esc(link(row))}">{esc(text)}</a></td>'
    return f'<td class="text">{esc(text)}</td>'


def sortable_table(
    df: pd.DataFrame,
    columns: Sequence[Column],
    table_id: str,
    link: Callable[[dict], str] | None = None,
    filter_box: bool = False,
) -> str:
    """`df` as a sortable table (only the `columns` present in it)."""
    cols = [c for c in columns if c.key in df]
    head = "".join(
        f'<th data-kind="{"num" if c.kind in ("num", "bool", "agree") else "text"}" title="{esc(c.title or "click to sort")}">'
        f"{esc(c.label)}</th>"
        for c in cols
    )
    body = []
    for row in df.to_dict("records"):
        body.append("<tr>" + "".join(_cell(row.get(c.key), c, row, link) for c in cols) + "</tr>")
    box = (
        f'<input class="fc-filter" type="search" placeholder="filter rows…" data-table="{esc(table_id)}">'
        if filter_box
        else ""
    )
    return (
        f'{box}<div class="fc-scroll"><table class="fc-sortable" id="{esc(table_id)}"><thead><tr>{head}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


COMPOUND_COLUMNS = (
    Column(COMPOUND, "compound", "link", title="click to jump to its dose-response panel"),
    Column("call", "call", "call"),
    Column("ec50_uM", "EC50 (µM)", "num"),
    Column("ec50_ci_low_uM", "CI low", "num"),
    Column("ec50_ci_high_uM", "CI high", "num"),
    Column("emax_pct", "Emax %", "num", ".0f"),
    Column("hill", "Hill", "num", ".2f"),
    Column("r2", "r²", "num", ".2f"),
    Column("max_rescue_pct", "max rescue %", "num", ".0f"),
    Column("min_viability_pct", "min viability %", "num", ".0f"),
    Column("max_offtarget_z", "max off-target z", "num", ".1f"),
)


def compound_table(compounds: pd.DataFrame, readouts: Sequence[tuple[str, str]] = ()) -> str:
    """compounds.csv as a sortable, filterable table; `readouts`: (name, label) of secondary readouts
    whose max rescue, ρ and discordant flag get columns."""
    if compounds.empty or COMPOUND not in compounds:
        return '<p class="note">No compounds.</p>'
    cols = list(COMPOUND_COLUMNS)
    for name, label in readouts:
        cols += [
            Column(f"{name}_max_rescue_pct", f"{label} max rescue %", "num", ".0f"),
            Column(f"{name}_rho", f"ρ morphology vs {label}", "num", ".2f", "Spearman across doses"),
            Column(f"{name}_discordant", f"{label} discordant", "bool"),
        ]
    cols.append(Column("call_reason", "why", "text"))
    df = compounds.replace({np.nan: None}) if len(compounds) else compounds
    return sortable_table(
        df, cols, "fc-compound-table", link=lambda r: "#" + dom_id("dr", r[COMPOUND]), filter_box=True
    )


__all__ = ["COMPOUND_COLUMNS", "Column", "compound_table", "sortable_table"]
