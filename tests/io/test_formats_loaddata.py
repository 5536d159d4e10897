"""CellProfiler LoadData CSVs: channels by column name or order, relative paths, frames, missing files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from format_plates import KEYS, exported, pixels, raw, source_plate

from fibroclass.io.discover import discover_fields


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    root = tmp_path_factory.mktemp("loaddata")
    index, _ = source_plate(root)
    return index, root


def test_loaddata_csv_gives_same_fields_and_pixels(plate):
    index, root = plate
    res = exported(index, "loaddata", root)
    assert res.formats == {str(root / "loaddata"): "loaddata"} and res.problems == []
    assert res.fields[KEYS].values.tolist() == index[KEYS].values.tolist()
    np.testing.assert_array_equal(pixels(res.fields), pixels(index))


def test_channels_by_loaddata_column_name(plate):
    index, root = plate
    res = discover_fields(root / "loaddata", channel_map={"origdna": "nuclei", "origactin": "actin"})
    assert res.channels == ["nuclei", "actin"]
    np.testing.assert_array_equal(raw(res.fields, "actin"), raw(index, "actin"))


def test_row_col_keys_frames_absolute_paths_and_missing_files(tmp_path):
    stack = np.stack([np.full((5, 6), v, np.uint16) for v in (7, 9)])
    tifffile.imwrite(tmp_path / "f.tif", stack, metadata=None)
    tifffile.imwrite(tmp_path / "g.tif", stack[0])
    rows = [
        {"Metadata_Row": "C", "Metadata_Col": 5, "Metadata_Field": 3, "Image_FileName_Actin": "f.tif",
         "Image_PathName_Actin": str(tmp_path), "Image_Frame_Actin": 0, "Image_FileName_DNA": "f.tif",
         "Image_PathName_DNA": "", "Image_Frame_DNA": 1},
        {"Metadata_Row": "C", "Metadata_Col": 6, "Metadata_Field": 1, "Image_FileName_Actin": "gone.tif",
         "Image_PathName_Actin": "", "Image_Frame_Actin": "", "Image_FileName_DNA": "g.tif",
         "Image_PathName_DNA": "", "Image_Frame_DNA": ""},
    ]  # fmt: skip
    (tmp_path / "csvs").mkdir()
    (tmp_path / "csvs" / "notes.csv").write_text("a,b\n1,2\n")
    for r in rows:
        r["Image_PathName_DNA"] = ".."  # relative to the CSV's folder
    pd.DataFrame(rows).to_csv(tmp_path / "csvs" / "load_data.csv", index=False)
    res = discover_fields(tmp_path / "csvs")
    assert res.fields[KEYS].values.tolist() == [["csvs", "C05", 3]]
    assert raw(res.fields, "actin").max() == 7 and raw(res.fields, "nuclei").max() == 9
    assert any("1 missing file(s)" in p and "gone.tif" in p for p in res.problems)
