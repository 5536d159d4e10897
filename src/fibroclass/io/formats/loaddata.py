"""CellProfiler LoadData CSVs: one row per field, `Image_FileName_<Ch>` + `Image_PathName_<Ch>` per channel.

Keys: `Metadata_Plate` (else the CSV's folder name), `Metadata_Well` (or `Metadata_Row` + `Metadata_Col`),
`Metadata_Site` (or `Metadata_Field`; default 1). Relative path names are relative to the CSV's folder;
an empty/missing `Image_PathName_<Ch>` means the CSV's folder. `Image_Frame_<Ch>` selects a page of a
multi-page file. Channels are tokens `ch1`, `ch2`, ... in column order, and `<Ch>` in lower case
(e.g. `{"origactin": "actin", "origdna": "nuclei"}`). Every `*.csv` of the folder with such columns is read;
the images may lie anywhere below it.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.formats.base import ImageFile, Scan, examples
from fibroclass.io.images import make_locator
from fibroclass.io.wells import canonical_well, well_from_row_col

FILE_PREFIX = "Image_FileName_"
PATH_PREFIX = "Image_PathName_"
FRAME_PREFIX = "Image_Frame_"


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def loaddata_csvs(folder: Path) -> list[Path]:
    """CSV files directly in `folder` whose header has `Image_FileName_*` columns."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(".csv"))
    except OSError:
        return []
    return [folder / n for n in names if any(h.startswith(FILE_PREFIX) for h in _header(folder / n))]


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _int(value: object, default: int) -> int:
    return default if _blank(value) else int(float(str(value)))


class LoadData:
    """Fields listed by LoadData CSVs (see module docstring)."""

    name = "loaddata"
    covers_subfolders = True

    def detect(self, folder: Path) -> bool:
        return bool(loaddata_csvs(folder))

    def scan(self, folder: Path) -> Scan:
        folder = Path(os.path.abspath(folder))
        scan = Scan()
        for csv_path in loaddata_csvs(folder):
            self._scan_csv(csv_path, scan)
        return scan

    def _scan_csv(self, csv_path: Path, scan: Scan) -> None:
        try:
            df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        except Exception as exc:  # noqa: BLE001 - pandas raises several types for bad CSVs
            scan.problems.append(f"cannot read LoadData CSV {csv_path}: {exc}")
            return
        channels = [c.removeprefix(FILE_PREFIX) for c in df.columns if c.startswith(FILE_PREFIX)]
        if "Metadata_Well" not in df.columns and not {"Metadata_Row", "Metadata_Col"} <= set(df.columns):
            scan.problems.append(
                f"LoadData CSV {csv_path} has no Metadata_Well (or Metadata_Row + Metadata_Col) column; skipped"
            )
            return
        site_col = next((c for c in ("Metadata_Site", "Metadata_Field") if c in df.columns), None)
        missing: list[str] = []
        for line, row in enumerate(df.to_dict("records"), start=2):
            where = f"{csv_path} line {line}"
            try:
                if not _blank(row.get("Metadata_Well")):
                    well = canonical_well(row["Metadata_Well"], where=where)
                else:
                    well = well_from_row_col(row["Metadata_Row"], row["Metadata_Col"], where=where)
                site = _int(row.get(site_col), 1) if site_col else 1
            except (FibroclassError, ValueError) as exc:
                scan.problems.append(f"{where}: {exc}")
                continue
            plate = str(row.get("Metadata_Plate") or "").strip() or csv_path.parent.name
            for k, ch in enumerate(channels, start=1):
                filename = str(row.get(FILE_PREFIX + ch, "")).strip()
                if not filename:
                    continue
                base = str(row.get(PATH_PREFIX + ch, "")).strip()
                path = Path(base) / filename if base else Path(filename)
                path = path if path.is_absolute() else csv_path.parent / path
                path = Path(os.path.abspath(path))
                if not path.is_file():
                    missing.append(str(path))
                    continue
                frame = row.get(FRAME_PREFIX + ch)
                locator = make_locator(path, page=None if _blank(frame) else _int(frame, 0))
                scan.files.append(
                    ImageFile(plate, well, site, f"ch{k}", locator, channel_name=ch.strip().lower())
                )
        if missing:
            scan.problems.append(
                f"LoadData CSV {csv_path} names {len(missing)} missing file(s): {examples(missing)}"
            )
