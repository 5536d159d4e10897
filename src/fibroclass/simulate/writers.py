"""Writing rendered fields as TIFF files named like a given microscope export (one class per format).

A writer only decides file names and containers; pixels come from `render`, so the same plate can
be exported under every naming. Add a format by subclassing `Writer` and listing it in `WRITERS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from fibroclass.errors import FibroclassError
from fibroclass.simulate.plates import parse_well


class Writer(ABC):
    """Names and writes the planes (channel 1 = actin, 2 = nuclei) of one field."""

    name: str = ""

    @abstractmethod
    def relpath(self, plate: str, well: str, site: int, channel: int) -> str:
        """Path of one plane relative to the images folder (1-based site and channel)."""

    def write(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        """Write one uint16 TIFF per channel; returns the paths in channel order."""
        paths = []
        for ch, plane in enumerate(planes, start=1):
            path = Path(images_dir) / self.relpath(plate, well, site, ch)
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, np.ascontiguousarray(plane, dtype=np.uint16))
            paths.append(path)
        return paths


class ImageXpressWriter(Writer):
    """Molecular Devices ImageXpress: `{plate}/{plate}_{well}_s{site}_w{channel}.tif`."""

    name = "imagexpress"

    def relpath(self, plate: str, well: str, site: int, channel: int) -> str:
        return f"{plate}/{plate}_{well}_s{site}_w{channel}.tif"


class OperettaWriter(Writer):
    """PerkinElmer Opera/Operetta: `{plate}/r{row:02}c{col:02}f{field:02}p01-ch{channel}sk1fk1fl1.tiff`."""

    name = "operetta"

    def relpath(self, plate: str, well: str, site: int, channel: int) -> str:
        row, col = parse_well(well)
        return f"{plate}/r{row + 1:02d}c{col + 1:02d}f{site:02d}p01-ch{channel}sk1fk1fl1.tiff"


WRITERS: dict[str, type[Writer]] = {w.name: w for w in (ImageXpressWriter, OperettaWriter)}


def get_writer(naming: str) -> Writer:
    """The writer for a naming scheme (case-insensitive)."""
    try:
        return WRITERS[naming.lower()]()
    except KeyError:
        raise FibroclassError(f"unknown naming {naming!r}; expected one of {sorted(WRITERS)}") from None
