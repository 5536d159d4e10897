"""Plate-map reading: contract columns, canonical wells, and errors naming file/line/column/well."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fibroclass.errors import FibroclassError
from fibroclass.io.platemap import VEHICLE, check_controls, read_platemap

HEADER = "plate,well,role,compound,concentration_uM,donor,genotype,batch,density\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER, name: str = "map.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def test_reads_contract_columns_and_carries_extras(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "P1, a1 ,Healthy,DMSO,0,H1,healthy,b1,1.5\n"
        "P1,B02,disease,,,G1,GoF,b1,2\n"
        "\n"
        "P1,C3,treatment,ruxolitinib,0.1,G1,GoF,b2,3\n"
        "P1,D04,empty,,,,,b2,\n",
    )
    pm = read_platemap(path)
    assert list(pm.columns) == [
        "plate", "well", "role", "compound", "concentration_uM", "donor", "genotype", "batch", "density"
    ]  # fmt: skip
    assert pm["well"].tolist() == ["A01", "B02", "C03", "D04"]
    assert pm["role"].tolist() == ["healthy", "disease", "treatment", "empty"]
    assert pm["compound"].tolist() == ["DMSO", VEHICLE, "ruxolitinib", VEHICLE]
    assert pm["concentration_uM"].tolist() == [0.0, 0.0, 0.1, 0.0]
    assert pm["donor"].tolist() == ["H1", "G1", "G1", ""]
    assert pm["batch"].tolist() == ["b1", "b1", "b2", "b2"]
    assert pm["density"].iloc[:3].tolist() == [1.5, 2.0, 3.0] and pd.isna(pm["density"].iloc[3])


def test_one_plate_map_without_plate_column(tmp_path: Path) -> None:
    path = _csv(
        tmp_path, "A1,healthy,DMSO,0\nA2,disease,DMSO,0\n", header="well,role,compound,concentration_uM\n"
    )
    assert "plate" not in read_platemap(path).columns
    assert read_platemap(path, default_plate="PX")["plate"].tolist() == ["PX", "PX"]


def test_column_map_and_case_insensitive_headers(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "P1,A01,healthy,DMSO,0,H1\n",
        header="Plate,Well Name,Role,Compound,Conc (uM),Donor\n",
    )
    pm = read_platemap(path, column_map={"Well Name": "well", "Conc (uM)": "concentration_uM"})
    assert pm.iloc[0].to_dict() == {
        "plate": "P1", "well": "A01", "role": "healthy", "compound": "DMSO", "concentration_uM": 0.0, "donor": "H1"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ("plate,well,role,compound\n", "P1,A01,healthy,DMSO\n", r"lacks required column\(s\) \['concentration_uM'\]"),
        (HEADER, "P1,A01,sick,DMSO,0,H1,healthy,,\n", r"line 2 \(well A01\): column 'role' has unknown role 'sick'"),
        (HEADER, "P1,A01,healthy,DMSO,0,H1,healthy,,\nP1,A50,healthy,DMSO,0,H1,healthy,,\n",
         r"invalid well name 'A50' in plate map .* line 3 column 'well'"),
        (HEADER, "P1,B03,treatment,rux,ten,G1,GoF,,\n", r"line 2 \(well B03\): column 'concentration_uM' value 'ten'"),
        (HEADER, "P1,B03,treatment,rux,-1,G1,GoF,,\n", r"\(well B03\): column 'concentration_uM' value '-1' must be"),
        (HEADER, "P1,B03,treatment,rux,,G1,GoF,,\n", r"\(well B03\): column 'concentration_uM' is empty"),
        (HEADER, "P1,B03,treatment,,1,G1,GoF,,\n", r"\(well B03\): column 'compound' is empty"),
        (HEADER, "P1,A1,healthy,DMSO,0,H1,,,\nP2,A1,healthy,DMSO,0,H1,,,\nP1,A01,disease,DMSO,0,G1,,,\n",
         r"duplicate well plate=P1 well=A01 on lines 2, 4"),
        (HEADER, ",A01,healthy,DMSO,0,H1,,,\n", r"\(well A01\): column 'plate' is empty"),
    ],
)  # fmt: skip
def test_validation_errors_name_file_line_column_and_well(
    tmp_path: Path, header: str, body: str, message: str
) -> None:
    path = _csv(tmp_path, body, header=header)
    with pytest.raises(FibroclassError, match=message) as info:
        read_platemap(path)
    assert str(path) in str(info.value)


def test_missing_file_and_column_map_typo(tmp_path: Path) -> None:
    with pytest.raises(FibroclassError, match="nope.csv does not exist"):
        read_platemap(tmp_path / "nope.csv")
    path = _csv(tmp_path, "P1,A01,healthy,DMSO,0,H1,,,\n")
    with pytest.raises(FibroclassError, match=r"column_map names columns \['Wel'\]"):
        read_platemap(path, column_map={"Wel": "well"})


def test_check_controls_names_the_plate_lacking_a_control(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "P1,A01,healthy,DMSO,0,H1,,,\nP1,A02,disease,DMSO,0,G1,,,\n"
        "P2,A01,healthy,DMSO,0,H1,,,\nP2,A02,treatment,rux,1,G1,,,\n",
    )
    pm = read_platemap(path)
    check_controls(pm[pm["plate"] == "P1"])
    with pytest.raises(FibroclassError, match=r"plate 'P2' has no control well\(s\) with role 'disease'"):
        check_controls(pm)
