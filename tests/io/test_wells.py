"""Well-name canonicalization for 96/384/1536-well plates."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fibroclass.errors import FibroclassError
from fibroclass.io.wells import (
    canonical_well,
    row_index,
    row_name,
    well_from_row_col,
    well_row_col,
    well_sort_key,
)


@pytest.mark.parametrize(
    ("raw", "canon"),
    [
        ("a1", "A01"),
        ("A1", "A01"),
        ("A01", "A01"),
        ("A001", "A01"),
        (" b7 ", "B07"),
        ("H12", "H12"),
        ("P24", "P24"),
        ("Z48", "Z48"),
        ("AA01", "AA01"),
        ("af48", "AF48"),
        ("AF048", "AF48"),
    ],
)
def test_canonical_well(raw: str, canon: str) -> None:
    assert canonical_well(raw) == canon


@pytest.mark.parametrize("raw", ["", "1A", "A", "A0", "A49", "AG01", "BA01", "A1B", "A-1", "ZZ12", "A100"])
def test_invalid_well_names_raise_naming_the_value(raw: str) -> None:
    with pytest.raises(FibroclassError, match=f"invalid well name {raw!r}"):
        canonical_well(raw)


def test_error_names_where_the_well_came_from() -> None:
    with pytest.raises(FibroclassError, match="map.csv line 7"):
        canonical_well("A99", where="map.csv line 7")


def test_row_col() -> None:
    assert well_row_col("B07") == ("B", 7)
    assert well_row_col("b7") == ("B", 7)
    assert well_row_col("AF48") == ("AF", 48)
    assert [row_index(r) for r in ("A", "P", "Z", "AA", "AF")] == [1, 16, 26, 27, 32]
    assert [row_name(i) for i in (1, 16, 26, 27, 32)] == ["A", "P", "Z", "AA", "AF"]
    assert well_from_row_col(2, 3) == "B03"
    assert well_from_row_col("02", "03") == "B03"
    assert well_from_row_col(28, 1) == "AB01"
    assert well_from_row_col("c", "4") == "C04"
    with pytest.raises(FibroclassError, match="row 33"):
        well_from_row_col(33, 1)


def test_sort_key_orders_rows_then_columns_with_1536_rows_last() -> None:
    wells = ["AA01", "B01", "A10", "Z02", "A02"]
    assert sorted(wells, key=well_sort_key) == ["A02", "A10", "B01", "Z02", "AA01"]


def test_io_does_not_import_torch() -> None:
    code = (
        "import sys; import fibroclass.io.index, fibroclass.io.images, fibroclass.io.platemap; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
