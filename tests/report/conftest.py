"""Report tests: helpers in this folder (browser_kit, report_data) importable by name."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def scored_report(tmp_path_factory) -> dict:
    """The report of `report_data.scored_screen`, written once by the real `write_report` (interactive
    page, static PNGs and page): the data it was made from plus `path`, `html` and `out`."""
    from report_data import scored_screen

    from fibroclass.scoring.report.build import write_report

    tmp = tmp_path_factory.mktemp("report")
    d = scored_screen(tmp)
    path = write_report(
        tmp / "out", d["fields"], d["wells"], d["compounds"], d["plate_qc"]["plates"], d["fits"], {},
        well_embeddings=d["well_embeddings"], assay_specs=d["assay_specs"], assay_fits=d["assay_fits"],
    )  # fmt: skip
    return {**d, "path": path, "html": path.read_text(), "out": tmp / "out"}
