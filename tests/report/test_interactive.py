"""The interactive report.html: one self-contained file (plotly.js once, nothing fetched), every section and
panel, hover data and thumbnails for every imaged well, a sortable compound table, static PNGs kept."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from plotly.offline import get_plotlyjs
from report_data import NAMES

from fibroclass.errors import FibroclassError
from fibroclass.scoring.report.embedding import project
from fibroclass.scoring.report.figures import dom_id
from fibroclass.scoring.report.interactive import SECTIONS, render_interactive_report
from fibroclass.scoring.report.thumbnails import well_thumbnails


@pytest.fixture
def report(scored_report) -> dict:
    return scored_report


def outside_scripts(html: str) -> str:
    return re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)


def test_one_file_with_plotly_js_once_and_nothing_fetched(report):
    html = report["html"]
    assert report["path"].name == "report.html"
    head = get_plotlyjs()[:300]
    assert html.count(head) == 1  # the bundle, inlined exactly once
    assert "cdn.plot.ly" not in outside_scripts(html) and "<script src" not in html
    refs = re.findall(r'(?:src|href)="([^"]*)"', outside_scripts(html))
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [
        r for r in refs if not r.startswith(("data:", "#"))
    ][:3]


def test_every_section_and_panel(report):
    html = report["html"]
    for sid in (*SECTIONS, "organization"):
        assert f'<section id="{sid}">' in html, sid
    for name in NAMES:
        assert f'id="{dom_id("dr", name)}"' in html  # one dose-response panel per compound
    for plate in ("P96", "P384"):
        assert f'id="{dom_id("plate", plate)}"' in html
    for div in (
        "fc-embedding",
        "fc-controls",
        "fc-field-qc",
        dom_id("assay-grid", "il6_pg_ml"),
        dom_id("assay-scatter", "il6_pg_ml"),
    ):
        assert f'id="{div}"' in html, div
    n_divs = html.count('class="plotly-graph-div"')
    n_compounds = len(report["compounds"])  # the three treatments and the reference drug
    assert n_compounds == len(NAMES) + 1
    assert (
        n_divs == n_compounds + 2 + 5
    )  # dose response, plates, embedding/controls/field QC/assay grid+scatter
    # the QC panel: plate table with verdicts, domain shift (present in plate_qc.json) and the IL-6 window
    assert (
        'id="fc-plate-table"' in html
        and "out of distribution" in html
        and "IL-6 (disease/healthy, Z′)" in html
    )


def test_static_pngs_and_page_stay_for_papers(report):
    plots = report["out"] / "plots"
    names = {p.name for p in plots.glob("*.png")}
    assert {
        "dose_response.png",
        "controls.png",
        "heatmap_rescue_P96.png",
        "heatmap_viability_P384.png",
    } <= names
    static = (plots / "report_static.html").read_text()
    assert "<script" not in static and 'id="dose-response"' in static


def test_heatmap_hover_and_thumbnails_cover_the_wells(report):
    html = report["html"]
    thumbs = json.loads(
        re.search(r'<script type="application/json" id="fc-thumbs">(.*?)</script>', html, re.S).group(1)
    )
    imaged = report["fields"][report["fields"]["qc_pass"]].drop_duplicates(
        ["Metadata_Plate", "Metadata_Well"]
    )
    assert len(thumbs) == len(imaged) and all(
        v.startswith("data:image/jpeg;base64,") for v in thumbs.values()
    )
    assert "P96|A01" in thumbs
    # every heatmap cell carries its key and hover text (well, compound, dose, rescue, viability, IL-6, flags)
    assert '"P96|B05"' in html and "IL-6 " in html
    assert "\\u003cb\\u003eflags\\u003c\\u002fb\\u003e: offtarget" in html  # (JSON-escaped HTML)
    assert html.count("window.fcWirePlate('fc-plate-") == 2
    menu = re.findall(r'"label":"([^"]+)","method":"restyle"', html)
    assert {"rescue %", "viability %", "disease score", "fields failing QC", "IL-6 rescue %"} <= set(menu)


def test_compound_table_is_sortable_and_links_to_panels(report):
    html = report["html"]
    table = re.search(r'<table class="fc-sortable" id="fc-compound-table">.*?</table>', html, re.S).group(0)
    assert table.count("<tr>") == len(report["compounds"]) + 1 and 'data-kind="num"' in table
    for name in NAMES:
        assert f'href="#{dom_id("dr", name)}"' in table
    assert "IL-6 discordant" in table and "ρ morphology vs IL-6" in table
    assert 'class="fc-filter"' in html


def test_embedding_puts_rescue_along_the_disease_axis(report):
    coords, ratio = project(report["wells"], report["well_embeddings"])
    w = report["wells"]
    healthy, disease = coords[w["role"] == "healthy"].mean(0), coords[w["role"] == "disease"].mean(0)
    axis = (healthy - disease) / np.linalg.norm(healthy - disease)
    top = (w["compound"] == "rescuer") & (w["concentration_uM"] == 10.0)
    along = (coords[top].mean(0) - disease) @ axis / np.linalg.norm(healthy - disease)
    assert 0.8 < along < 1.2 and ratio[0] > 0.5
    assert "disease axis" in report["html"]


def test_thumbnails_skip_unreadable_fields_and_respect_the_cap(report, tmp_path):
    fields = report["fields"].copy()
    first = fields.index[fields["qc_pass"]][0]
    fields.loc[first, "path_actin"] = str(tmp_path / "gone.tif")
    thumbs = well_thumbnails(fields.iloc[: first + 40], max_wells=10)
    assert len(thumbs) == 9 or len(thumbs) == 10
    assert well_thumbnails(fields, max_wells=0) == {}


def test_missing_key_columns_raise(tmp_path, report):
    with pytest.raises(FibroclassError, match="Metadata_Well"):
        render_interactive_report(
            tmp_path,
            report["fields"],
            report["wells"].drop(columns=["Metadata_Well"]),
            report["compounds"],
            {},
        )


def test_degenerate_runs_still_render(tmp_path):
    """No usable rescue, no embeddings, no roles, no wells: the page is written with notes, never a crash."""
    import pandas as pd

    wells = pd.DataFrame({
        "Metadata_Plate": ["P"] * 4, "Metadata_Well": ["A01", "A02", "B01", "B02"],
        "role": ["healthy", "disease", "treatment", "treatment"], "compound": ["DMSO", "DMSO", "x", "x"],
        "concentration_uM": [0, 0, 1, 10], "rescue_pct": [np.nan] * 4, "disease_score": [np.nan] * 4,
    })  # fmt: skip
    fields = pd.DataFrame(columns=["Metadata_Plate", "Metadata_Well", "qc_pass"])
    comp = pd.DataFrame({"compound": ["x"], "call": ["inconclusive"], "call_reason": ["no dose"]})
    html = render_interactive_report(
        tmp_path, fields, wells, comp, {}, {}, np.full((4, 3), np.nan)
    ).read_text()
    assert "Too few wells with an embedding" in html and "fc-dr-x" in html  # a panel without points
    bare = wells.drop(columns=["role", "rescue_pct", "disease_score"])
    qc = {"plates": {"P": {"pass": False, "reasons": ["no controls"]}}}
    html = render_interactive_report(tmp_path, fields, bare, comp, qc, {}, np.zeros((4, 0))).read_text()
    assert "No well embeddings" in html and "no controls" in html
    assert (
        "No wells."
        in render_interactive_report(tmp_path, fields, wells.iloc[:0], pd.DataFrame(), {}).read_text()
    )


def test_thumbnails_that_fail_are_a_named_report_problem(scored_report, tmp_path, monkeypatch):
    import fibroclass.scoring.report.build as build

    def boom(*_a, **_k):
        raise MemoryError("no room for thumbnails")

    monkeypatch.setattr(build, "well_thumbnails", boom)
    d = scored_report
    problems: list[str] = []
    path = build.write_report(
        tmp_path, d["fields"], d["wells"], d["compounds"], d["plate_qc"]["plates"], d["fits"], {},
        problems=problems, well_embeddings=d["well_embeddings"],
    )  # fmt: skip
    assert problems == ["field thumbnails failed: MemoryError: no room for thumbnails"]
    html = path.read_text()
    assert "field thumbnails failed: MemoryError" in html and 'id="fc-plate-P96"' in html
