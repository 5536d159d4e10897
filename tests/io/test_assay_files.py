"""Secondary readout files (io.assays): units from headers, suffixes and YAML; one-line errors naming
the file, the line and the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fibroclass.errors import FibroclassError
from fibroclass.io.assays import files_fingerprint, read_assay_file, read_assays


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_units_from_header_suffix_and_yaml(tmp_path):
    csv = write(
        tmp_path / "elisa.csv",
        "plate,well,IL6 [pg/mL],wound_closure_pct,tnf (ng/mL),signal\nP1,A1,120.5,40,,3\nP1,b02,NA,55.5,2.5,4\n",
    )
    write(tmp_path / "elisa.yaml", "IL6: {label: IL-6, scale: log}\nsignal: {unit: RFU}\n")
    table, specs = read_assay_file(csv)
    by = {s.name: s for s in specs}
    assert list(by) == ["IL6", "wound_closure_pct", "tnf", "signal"]
    assert (by["IL6"].label, by["IL6"].unit, by["IL6"].scale) == ("IL-6", "pg/mL", "log")
    assert by["wound_closure_pct"].unit == "%" and by["tnf"].unit == "ng/mL" and by["signal"].unit == "RFU"
    assert by["IL6"].title() == "IL-6 (pg/mL)"
    assert table["well"].tolist() == ["A01", "B02"]  # canonical well names
    assert table["IL6"].iloc[0] == 120.5 and np.isnan(table["IL6"].iloc[1]) and np.isnan(table["tnf"].iloc[0])


def test_several_files_merge_by_well_and_readout(tmp_path):
    a = write(tmp_path / "il6_plate1.csv", "plate,well,il6_pg_ml\nP1,A01,100\nP1,A02,200\n")
    b = write(tmp_path / "il6_plate2.csv", "plate,well,il6_pg_ml\nP2,A01,300\n")
    c = write(tmp_path / "scratch.tsv", "plate\twell\twound_closure_pct\nP1\tA01\t44\n")
    data = read_assays([a, b, c])
    assert data.names == ["il6_pg_ml", "wound_closure_pct"]
    t = data.table.set_index(["plate", "well"])
    assert t.loc[("P1", "A01"), "il6_pg_ml"] == 100 and t.loc[("P1", "A01"), "wound_closure_pct"] == 44
    assert t.loc[("P2", "A01"), "il6_pg_ml"] == 300 and np.isnan(t.loc[("P2", "A01"), "wound_closure_pct"])
    assert (
        "il6_plate1.csv" in t.loc[("P1", "A01"), "assay_file"]
        and "scratch.tsv" in t.loc[("P1", "A01"), "assay_file"]
    )
    before = files_fingerprint([a])
    a.write_text("plate,well,il6_pg_ml\nP1,A01,101\nP1,A02,200\n")
    assert files_fingerprint([a]) != before


@pytest.mark.parametrize(
    ("text", "yaml", "match"),
    [
        ("plate,well,il6\nP1,A01,12 pg\n", None, r"x\.csv line 2, column 'il6': '12 pg' is not a number"),
        ("plate,well,il6\nP1,Z77,1\n", None, r"invalid well name 'Z77' in assay file .*x\.csv line 2"),
        ("plate,well,il6\nP1,A01,1\nP1,A1,2\n", None, r"x\.csv line 3: well P1 A01 appears twice"),
        ("plate,position,il6\nP1,A01,1\n", None, r"x\.csv: no 'well' column"),
        ("plate,well\nP1,A01\n", None, r"no readout column"),
        ("plate,well,IL-6 [pg/mL]\nP1,A01,1\n", None, r"column 'IL-6 \[pg/mL\]': readout name 'IL-6'"),
        ("plate,well,il6\nP1,A01,1\n", "il6: {scale: sqrt}\n", r"x\.yaml: 'il6' scale must be linear or log"),
        (
            "plate,well,il6\nP1,A01,1\n",
            "il6: {units: pg}\n",
            r"x\.yaml: 'il6' has unknown key\(s\) \['units'\]",
        ),
        ("plate,well,il6\nP1,A01,1\n", "tnf: {unit: pg}\n", r"x\.yaml: readout 'tnf' is not a column"),
        ("plate,well,il6\nP1,A01,inf\n", None, r"'inf' is not finite"),
    ],
)
def test_bad_files_are_one_line_errors_naming_file_and_place(tmp_path, text, yaml, match):
    csv = write(tmp_path / "x.csv", text)
    if yaml:
        write(tmp_path / "x.yaml", yaml)
    with pytest.raises(FibroclassError, match=match) as err:
        read_assays([csv])
    assert "\n" not in str(err.value)


def test_conflicts_between_files(tmp_path):
    a = write(tmp_path / "a.csv", "plate,well,il6_pg_ml\nP1,A01,100\n")
    b = write(tmp_path / "b.csv", "plate,well,il6_pg_ml\nP1,A01,120\n")
    with pytest.raises(
        FibroclassError,
        match=r"'il6_pg_ml' for plate P1 well A01 is given by more than one file: .*a\.csv, .*b\.csv",
    ):
        read_assays([a, b])
    c = write(tmp_path / "c.csv", "plate,well,il6_pg_ml\nP2,A01,100\n")
    write(tmp_path / "c.yaml", "il6_pg_ml: {scale: log}\n")
    with pytest.raises(
        FibroclassError, match=r"'il6_pg_ml': .*a\.csv says pg/mL \(linear\), .*c\.csv says pg/mL \(log\)"
    ):
        read_assays([a, c])
    with pytest.raises(FibroclassError, match=r"assay file .*missing\.csv does not exist"):
        read_assays([tmp_path / "missing.csv"])
