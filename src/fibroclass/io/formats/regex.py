"""Custom naming: a regular expression with named groups, matched against whole file names."""

from __future__ import annotations

import re
from pathlib import Path

from fibroclass.errors import FibroclassError
from fibroclass.io.formats.base import ImageFile, NameFormat, plate_from_folder
from fibroclass.io.wells import canonical_well, well_from_row_col


class RegexFormat(NameFormat):
    """Groups: `channel` (required), `well` or `row`+`col` (row as letters or a 1-based number),
    optional `plate` (default: the folder name) and `site` (default 1).

    Example: `(?P<plate>.+)-(?P<well>[A-P]\\d+)-f(?P<site>\\d+)-(?P<channel>DAPI|Phalloidin)\\.tif`
    with channel map {"dapi": "nuclei", "phalloidin": "actin"}. Channel tokens are lower-cased.
    """

    name = "custom"

    def __init__(self, pattern: str) -> None:
        try:
            self.pattern = re.compile(pattern)
        except re.error as exc:
            raise FibroclassError(f"invalid naming pattern {pattern!r}: {exc}") from exc
        groups = set(self.pattern.groupindex)
        if "channel" not in groups or not ("well" in groups or {"row", "col"} <= groups):
            raise FibroclassError(
                f"naming pattern {pattern!r} needs named groups 'channel' and 'well' (or 'row' and 'col'); "
                f"it has {sorted(groups)}"
            )

    def parse(self, filename: str, folder: Path) -> ImageFile | None:
        m = self.pattern.fullmatch(filename)
        if m is None:
            return None
        groups = m.groupdict()
        if groups.get("well"):
            well = canonical_well(groups["well"])
        else:
            well = well_from_row_col(groups["row"], groups["col"])
        return ImageFile(
            plate=groups.get("plate") or plate_from_folder(folder),
            well=well,
            site=int(groups.get("site") or 1),
            channel=groups["channel"].lower(),
            path=str(folder / filename),
        )
