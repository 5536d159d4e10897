"""Reading and validating plate maps (CSV, one row per well; contract in DESIGN.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.wells import canonical_well
from fibroclass.schema import (
    COMPOUND,
    CONC,
    DONOR,
    GENOTYPE,
    PLATEMAP_REQUIRED,
    PM_PLATE,
    PM_WELL,
    ROLE,
    ROLE_DISEASE,
    ROLE_EMPTY,
    ROLE_HEALTHY,
    ROLES,
)

# Compound given to control/empty wells whose `compound` cell is blank.
VEHICLE = "vehicle"
# Roles for which a blank compound means vehicle and a blank concentration means 0.
_NO_DRUG_ROLES = (ROLE_HEALTHY, ROLE_DISEASE, ROLE_EMPTY)
_CONTRACT = (PM_PLATE, PM_WELL, ROLE, COMPOUND, CONC, DONOR, GENOTYPE)


def _line(i: int) -> int:
    """CSV line number of data row `i` (line 1 is the header)."""
    return i + 2


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FibroclassError(f"plate map {path} does not exist")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FibroclassError(f"cannot read plate map {path}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda s: s.str.strip())


def _rename_columns(df: pd.DataFrame, path: Path, column_map: Mapping[str, str] | None) -> pd.DataFrame:
    """Apply `column_map` (file column -> contract column), then match contract names case-insensitively."""
    if column_map:
        missing = [src for src in column_map if src not in df.columns]
        if missing:
            raise FibroclassError(
                f"plate map {path}: column_map names columns {missing} that are not in the file "
                f"(columns: {list(df.columns)})"
            )
        df = df.rename(columns=dict(column_map))
    renames = {}
    for col in df.columns:
        low = col.lower()
        if low in _CONTRACT and col != low and low not in df.columns:
            renames[col] = low
    df = df.rename(columns=renames)
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise FibroclassError(f"plate map {path}: columns {dupes} appear more than once")
    return df


def _concentration(text: str, role: str, where: str) -> float:
    if text == "":
        if role in _NO_DRUG_ROLES:
            return 0.0
        raise FibroclassError(f"{where}: column '{CONC}' is empty for a '{role}' well")
    try:
        value = float(text)
    except ValueError:
        raise FibroclassError(f"{where}: column '{CONC}' value {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise FibroclassError(f"{where}: column '{CONC}' value {text!r} must be a finite number >= 0")
    return value


def _maybe_numeric(s: pd.Series) -> pd.Series:
    """Extra columns whose non-blank values are all numbers become numeric (blank -> NaN)."""
    nonblank = s[s != ""]
    if nonblank.empty:
        return s
    converted = pd.to_numeric(nonblank, errors="coerce")
    if converted.isna().any():
        return s
    return pd.to_numeric(s.replace("", float("nan")))


def read_platemap(
    path: str | Path,
    column_map: Mapping[str, str] | None = None,
    default_plate: str | None = None,
    problems: list[str] | None = None,
) -> pd.DataFrame:
    """Read and validate a plate map CSV (`.tsv` is read tab-separated).

    Columns: `plate` (optional; filled with `default_plate` when missing or blank), `well` (canonicalized
    to `A01`), `role` (lower-cased, one of schema.ROLES), `compound` (blank -> "vehicle" for
    healthy/disease/empty wells), `concentration_uM` (float >= 0; blank -> 0 for those roles), `donor`
    and `genotype` when present (strings), then any other columns unchanged (numeric when every value is).
    `column_map` renames file columns to contract names, e.g. {"Well": "well", "Conc (uM)": "concentration_uM"};
    contract names also match case-insensitively. Without a `plate` column and `default_plate` the result has
    no `plate` column (one-plate map). Errors name the file, the CSV line, the column and the well.

    With a `problems` list (lenient: scoring), a row that cannot be used is left out and its error appended
    instead of raised; a well listed twice with the same values counts once, with different values it is
    left out. A file that cannot be read, lacks a required column or has no usable row always raises.
    """
    path = Path(path)
    df = _rename_columns(_read_table(path), path, column_map)
    if len(df.columns):
        df = df[(df != "").any(axis=1)]  # blank lines; keep the index for CSV line numbers
    missing = [c for c in PLATEMAP_REQUIRED if c not in df.columns]
    if missing:
        raise FibroclassError(
            f"plate map {path} lacks required column(s) {missing} (columns: {list(df.columns)}); "
            "rename them or pass a column mapping"
        )
    if df.empty:
        raise FibroclassError(f"plate map {path} has no rows")
    if PM_PLATE not in df.columns and default_plate is not None:
        df.insert(0, PM_PLATE, str(default_plate))

    plates, wells, roles, compounds, concs, kept = [], [], [], [], [], []
    for i, rec in zip(df.index, df.to_dict("records"), strict=True):
        try:
            plate, well, role, compound, conc = _parse_row(
                rec, i, path, PM_PLATE in df.columns, default_plate
            )
        except FibroclassError as exc:
            if problems is None:
                raise
            problems.append(f"{exc}; row left out")
            continue
        kept.append(i)
        plates.append(plate)
        wells.append(well)
        roles.append(role)
        compounds.append(compound)
        concs.append(conc)
    if not kept:
        raise FibroclassError(f"plate map {path} has no usable row ({problems[0] if problems else 'none'})")
    df = df.loc[kept]

    out = pd.DataFrame(index=df.index)
    if PM_PLATE in df.columns:
        out[PM_PLATE] = plates
    out[PM_WELL] = wells
    out[ROLE] = roles
    out[COMPOUND] = compounds
    out[CONC] = np.asarray(concs, dtype=np.float64)
    for col in (DONOR, GENOTYPE):
        if col in df.columns:
            out[col] = df[col]
    for col in df.columns:
        if col not in _CONTRACT:
            out[col] = _maybe_numeric(df[col])
    out = _check_unique(out, path, problems)
    if out.empty:
        raise FibroclassError(f"plate map {path} has no usable row ({problems[0] if problems else 'none'})")
    return out.reset_index(drop=True)


def _parse_row(
    rec: dict, i: int, path: Path, has_plate: bool, default_plate: str | None
) -> tuple[str | None, str, str, str, float]:
    """(plate, well, role, compound, concentration) of one CSV row; FibroclassError naming line and column."""
    where = f"plate map {path} line {_line(i)}"
    well = canonical_well(rec[PM_WELL], where=f"{where} column '{PM_WELL}'")
    where_well = f"{where} (well {well})"
    plate = None
    if has_plate:
        plate = rec[PM_PLATE] or (str(default_plate) if default_plate is not None else "")
        if not plate:
            raise FibroclassError(f"{where_well}: column '{PM_PLATE}' is empty")
    role = rec[ROLE].lower()
    if role not in ROLES:
        raise FibroclassError(
            f"{where_well}: column '{ROLE}' has unknown role {rec[ROLE]!r} (allowed: {', '.join(ROLES)})"
        )
    compound = rec[COMPOUND]
    if compound == "":
        if role not in _NO_DRUG_ROLES:
            raise FibroclassError(f"{where_well}: column '{COMPOUND}' is empty for a '{role}' well")
        compound = VEHICLE
    return plate, well, role, compound, _concentration(rec[CONC], role, where_well)


def _check_unique(pm: pd.DataFrame, path: Path, problems: list[str] | None = None) -> pd.DataFrame:
    """`pm` when every (plate, well) is listed once; else raise, or (with `problems`) resolve and note."""
    keys = [c for c in (PM_PLATE, PM_WELL) if c in pm.columns]
    dup = pm.duplicated(keys, keep=False)
    if dup.any() and problems is not None:
        drop: list = []
        for _, grp in pm[dup].groupby(keys, sort=False):
            label = " ".join(f"{k}={grp[k].iloc[0]}" for k in keys)
            lines = ", ".join(str(_line(int(i))) for i in grp.index)
            if (grp.astype(str).nunique() <= 1).all():
                problems.append(
                    f"plate map {path}: well {label} appears more than once (lines {lines}); counted once"
                )
                drop += list(grp.index[1:])
            else:
                problems.append(
                    f"plate map {path}: well {label} is listed on lines {lines} with different values; left out"
                )
                drop += list(grp.index)
        return pm.drop(index=drop)
    if dup.any():
        rows = pm.index[dup]
        first = pm.loc[rows[0], keys]
        same = rows[(pm.loc[rows, keys] == first).all(axis=1)]
        label = " ".join(f"{k}={first[k]}" for k in keys)
        lines = ", ".join(str(_line(int(i))) for i in same)
        raise FibroclassError(f"plate map {path}: duplicate well {label} on lines {lines}")
    return pm


def check_controls(platemap: pd.DataFrame, roles: Sequence[str] = (ROLE_HEALTHY, ROLE_DISEASE)) -> None:
    """Raise FibroclassError naming the first plate that lacks a well of one of `roles`."""
    groups = platemap.groupby(PM_PLATE, sort=True) if PM_PLATE in platemap.columns else [("", platemap)]
    for plate, pm in groups:
        present = set(pm[ROLE])
        lacking = [r for r in roles if r not in present]
        if lacking:
            name = f"plate {plate!r}" if plate != "" else "the plate map"
            raise FibroclassError(
                f"{name} has no control well(s) with role {', '.join(map(repr, lacking))}; "
                f"each plate needs {', '.join(roles)} controls"
            )
