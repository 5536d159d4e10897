"""The interactive `report.html` of a scoring run: one self-contained file (plotly.js inlined once, field
thumbnails and images embedded) that opens offline in any browser.

Sections (ids for links and tests, `SECTIONS`): `plate-qc` (banner, sortable plate table, why fields were
flagged), `compounds` (sortable, filterable compound table; a name jumps to its panel), `dose-response`
(one interactive panel per compound), `heatmaps` (plates with a readout menu, hover details and field
thumbnails), `embedding` (the well-embedding map), `assays` (secondary readouts, when given), `controls`
(control well scores per plate) and `montage` (representative fields). `extra_sections` add to them.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from fibroclass import __version__
from fibroclass.errors import FibroclassError
from fibroclass.io.assays import AssaySpec
from fibroclass.schema import PLATE, WELL
from fibroclass.scoring.compounds.doseresponse import Fit4PL
from fibroclass.scoring.report.assaypanel import assays_section
from fibroclass.scoring.report.curves import dose_response_section
from fibroclass.scoring.report.embedding import embedding_section
from fibroclass.scoring.report.figures import plotly_js
from fibroclass.scoring.report.heatmaps import heatmaps_section
from fibroclass.scoring.report.html import _banner, _plates_of
from fibroclass.scoring.report.qcpanel import controls_section, qc_section
from fibroclass.scoring.report.tables import compound_table

SECTIONS = (
    "plate-qc",
    "compounds",
    "dose-response",
    "heatmaps",
    "embedding",
    "assays",
    "controls",
    "montage",
)
TITLES = {
    "plate-qc": "Plate QC",
    "compounds": "Compounds",
    "dose-response": "Dose response",
    "heatmaps": "Plate heatmaps",
    "embedding": "Well embeddings",
    "assays": "Secondary readouts",
    "controls": "Control distributions",
    "montage": "Representative fields",
}


def _template(name: str) -> str:
    return resources.files("fibroclass.scoring.report").joinpath(f"templates/{name}").read_text("utf-8")


def write_page(
    path: Path,
    title: str,
    meta: str,
    sections: Mapping[str, tuple[str, str]],
    thumbs: Mapping[str, str] | None = None,
) -> Path:
    """Write one interactive page: `sections` id → (title, HTML), in order, with a navigation bar."""
    body = "".join(
        f'<section id="{html.escape(sid)}"><h2>{html.escape(t)}</h2>{content}</section>'
        for sid, (t, content) in sections.items()
    )
    nav = f"<b>{html.escape(title)}</b>" + "".join(
        f'<a href="#{html.escape(sid)}">{html.escape(t)}</a>' for sid, (t, _) in sections.items() if t
    )
    data = json.dumps(dict(thumbs or {}), separators=(",", ":")).replace("</", "<\\/")
    page = Template(_template("interactive.html")).substitute(
        title=html.escape(title), meta=html.escape(meta), nav=nav, body=body, plotlyjs=plotly_js(),
        reportjs=_template("report.js"), thumbs=data,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def render_interactive_report(
    out_dir: str | Path,
    fields: pd.DataFrame,
    wells: pd.DataFrame,
    compounds: pd.DataFrame,
    plate_qc: Mapping,
    fits: Mapping[str, Fit4PL] | None = None,
    well_embeddings: np.ndarray | None = None,
    montage_html: str = "",
    extra_sections: Mapping[str, tuple[str, str]] | None = None,
    assay_specs: Mapping[str, AssaySpec] | None = None,
    assay_fits: Mapping[str, Mapping[str, Fit4PL]] | None = None,
    thumbnails: Mapping[str, str] | None = None,
    viability_min_pct: float = 70.0,
    title: str = "fibroclass screening report",
) -> Path:
    """Write `out_dir/report.html`; returns its path. `plate_qc` is plate_qc.json (or its `plates`);
    `well_embeddings` row-aligned with `wells`; `thumbnails` from `thumbnails.well_thumbnails`."""
    for col in (PLATE, WELL):
        if col not in wells:
            raise FibroclassError(f"report: wells table lacks column '{col}'")
    plates = _plates_of(plate_qc)
    specs = dict(assay_specs or {})
    fits = dict(fits or {})
    sections: dict[str, tuple[str, str]] = {
        "plate-qc": (TITLES["plate-qc"], _banner(plates) + qc_section(fields, wells, plates)),
        "compounds": (
            TITLES["compounds"],
            compound_table(compounds, [(n, s.label) for n, s in specs.items()]),
        ),
        "dose-response": (
            TITLES["dose-response"],
            dose_response_section(wells, compounds, fits, viability_min_pct),
        ),
        "heatmaps": (TITLES["heatmaps"], heatmaps_section(fields, wells, specs, thumbnails)),
        "embedding": (TITLES["embedding"], embedding_section(wells, well_embeddings, compounds)),
    }
    if specs:
        content = assays_section(wells, compounds, plates, fits, specs, assay_fits or {}, viability_min_pct)
        sections["assays"] = (TITLES["assays"], content)
    sections["controls"] = (TITLES["controls"], controls_section(wells, plates))
    sections["montage"] = (TITLES["montage"], montage_html or '<p class="note">No representative fields.</p>')
    for sid, (t, content) in (extra_sections or {}).items():
        sections[sid] = (sections[sid][0], sections[sid][1] + content) if sid in sections else (t, content)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (
        f"fibroclass {__version__} · {stamp} · {wells[PLATE].nunique()} plate(s), {len(wells)} wells, "
        f"{len(fields)} fields · static figures for papers: plots/*.png (plots/report_static.html)"
    )
    return write_page(Path(out_dir) / "report.html", title, meta, sections, thumbnails)


__all__ = ["SECTIONS", "render_interactive_report", "write_page"]
