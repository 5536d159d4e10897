"""OME-Zarr HCS plates (NGFF 0.4 on Zarr v2, and 0.5 on Zarr v3): plate -> well -> field image -> array.

Plate = the folder name without `.zarr` / `.ome.zarr`. Wells come from the plate metadata (`wells[].path`
such as `B/3`), fields from each well's `images[]` (site = position + 1), pixels from the first
(full-resolution) dataset of each image's `multiscales`, with its `c` axis as channels (tokens `ch1`, ...;
names from `omero.channels[].label`), a `z` axis projected (maximum) or one plane taken (1-based), pixel size
from the dataset's `scale` transformation. Scanning reads JSON only; pixels are read with `zarr`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fibroclass.errors import FibroclassError
from fibroclass.io.formats.base import ImageFile, Scan, examples
from fibroclass.io.formats.stacks import ZChoice, check_z, z_index
from fibroclass.io.images import make_locator
from fibroclass.io.wells import canonical_well

_UNITS_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "meter": 1e6, "angstrom": 1e-4}


def read_attrs(node: Path) -> dict[str, Any]:
    """The OME attributes of a Zarr group (v2 `.zattrs`, or v3 `zarr.json` attributes / `ome` key)."""
    if (node / ".zattrs").is_file():
        return json.loads((node / ".zattrs").read_text())
    if (node / "zarr.json").is_file():
        attrs = json.loads((node / "zarr.json").read_text()).get("attributes", {})
        return attrs.get("ome", attrs)
    return {}


def array_shape(node: Path) -> tuple[int, ...]:
    """Shape of a Zarr array folder (v2 `.zarray` or v3 `zarr.json`)."""
    for name in (".zarray", "zarr.json"):
        if (node / name).is_file():
            return tuple(json.loads((node / name).read_text())["shape"])
    raise FibroclassError(f"{node} is not a Zarr array (no .zarray or zarr.json)")


def plate_name(folder: Path) -> str:
    name = folder.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _pixel_size(ms: dict[str, Any], axes: list[dict[str, Any]]) -> float | None:
    datasets = ms.get("datasets") or [{}]
    scale = next(
        (
            t.get("scale")
            for t in datasets[0].get("coordinateTransformations", [])
            if t.get("type") == "scale"
        ),
        None,
    )
    if not scale or len(scale) != len(axes):
        return None
    x = next((i for i, a in enumerate(axes) if a.get("name") == "x"), None)
    if x is None:
        return None
    factor = _UNITS_UM.get(str(axes[x].get("unit", "")).lower())
    return float(scale[x]) * factor if factor else None


class OmeZarr:
    """Fields of an OME-Zarr HCS plate (see module docstring); `z`: "max" or a 1-based plane number."""

    name = "omezarr"
    covers_subfolders = True

    def __init__(self, z: ZChoice = "max") -> None:
        self.z = check_z(z)

    def detect(self, folder: Path) -> bool:
        try:
            return "plate" in read_attrs(folder)
        except (OSError, ValueError):
            return False

    def scan(self, folder: Path) -> Scan:
        folder = Path(os.path.abspath(folder))
        scan = Scan()
        try:
            plate_meta = read_attrs(folder)["plate"]
        except (OSError, ValueError, KeyError) as exc:
            scan.problems.append(f"cannot read OME-Zarr plate metadata of {folder}: {exc}")
            return scan
        plate = plate_name(folder)
        bad: list[str] = []
        for well_meta in plate_meta.get("wells", []):
            rel = str(well_meta.get("path", ""))
            try:
                well = canonical_well(rel.replace("/", ""), where=f"{folder} well path {rel!r}")
                images = read_attrs(folder / rel)["well"]["images"]
            except (FibroclassError, OSError, ValueError, KeyError) as exc:
                bad.append(f"{rel} ({exc})")
                continue
            for site, image in enumerate(images, start=1):
                image_dir = folder / rel / str(image.get("path", ""))
                try:
                    self._add_field(scan, plate, well, site, image_dir)
                except (FibroclassError, OSError, ValueError, KeyError, IndexError) as exc:
                    bad.append(f"{image_dir} ({exc})")
        if bad:
            scan.problems.append(
                f"OME-Zarr plate {folder}: {len(bad)} well(s)/field(s) skipped: {examples(bad)}"
            )
        return scan

    def _add_field(self, scan: Scan, plate: str, well: str, site: int, image_dir: Path) -> None:
        attrs = read_attrs(image_dir)
        ms = attrs["multiscales"][0]
        axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes", [])]
        array_dir = image_dir / ms["datasets"][0]["path"]
        shape = array_shape(array_dir)
        names = [a["name"] for a in axes] or list("tczyx"[-len(shape) :])
        if len(names) != len(shape) or names[-2:] != ["y", "x"]:
            raise FibroclassError(f"axes {names} do not fit array shape {shape}")
        n_c = shape[names.index("c")] if "c" in names else 1
        n_z = shape[names.index("z")] if "z" in names else 1
        if self.z != "max" and int(self.z) > n_z:
            raise FibroclassError(f"{n_z} Z plane(s); plane {self.z} does not exist")
        labels = [str(ch.get("label", "")) for ch in attrs.get("omero", {}).get("channels", [])]
        size = _pixel_size(ms, axes)
        for k in range(n_c):
            locator = make_locator(
                array_dir, c=k if "c" in names else None, z=z_index(self.z) if n_z > 1 else None
            )
            scan.files.append(
                ImageFile(
                    plate=plate,
                    well=well,
                    site=site,
                    channel=f"ch{k + 1}",
                    path=locator,
                    channel_name=labels[k].strip().lower() if k < len(labels) else "",
                    pixel_size_um=size,
                )
            )
