"""`fibroclass index` and `fibroclass split` end to end on real TIFFs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from export_builders import control_rows, imagexpress_plate, write_platemap

from fibroclass.cli.app import main
from fibroclass.io.index import read_index

DONORS = ["H1", "H2", "H3", "G1", "G2", "G3"]


def _exports(tmp_path: Path) -> tuple[Path, Path]:
    wells = ["A01", "A02", "A03", "B01", "B02", "B03"]
    imagexpress_plate(
        tmp_path / "exports" / "SCREEN_01", "SCREEN_01", wells + ["C01", "C02"], sites=2, uuid=True
    )
    rows = control_rows("SCREEN_01", wells, DONORS)
    rows += [
        {"plate": "SCREEN_01", "well": "C1", "role": "treatment", "compound": "rux", "concentration_uM": 1,
         "donor": "G1", "genotype": "GoF"},
        {"plate": "SCREEN_01", "well": "D1", "role": "empty", "compound": "", "concentration_uM": "",
         "donor": "", "genotype": ""},
    ]  # fmt: skip
    return tmp_path / "exports", write_platemap(tmp_path / "platemap.csv", rows)


def test_index_then_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exports, pm = _exports(tmp_path)
    out = tmp_path / "data" / "index.parquet"
    assert main(["index", str(exports), "--platemap", str(pm), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "indexed 14 fields in 7 wells of 1 plate(s)" in captured.out
    assert "healthy        3 wells      6 fields" in captured.out
    assert "SCREEN_01: 1 imaged well(s) (2 fields) are not in plate map" in captured.err
    assert "1 plate-map well(s) have no images: D01" in captured.err
    index = read_index(out)
    assert len(index) == 14 and set(index["role"]) == {"healthy", "disease", "treatment"}

    split_dir = tmp_path / "data" / "splits" / "v1"
    assert main(["split", str(out), "--by", "donor", "--out", str(split_dir), "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert (
        text.startswith("train   2 donor(s):")
        and "val     2 donor(s)" in text
        and "test    2 donor(s)" in text
    )
    manifest = json.loads((split_dir / "manifest.json").read_text())
    assert sorted(d for ds in manifest["donors"].values() for d in ds) == sorted(DONORS)
    assert manifest["index_path"] == str(out) and manifest["params"]["seed"] == 3
    assignments = pd.read_csv(split_dir / "assignments.csv")
    assert len(assignments) == 12  # control fields only; treatment well C01 is not in a split
    assert list(assignments.columns) == ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "donor", "split"]


def test_index_cli_errors_are_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exports, _ = _exports(tmp_path)
    code = main(
        ["index", str(exports), "--platemap", str(tmp_path / "none.csv"), "--out", str(tmp_path / "i.pq")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: plate map ") and "none.csv does not exist" in err and err.count("\n") == 1
    code = main(["index", str(exports), "--platemap", "x.csv", "--out", "i.pq", "--channel", "w1"])
    assert code == 1 and "--channel 'w1' must look like TOKEN=NAME" in capsys.readouterr().err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("index", "split"):
        assert main([command, "--help"]) == 0
        assert f"Example: fibroclass {command} " in capsys.readouterr().out
