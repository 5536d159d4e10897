"""Plate-map and well mix-ups: named in a warning (kept in run.json), the rest of the plate scored as if clean."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from robust_kit import field_row, run, well_row


def _warned(result, *parts: str) -> str:
    """The warning that contains every one of `parts` (also recorded in run.json)."""
    hits = [w for w in result.warnings if all(p in w for p in parts)]
    assert hits, f"no warning with {parts}: {result.warnings}"
    recorded = json.loads((result.out_dir / "run.json").read_text()).get("warnings", [])
    assert hits[0] in recorded, "warning not kept in run.json"
    return hits[0]


def test_platemap_A1_matches_files_A01_and_back(screen, clean, model, tmp_path, assert_rest):
    pm = pd.read_csv(screen.platemap)
    pm["well"] = [f"{w[0].lower()}{int(w[1:])} " for w in pm["well"]]  # "a1 ", "b3 ", ...
    pm.to_csv(screen.platemap, index=False)
    result = run(screen, model, tmp_path / "out1")
    assert_rest(result, clean)

    for path in sorted((screen.root / "P1").glob("*.tif")):  # files say A1, map says a1
        plate, well, rest = path.name.split("_", 2)
        path.rename(path.with_name(f"{plate}_{well[0]}{int(well[1:])}_{rest}"))
    assert (screen.root / "P1" / "P1_C1_s1_w1.tif").is_file()
    assert_rest(run(screen, model, tmp_path / "out2"), clean)


def _append_rows(screen, rows: list[dict]) -> None:
    pm = pd.read_csv(screen.platemap)
    pd.concat([pm, pd.DataFrame(rows)], ignore_index=True).to_csv(screen.platemap, index=False)


def test_identical_duplicate_platemap_rows_count_once(screen, clean, model, tmp_path, assert_rest):
    pm = pd.read_csv(screen.platemap)
    _append_rows(screen, [pm[pm["well"] == "C01"].iloc[0].to_dict()])
    result = run(screen, model, tmp_path / "out")
    _warned(result, str(screen.platemap), "C01", "more than once")
    assert well_row(result, "C01")["n_fields"] == 2
    assert_rest(result, clean)


def test_conflicting_duplicate_rows_leave_only_that_well_out(screen, clean, model, tmp_path, assert_rest):
    rows = [{"plate": "P1", "well": "C1", "role": "treatment", "compound": "drugY", "concentration_uM": 5.0}]
    _append_rows(screen, rows)
    result = run(screen, model, tmp_path / "out")
    warning = _warned(result, str(screen.platemap), "C01", "lines 8, 13")
    assert "different values" in warning and "left out" in warning
    assert_rest(result, clean, dropped={"C01"})


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ({"well": "Z99", "role": "treatment"}, ["line 13", "column 'well'", "Z99"]),
        ({"well": "H05", "role": "contrl"}, ["line 13", "column 'role'", "contrl"]),
        (
            {"well": "H06", "role": "treatment", "concentration_uM": "ten"},
            ["line 13", "concentration_uM", "ten"],
        ),
    ],
    ids=["unknown-well", "unknown-role", "bad-concentration"],
)
def test_invalid_platemap_row_is_left_out_and_named(screen, clean, model, tmp_path, row, named, assert_rest):
    _append_rows(screen, [{"plate": "P1", "compound": "drugZ", "concentration_uM": 1.0, **row}])
    result = run(screen, model, tmp_path / "out")
    _warned(result, str(screen.platemap), *named)
    assert_rest(result, clean)


def test_platemap_wells_without_images_are_named(screen, clean, model, tmp_path, assert_rest):
    for path in (screen.root / "P1").glob("P1_C03_*"):
        path.unlink()
    result = run(screen, model, tmp_path / "out")
    _warned(result, "plate P1", "have no images", "C03")
    assert_rest(result, clean, dropped={"C03"})


def test_images_without_platemap_row_are_named_and_dropped(screen, clean, model, tmp_path, assert_rest):
    for path in (screen.root / "P1").glob("P1_C01_*"):
        (path.parent / path.name.replace("C01", "H12")).write_bytes(path.read_bytes())
    result = run(screen, model, tmp_path / "out")
    _warned(result, "plate P1", "not in plate map", "H12")
    assert_rest(result, clean)
    with pytest.raises(AssertionError):
        field_row(result, "H12")
