"""Field index: discovered fields joined with the plate map, warnings, parquet round trip."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from export_builders import control_rows, imagexpress_plate, operetta_plate, write_platemap

from fibroclass.errors import FibroclassError
from fibroclass.io.index import build_index, index_channels, read_index, write_index


def _plate(tmp_path: Path) -> tuple[Path, Path]:
    """Plate P1: A01..A04 imaged (2 sites); the map has A01..A03 and B01 (no images)."""
    imagexpress_plate(tmp_path / "img" / "P1", "P1", ["A01", "A02", "A03", "A04"], sites=2)
    rows = control_rows("P1", ["A1", "A02", "A3", "B1"], ["H1", "G1", "H2", "G2"])
    rows[2] |= {"role": "treatment", "compound": "ruxolitinib", "concentration_uM": 0.5}
    for row in rows:
        row["batch"] = "b7"
    return tmp_path / "img", write_platemap(tmp_path / "map.csv", rows)


def test_join_columns_order_and_warnings(tmp_path: Path) -> None:
    img, pm = _plate(tmp_path)
    res = build_index(img, pm)
    df = res.index
    assert list(df.columns) == [
        "Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Col", "Metadata_Site",
        "path_actin", "path_nuclei", "megapixels", "bit_depth", "pixel_size_um",
        "role", "compound", "concentration_uM", "donor", "genotype", "batch",
    ]  # fmt: skip
    assert df[["Metadata_Well", "Metadata_Site", "role", "donor"]].values.tolist() == [
        ["A01", 1, "healthy", "H1"],
        ["A01", 2, "healthy", "H1"],
        ["A02", 1, "disease", "G1"],
        ["A02", 2, "disease", "G1"],
        ["A03", 1, "treatment", "H2"],
        ["A03", 2, "treatment", "H2"],
    ]
    assert df["concentration_uM"].tolist() == [0, 0, 0, 0, 0.5, 0.5]
    assert df["Metadata_Site"].dtype == "int64"
    assert index_channels(df) == ["actin", "nuclei"]
    assert len(res.warnings) == 2
    assert "plate P1: 1 plate-map well(s) have no images: B01" in res.warnings[0]
    assert "plate P1: 1 imaged well(s) (2 fields) are not in plate map" in res.warnings[1]
    assert res.warnings[1].endswith("were dropped: A04")


def test_platemap_without_plate_column_uses_the_single_plate(tmp_path: Path) -> None:
    operetta_plate(tmp_path / "Opera P9", [(1, 1), (1, 2)], sites=1)
    pm = write_platemap(tmp_path / "map.csv", control_rows(None, ["A01", "A02"], ["H1", "G1"]))
    df = build_index(tmp_path / "Opera P9", pm).index
    assert df["Metadata_Plate"].tolist() == ["Opera P9", "Opera P9"]
    assert df["role"].tolist() == ["healthy", "disease"]


def test_two_plates_need_a_plate_column(tmp_path: Path) -> None:
    imagexpress_plate(tmp_path / "img", "P1", ["A01"], sites=1)
    imagexpress_plate(tmp_path / "img", "P2", ["A01"], sites=1)
    pm = write_platemap(tmp_path / "map.csv", control_rows(None, ["A01"], ["H1"]))
    with pytest.raises(
        FibroclassError, match=r"no 'plate' column but images come from 2 plates \['P1', 'P2'\]"
    ):
        build_index(tmp_path / "img", pm)


def test_plate_names_matching_no_images_list_both_sets(tmp_path: Path) -> None:
    imagexpress_plate(tmp_path / "img", "P1", ["A01"], sites=1)
    pm = write_platemap(tmp_path / "map.csv", control_rows("Plate1", ["A01"], ["H1"]))
    with pytest.raises(
        FibroclassError, match=r"names plates \['Plate1'\] but the images are from plates \['P1'\]"
    ):
        build_index(tmp_path / "img", pm)


def test_plate_of_the_map_without_images_is_a_warning(tmp_path: Path) -> None:
    imagexpress_plate(tmp_path / "img", "P1", ["A01"], sites=1)
    rows = control_rows("P1", ["A01"], ["H1"]) + control_rows("P2", ["A01"], ["G1"])
    res = build_index(tmp_path / "img", write_platemap(tmp_path / "map.csv", rows))
    assert res.index["Metadata_Plate"].tolist() == ["P1"]
    assert any(w.startswith("plate P2 of plate map") and "has no images" in w for w in res.warnings)


def test_discovery_problems_become_warnings(tmp_path: Path) -> None:
    img, pm = _plate(tmp_path)
    (img / "P1" / "P1_A01_s2_w2.tif").unlink()
    res = build_index(img, pm)
    assert res.index["Metadata_Site"].tolist()[:1] == [1] and len(res.index) == 5
    assert any(w.startswith("discovery: plate P1 well A01 site 2: missing channel") for w in res.warnings)


def test_parquet_round_trip_and_read_errors(tmp_path: Path) -> None:
    img, pm = _plate(tmp_path)
    df = build_index(img, pm).index
    path = write_index(df, tmp_path / "out" / "index.parquet")
    back = read_index(path)
    pd.testing.assert_frame_equal(back, df)
    with pytest.raises(FibroclassError, match="nope.parquet does not exist"):
        read_index(tmp_path / "nope.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(FibroclassError, match="cannot read field index .*bad.parquet"):
        read_index(tmp_path / "bad.parquet")
    write_index(df.drop(columns=["role", "path_actin", "path_nuclei"]), tmp_path / "thin.parquet")
    with pytest.raises(FibroclassError, match=r"thin.parquet lacks column\(s\) \['role', 'path_<channel>'\]"):
        read_index(tmp_path / "thin.parquet")
