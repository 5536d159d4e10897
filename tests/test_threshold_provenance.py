"""Every shipped threshold file says where its values come from (docs/calls.md) and claims no calibration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTION = "Where the thresholds come from"


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "score").glob("*.yaml")))
def test_score_config_points_to_the_origin_of_its_values(name):
    text = (REPO / "configs" / "score" / name).read_text()
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert f'docs/calls.md, "{SECTION}"' in " ".join(header.split()), name
    assert "defaults to check on your own plates" in " ".join(header.split()), name
    assert not re.search(r"(?<!not )\bcalibrated on\b", header, re.I), name  # the old false claim


def test_the_origin_section_exists_and_names_every_readout_section():
    calls = (REPO / "docs" / "calls.md").read_text()
    assert f"## {SECTION}" in calls
    section = calls.split(f"## {SECTION}", 1)[1]
    for key in (
        "qc.z_prime_min",
        "calls.",
        "dose_response.",
        "field_qc.",
        "nuclei.",
        "offtarget.",
        "organization.",
    ):
        assert key in section, key
    assert (
        "readout-vs-ground-truth" in section
        and "## Readout vs ground truth" in (REPO / "benchmarks" / "README.md").read_text()
    )
