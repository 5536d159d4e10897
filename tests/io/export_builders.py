"""Builders of tiny real exports for the io tests: uint16 TIFFs in ImageXpress / Operetta naming, plate maps."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tifffile

UUID = "A1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D"


def write_tif(path: Path, value: int = 100) -> Path:
    """Write a 6x8 uint16 TIFF filled with `value` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.full((6, 8), value, dtype=np.uint16))
    return path


def imagexpress_plate(
    folder: Path,
    plate: str,
    wells: Iterable[str],
    sites: int = 2,
    channels: Iterable[int] = (1, 2),
    uuid: bool = False,
) -> list[Path]:
    """`{folder}/{plate}_{well}_s{site}_w{ch}[UUID].tif` for every well/site/channel."""
    paths = []
    for well in wells:
        for site in range(1, sites + 1):
            for ch in channels:
                name = f"{plate}_{well}_s{site}_w{ch}{UUID if uuid else ''}.tif"
                paths.append(write_tif(folder / name, value=ch * 1000 + site))
    return paths


def operetta_plate(
    folder: Path, cells: Iterable[tuple[int, int]], sites: int = 2, channels: Iterable[int] = (1, 2)
) -> list[Path]:
    """`{folder}/r{row:02}c{col:02}f{site:02}p01-ch{ch}sk1fk1fl1.tiff` for every (row, col)/site/channel."""
    paths = []
    for row, col in cells:
        for site in range(1, sites + 1):
            for ch in channels:
                name = f"r{row:02d}c{col:02d}f{site:02d}p01-ch{ch}sk1fk1fl1.tiff"
                paths.append(write_tif(folder / name, value=ch * 1000 + site))
    return paths


def write_platemap(path: Path, rows: list[dict[str, object]]) -> Path:
    """Write a plate-map CSV whose columns are the keys of the first row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def control_rows(plate: str | None, wells: list[str], donors: list[str]) -> list[dict[str, object]]:
    """Plate-map rows: the i-th well gets donor i; donors starting with 'G' are GoF/disease."""
    rows = []
    for well, donor in zip(wells, donors, strict=True):
        gof = donor.startswith("G")
        row = {"plate": plate} if plate is not None else {}
        row |= {
            "well": well,
            "role": "disease" if gof else "healthy",
            "compound": "DMSO",
            "concentration_uM": 0,
            "donor": donor,
            "genotype": "GoF" if gof else "healthy",
        }
        rows.append(row)
    return rows
