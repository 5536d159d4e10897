"""Opera/Operetta (Harmony) names: `r{row:02}c{col:02}f{field:02}p{plane:02}-ch{ch}sk{t}fk1fl1.tiff`."""

from __future__ import annotations

import re
from pathlib import Path

from fibroclass.io.formats.base import ImageFile, NameFormat, Scan, plate_from_folder
from fibroclass.io.wells import well_from_row_col

PATTERN = re.compile(
    r"r(?P<row>\d{2})c(?P<col>\d{2})f(?P<site>\d{2,3})p(?P<plane>\d{2,3})-ch(?P<channel>\d+)"
    r"sk(?P<timepoint>\d+)fk\d+fl\d+\.tiff?",
    re.IGNORECASE,
)


class Operetta(NameFormat):
    """Plate = folder name (its parent for a Harmony `Images/` folder).

    Only the lowest plane and timepoint of a folder are indexed; others are reported as a problem.
    """

    name = "operetta"

    def parse(self, filename: str, folder: Path) -> ImageFile | None:
        m = PATTERN.fullmatch(filename)
        if m is None:
            return None
        return ImageFile(
            plate=plate_from_folder(folder),
            well=well_from_row_col(int(m["row"]), int(m["col"])),
            site=int(m["site"]),
            channel=f"ch{int(m['channel'])}",
            path=str(folder / filename),
            plane=int(m["plane"]),
            timepoint=int(m["timepoint"]),
        )

    def scan(self, folder: Path) -> Scan:
        scan = super().scan(folder)
        stacks = sorted({(f.timepoint, f.plane) for f in scan.files})
        if len(stacks) > 1:
            t, p = stacks[0]
            scan.files = [f for f in scan.files if (f.timepoint, f.plane) == (t, p)]
            scan.problems.append(
                f"{folder} holds {len(stacks)} timepoint/plane combinations; only timepoint {t} plane {p} "
                "is indexed"
            )
        return scan
