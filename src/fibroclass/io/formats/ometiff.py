"""One TIFF per field holding every channel: OME-TIFF, ImageJ hyperstacks and plain multi-page TIFFs.

Names: `{plate}_{well}[_s{site}][.ome].tif[f]` (no `_w{n}` channel token; plate from the folder name when
there is no prefix). Channels are the file's `C` axis (OME-TIFF / ImageJ) or, for files without axes
metadata, its pages; tokens `ch1`, `ch2`, ... and, for OME-TIFF, the `Channel Name`s (lower case).
OME metadata also gives the pixel size (`PhysicalSizeX`) and bit depth (`SignificantBits`). A `Z` axis is
projected (maximum) or one plane is taken (`OmeTiff(z=...)`, 1-based).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import tifffile

from fibroclass.errors import FibroclassError
from fibroclass.io.formats import imagexpress
from fibroclass.io.formats.base import ImageFile, Scan, examples, image_names, plate_from_folder
from fibroclass.io.formats.stacks import ZChoice, check_z, z_index
from fibroclass.io.images import make_locator
from fibroclass.io.wells import canonical_well

PATTERN = re.compile(
    r"(?:(?P<plate>.+?)_)?(?P<well>[A-Z]{1,2}\d{1,3})(?:_s(?P<site>\d+))?(?:\.ome)?\.tiff?", re.IGNORECASE
)
DETECT_FILES = 3  # files opened by detect()
_UNITS_UM = {"m": 1e6, "mm": 1e3, "µm": 1.0, "um": 1.0, "nm": 1e-3}


def _name_match(filename: str) -> re.Match[str] | None:
    if imagexpress.PATTERN.fullmatch(filename):  # one file per channel: not this format
        return None
    return PATTERN.fullmatch(filename)


def _ome_pixels(tif: tifffile.TiffFile) -> tuple[list[str], float | None, int | None]:
    """Channel names, pixel size (µm) and significant bits of the first OME image."""
    xml = tif.ome_metadata
    if not xml:
        return [], None, None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return [], None, None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return [], None, None
    names = [c.get("Name", "") for c in pixels if c.tag.rsplit("}", 1)[-1] == "Channel"]
    size = None
    if pixels.get("PhysicalSizeX"):
        factor = _UNITS_UM.get(pixels.get("PhysicalSizeXUnit", "µm"), None)
        try:
            size = float(pixels.get("PhysicalSizeX", "")) * factor if factor else None
        except ValueError:
            size = None
    bits = pixels.get("SignificantBits")
    return names, size, int(bits) if bits and bits.isdigit() else None


def channel_layout(path: str | Path) -> tuple[str, int, int, list[str], float | None, int | None]:
    """How a file stores channels: ("c" for a C axis | "page" for bare pages, n channels, n z planes,
    channel names, pixel size µm, significant bits)."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        names, size, bits = _ome_pixels(tif) if tif.is_ome else ([], None, None)
        if "C" in axes:
            n_z = shape[axes.index("Z")] if "Z" in axes else 1
            return "c", shape[axes.index("C")], n_z, names, size, bits
        return "page", len(tif.pages), 1, names, size, bits


class OmeTiff:
    """Multi-channel TIFF per field (see module docstring); `z`: "max" or a 1-based plane number."""

    name = "ometiff"
    covers_subfolders = False

    def __init__(self, z: ZChoice = "max") -> None:
        self.z = check_z(z)

    def detect(self, folder: Path) -> bool:
        tried = 0
        for filename in image_names(folder):
            if _name_match(filename) is None:
                continue
            try:
                if channel_layout(folder / filename)[1] > 1:
                    return True
            except Exception:  # noqa: BLE001, S112 - unreadable: not evidence for this format
                pass
            tried += 1
            if tried >= DETECT_FILES:
                return False
        return False

    def scan(self, folder: Path) -> Scan:
        folder = Path(os.path.abspath(folder))
        scan = Scan()
        skipped: list[str] = []
        for filename in image_names(folder):
            m = _name_match(filename)
            if m is None:
                skipped.append(filename)
                continue
            path = folder / filename
            try:
                well = canonical_well(m["well"], where=str(path))
                kind, n_c, n_z, names, size, bits = channel_layout(path)
            except FibroclassError as exc:
                scan.problems.append(str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a corrupt file is a problem, not a crash
                scan.problems.append(f"cannot read {path}: {exc}")
                continue
            if n_c < 2:
                skipped.append(filename)
                continue
            if self.z != "max" and int(self.z) > n_z:
                scan.problems.append(f"{path} has {n_z} Z plane(s); plane {self.z} does not exist")
                continue
            z = z_index(self.z) if n_z > 1 else None
            for k in range(n_c):
                locator = make_locator(path, page=k) if kind == "page" else make_locator(path, c=k, z=z)
                scan.files.append(
                    ImageFile(
                        plate=m["plate"] or plate_from_folder(folder),
                        well=well,
                        site=int(m["site"] or 1),
                        channel=f"ch{k + 1}",
                        path=locator,
                        channel_name=names[k].strip().lower() if k < len(names) else "",
                        pixel_size_um=size,
                        bit_depth=bits,
                    )
                )
        if skipped:
            scan.problems.append(
                f"{len(skipped)} image file(s) in {folder} are not multi-channel field files: {examples(skipped)}"
            )
        return scan
