"""Harmony exports (Opera Phenix / Operetta CLS): `Index.idx.xml` or `Index.xml` next to the TIFF planes.

The index lists every plane with its row, column, field, plane (Z), timepoint, channel id and name and
pixel size (`ImageResolutionX`, in metres). Plate = the index's plate `Name` (else `PlateID`, else the
folder name as for Operetta). Channel tokens are `ch{ChannelID}`; the channel name (lower case) selects a
channel too, e.g. `{"alexa 488": "actin"}`. Z-stacks become a maximum projection or one plane
(`Harmony(z=...)`, see `stacks`). An index that cannot be parsed falls back to Operetta file names.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from fibroclass.errors import FibroclassError
from fibroclass.io.formats.base import ImageFile, Scan, examples, plate_from_folder
from fibroclass.io.formats.operetta import Operetta
from fibroclass.io.formats.stacks import ZChoice, check_z, choose_planes, first_timepoint
from fibroclass.io.wells import well_from_row_col

INDEX_NAMES = ("Index.idx.xml", "Index.xml")
_UNITS_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0, "nm": 1e-3}


def _looks_like_harmony(path: Path) -> bool:
    """Whether an index file is a Harmony export (its root element), from its first few kilobytes."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b"EvaluationInputData" in head or b"PEHH" in head


def index_file(folder: Path) -> Path | None:
    """The Harmony index of `folder`, if any (other XML files with the same name are not)."""
    return next(
        (folder / n for n in INDEX_NAMES if (folder / n).is_file() and _looks_like_harmony(folder / n)), None
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(elem: ET.Element) -> dict[str, ET.Element]:
    return {_local(c.tag): c for c in elem}


def _text(children: dict[str, ET.Element], key: str, default: str = "") -> str:
    elem = children.get(key)
    return (elem.text or "").strip() if elem is not None else default


def length_um(elem: ET.Element | None) -> float | None:
    """A length element (`<ImageResolutionX Unit="m">6.5E-07</...>`) in µm; None when absent or odd."""
    if elem is None or not (elem.text or "").strip():
        return None
    factor = _UNITS_UM.get((elem.get("Unit") or "m").strip(), None)
    try:
        value = float(elem.text) * factor if factor else None
    except ValueError:
        return None
    return value if value and value > 0 else None


def _plate_name(root: ET.Element, folder: Path) -> str:
    for elem in root.iter():
        if _local(elem.tag) == "Plate":
            kids = _children(elem)
            name = _text(kids, "Name") or _text(kids, "PlateID")
            if name:
                return name
    return plate_from_folder(folder)


def _channel_names(root: ET.Element) -> dict[str, str]:
    """ChannelID -> name from the `Maps/Map/Entry` blocks."""
    names = {}
    for elem in root.iter():
        if _local(elem.tag) == "Entry" and elem.get("ChannelID"):
            name = _text(_children(elem), "ChannelName")
            if name:
                names[elem.get("ChannelID", "")] = name
    return names


class Harmony:
    """Fields from a Harmony index (see module docstring); `z`: "max" or a 1-based plane number."""

    name = "harmony"
    covers_subfolders = True

    def __init__(self, z: ZChoice = "max") -> None:
        self.z = check_z(z)

    def detect(self, folder: Path) -> bool:
        return index_file(folder) is not None

    def scan(self, folder: Path) -> Scan:
        folder = Path(os.path.abspath(folder))
        index = index_file(folder)
        scan = Scan()
        if index is None:
            return scan
        try:
            root = ET.parse(index).getroot()
        except (ET.ParseError, OSError) as exc:
            fallback = Operetta().scan(folder)
            fallback.problems.insert(
                0, f"cannot parse Harmony index {index} ({exc}); used Operetta file names"
            )
            return fallback
        plate = _plate_name(root, folder)
        channel_names = _channel_names(root)
        # (row, col, field, channel) -> timepoint -> plane -> (path, channel name, pixel size)
        stacks: dict[tuple[int, int, int, int], dict[int, dict[int, tuple[str, str, float | None]]]]
        stacks = defaultdict(lambda: defaultdict(dict))
        missing: list[str] = []
        skipped: list[str] = []
        for elem in root.iter():
            if _local(elem.tag) != "Image":
                continue
            kids = _children(elem)
            if "URL" not in kids:
                continue  # a reference inside <Wells>, not an image record
            url = _text(kids, "URL")
            image_id = _text(kids, "id", "?")
            state = _text(kids, "State", "Ok")
            if not url or state.lower() not in ("ok", ""):
                skipped.append(f"{image_id} (state {state or 'no URL'})" if url else f"{image_id} (no URL)")
                continue
            path = Path(url) if os.path.isabs(url) else folder / url
            if not path.is_file():
                missing.append(str(path))
                continue
            try:
                key = tuple(int(_text(kids, k)) for k in ("Row", "Col", "FieldID", "ChannelID"))
                plane = int(_text(kids, "PlaneID", "1") or 1)
                timepoint = int(_text(kids, "TimepointID", "0") or 0)
            except ValueError:
                skipped.append(f"{image_id} (row/col/field/channel not numbers)")
                continue
            name = _text(kids, "ChannelName") or channel_names.get(str(key[3]), "")
            stacks[key][timepoint][plane] = (str(path), name, length_um(kids.get("ImageResolutionX")))
        if missing:
            scan.problems.append(
                f"Harmony index {index} lists {len(missing)} missing file(s): {examples(missing)}"
            )
        if skipped:
            scan.problems.append(
                f"Harmony index {index}: {len(skipped)} image(s) skipped: {examples(skipped)}"
            )
        if not stacks:
            return scan
        timepoints = {t for by_t in stacks.values() for t in by_t}
        t0 = first_timepoint(timepoints, f"Harmony index {index}", scan.problems)
        no_plane: list[str] = []
        for (row, col, site, channel), by_t in sorted(stacks.items()):
            planes = by_t.get(t0)
            if not planes:
                continue
            try:
                well = well_from_row_col(row, col, where=str(index))
            except FibroclassError as exc:
                scan.problems.append(str(exc))
                continue
            locator = choose_planes({p: v[0] for p, v in planes.items()}, self.z)
            if locator is None:
                no_plane.append(f"{well} field {site} channel {channel}")
                continue
            _, name, size = next(iter(planes.values()))
            scan.files.append(
                ImageFile(
                    plate=plate,
                    well=well,
                    site=site,
                    channel=f"ch{channel}",
                    path=locator,
                    plane=min(planes) if self.z == "max" else int(self.z),
                    timepoint=t0,
                    channel_name=name.strip().lower(),
                    pixel_size_um=size,
                )
            )
        if no_plane:
            scan.problems.append(
                f"Harmony index {index}: plane {self.z} missing for {len(no_plane)} stack(s): {examples(no_plane)}"
            )
        return scan
