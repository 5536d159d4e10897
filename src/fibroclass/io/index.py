"""The field index: discovered fields joined with the plate map, one row per plate x well x site (parquet)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.discover import discover_fields
from fibroclass.io.formats.base import examples
from fibroclass.io.platemap import read_platemap
from fibroclass.io.wells import well_sort_key
from fibroclass.schema import (
    COL,
    COMPOUND,
    CONC,
    FIELD_KEYS,
    PLATE,
    PM_PLATE,
    PM_WELL,
    ROLE,
    SITE,
    WELL,
)

INDEX_REQUIRED = (*FIELD_KEYS, ROLE, COMPOUND, CONC)
MAX_LISTED = 10


@dataclass
class IndexResult:
    """`index`: the joined field index; `warnings`: human-readable notes (discovery problems, unmatched wells)."""

    index: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def index_channels(index: pd.DataFrame) -> list[str]:
    """Channel names of an index, from its `path_<channel>` columns, in column order."""
    return [c.removeprefix("path_") for c in index.columns if c.startswith("path_")]


def _listed(wells: list[str]) -> str:
    shown = ", ".join(wells[:MAX_LISTED])
    return shown + (f" (+{len(wells) - MAX_LISTED} more)" if len(wells) > MAX_LISTED else "")


def _plate_column(pm: pd.DataFrame, image_plates: list[str], platemap_path: Path) -> pd.DataFrame:
    if PM_PLATE in pm.columns:
        pm_plates = sorted(set(pm[PM_PLATE]))
        if not set(pm_plates) & set(image_plates):
            raise FibroclassError(
                f"plate map {platemap_path} names plates {pm_plates} but the images are from plates "
                f"{image_plates}; the 'plate' column must equal the plate name in file or folder names"
            )
        return pm
    if len(image_plates) != 1:
        raise FibroclassError(
            f"plate map {platemap_path} has no 'plate' column but images come from {len(image_plates)} "
            f"plates {image_plates}; add a 'plate' column"
        )
    return pm.assign(**{PM_PLATE: image_plates[0]})


def build_index(
    roots: str | Path | Sequence[str | Path],
    platemap_path: str | Path,
    naming: str = "auto",
    channel_map: Mapping[str, str] | None = None,
    column_map: Mapping[str, str] | None = None,
    pattern: str | None = None,
    z: str | int = "max",
    lenient: bool = False,
    max_megapixels: float | None = None,
) -> IndexResult:
    """Discover fields under `roots` (see `discover_fields`) and join them with the plate map on (plate, well).

    A plate map without a `plate` column applies to the single image plate. Plate-map wells without images and
    image wells without a plate-map row are warned about (the latter are dropped); plates of the map that match
    no image plate raise. Columns: field keys, `path_<channel>`, then the plate-map columns (role, compound,
    concentration_uM, donor, genotype, extras); rows sorted by plate, well, site.

    `lenient` (scoring: one bad well must not stop a screen): plate-map rows that cannot be used (invalid
    well, role or concentration; a well listed twice with different values) are left out with a warning
    instead of raising, and fields missing a channel file stay in the index with a `skip_reason`.
    `max_megapixels`: the per-plane cap above which a field is `oversize` (see `discover_fields`).
    """
    platemap_path = Path(platemap_path)
    disc = discover_fields(
        roots,
        naming=naming,
        channel_map=channel_map,
        pattern=pattern,
        z=z,
        keep_incomplete=lenient,
        max_megapixels=max_megapixels,
    )
    fields = disc.fields
    warnings = [f"discovery: {p}" for p in disc.problems]
    image_plates = sorted(set(fields[PLATE]))
    row_problems: list[str] | None = [] if lenient else None
    pm = read_platemap(platemap_path, column_map, problems=row_problems)
    warnings += [f"plate map: {p}" for p in row_problems or []]
    pm = _plate_column(pm, image_plates, platemap_path)

    pm = pm.rename(columns={PM_PLATE: PLATE, PM_WELL: WELL})
    pm_cols = [c for c in pm.columns if c not in (PLATE, WELL)]
    clash = [c for c in pm_cols if c in fields.columns]
    if clash:
        raise FibroclassError(
            f"plate map {platemap_path} has columns {clash} that clash with field-index columns"
        )
    merged = fields.merge(pm, on=[PLATE, WELL], how="outer", indicator=True)

    for plate in sorted(set(pm[PLATE]) - set(image_plates)):
        warnings.append(
            f"plate {plate} of plate map {platemap_path} has no images; its wells are not indexed"
        )
    no_images = merged[(merged["_merge"] == "right_only") & merged[PLATE].isin(image_plates)]
    for plate, grp in no_images.groupby(PLATE, sort=True):
        wells = sorted(grp[WELL], key=well_sort_key)
        warnings.append(f"plate {plate}: {len(wells)} plate-map well(s) have no images: {_listed(wells)}")
    unmapped = merged[merged["_merge"] == "left_only"]
    for plate, grp in unmapped.groupby(PLATE, sort=True):
        wells = sorted(set(grp[WELL]), key=well_sort_key)
        warnings.append(
            f"plate {plate}: {len(wells)} imaged well(s) ({len(grp)} fields) are not in plate map "
            f"{platemap_path} and were dropped: {_listed(wells)}"
        )

    index = merged[merged["_merge"] == "both"].drop(columns="_merge")
    if index.empty:
        raise FibroclassError(
            f"no imaged well of {examples(image_plates)} appears in plate map {platemap_path}; check the well names"
        )
    order = sorted(range(len(index)), key=lambda i: _sort_key(index, i))
    index = index.iloc[order].reset_index(drop=True)
    index = index.astype({COL: "int64", SITE: "int64"})
    return IndexResult(index=index, warnings=warnings)


def _sort_key(df: pd.DataFrame, i: int) -> tuple[str, tuple[int, int], int]:
    return df[PLATE].iat[i], well_sort_key(df[WELL].iat[i]), int(df[SITE].iat[i])


def write_index(index: pd.DataFrame, path: str | Path) -> Path:
    """Write a field index as parquet (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    index.to_parquet(path, index=False)
    return path


def read_index(path: str | Path) -> pd.DataFrame:
    """Read a field index written by `write_index`, checking its required columns."""
    path = Path(path)
    if not path.is_file():
        raise FibroclassError(f"field index {path} does not exist (make one with `fibroclass index`)")
    try:
        index = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for non-parquet files
        raise FibroclassError(f"cannot read field index {path}: {exc}") from exc
    missing = [c for c in INDEX_REQUIRED if c not in index.columns]
    if missing or not index_channels(index):
        missing += [] if index_channels(index) else ["path_<channel>"]
        raise FibroclassError(
            f"field index {path} lacks column(s) {missing} (columns: {list(index.columns)})"
        )
    return index
