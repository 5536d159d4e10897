"""Well names: canonical form `A01` for 96/384/1536-well plates (rows A..Z then AA..AF, columns 1..48)."""

from __future__ import annotations

import re

from fibroclass.errors import FibroclassError

MAX_ROWS = 32  # 1536-well plate: A..Z, AA..AF
MAX_COLS = 48
_WELL_RE = re.compile(r"^([A-Z]{1,2})0*(\d{1,2})$")


def row_index(row: str) -> int:
    """1-based index of a row name: A -> 1, Z -> 26, AA -> 27, AF -> 32."""
    if len(row) == 1:
        return ord(row) - ord("A") + 1
    return 26 + ord(row[1]) - ord("A") + 1


def row_name(index: int) -> str:
    """Row name of a 1-based row index (inverse of `row_index`)."""
    if not 1 <= index <= MAX_ROWS:
        raise FibroclassError(f"row number {index} is outside 1..{MAX_ROWS}")
    if index <= 26:
        return chr(ord("A") + index - 1)
    return "A" + chr(ord("A") + index - 27)


def _invalid(value: object, where: str | None, why: str) -> FibroclassError:
    loc = f" in {where}" if where else ""
    return FibroclassError(f"invalid well name {value!r}{loc}: {why}")


def canonical_well(value: object, where: str | None = None) -> str:
    """Canonical well name (`a1`, `A1`, `A001` -> `A01`; `af48` -> `AF48`).

    `where` (e.g. "plate map.csv line 7") is added to the error message of invalid names.
    """
    text = str(value).strip().upper()
    m = _WELL_RE.match(text)
    if m is None:
        raise _invalid(value, where, "expected a row letter (A..AF) and a column number, e.g. A01")
    row, col = m.group(1), int(m.group(2))
    if len(row) == 2 and not ("AA" <= row <= "AF"):
        raise _invalid(value, where, "two-letter rows must be AA..AF (1536-well plates)")
    if not 1 <= col <= MAX_COLS:
        raise _invalid(value, where, f"column must be 1..{MAX_COLS}")
    return f"{row}{col:02d}"


def well_row_col(well: str) -> tuple[str, int]:
    """Row name and column number of a well: `B07` -> ("B", 7)."""
    canon = canonical_well(well)
    m = _WELL_RE.match(canon)
    assert m is not None  # canonical names always match
    return m.group(1), int(m.group(2))


def well_from_row_col(row: int | str, col: int | str, where: str | None = None) -> str:
    """Canonical well from a row (1-based number or letters) and a 1-based column: (2, 3) -> `B03`."""
    row_text = str(row).strip()
    if row_text.isdigit():
        try:
            row_text = row_name(int(row_text))
        except FibroclassError as exc:
            raise _invalid(f"row {row} col {col}", where, str(exc)) from None
    return canonical_well(f"{row_text}{str(col).strip()}", where)


def well_sort_key(well: str) -> tuple[int, int]:
    """Sort key ordering wells row-major (A01 < A02 < B01 < ... < Z48 < AA01)."""
    row, col = well_row_col(well)
    return row_index(row), col
