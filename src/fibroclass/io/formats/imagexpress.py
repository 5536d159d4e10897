"""ImageXpress (MetaXpress) names: `{plate}_{well}_s{site}_w{channel}[UUID].tif[f]`."""

from __future__ import annotations

import re
from pathlib import Path

from fibroclass.io.formats.base import ImageFile, NameFormat, plate_from_folder
from fibroclass.io.wells import canonical_well

_UUID = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
# The plate is the shortest prefix followed by a whole `_{well}_s{site}_w{channel}[UUID].tif` tail, so plate
# names may contain underscores. `_s{site}` is optional (single-site exports, site 1), and so is the plate
# prefix (then the folder names the plate).
PATTERN = re.compile(
    rf"(?:(?P<plate>.+?)_)?(?P<well>[A-Z]{{1,2}}\d{{1,3}})(?:_s(?P<site>\d+))?_w(?P<channel>\d+)(?:{_UUID})?\.tiff?",
    re.IGNORECASE,
)


class ImageXpress(NameFormat):
    """Plate from the file-name prefix (or the folder name when there is none); thumbnails are skipped."""

    name = "imagexpress"

    def parse(self, filename: str, folder: Path) -> ImageFile | None:
        m = PATTERN.fullmatch(filename)
        if m is None:
            return None
        return ImageFile(
            plate=m["plate"] or plate_from_folder(folder),
            well=canonical_well(m["well"]),
            site=int(m["site"] or 1),
            channel=f"w{int(m['channel'])}",
            path=str(folder / filename),
        )
