"""Writers for the other export layouts that `io` reads, and variants that change what the optics add.

Layouts (the `naming` of `simulate_*`, and `export_index`):
- `harmony`: Opera/Operetta planes in `{plate}/Images/` plus a Harmony `Index.idx.xml` (channel names,
  pixel size); `harmony-zstack` writes 3 planes per channel.
- `imagexpress_htd`: MetaXpress `{plate}/TimePoint_1/ZStep_{1..3}/{plate}_{well}_s{site}_w{n}.tif` plus
  `{plate}/{plate}.HTD` (wavelength names).
- `multipage`: `{plate}/{plate}_{well}_s{site}.tif`, one page per channel, no metadata.
- `ometiff`: `{plate}/{plate}_{well}_s{site}.ome.tif` with axes CYX, channel names, pixel size, bit depth.
- `loaddata`: `{plate}/{well}/{plate}-{well}-f{site}-{Channel}.tif` listed by `load_data.csv` (CellProfiler).
- `omezarr`: an NGFF 0.4 HCS plate `{plate}.zarr` (plate -> well -> field, arrays (c, z, y, x)); needs zarr.
Every Z-stack holds the rendered plane and dimmer copies of it, so its maximum projection is the
rendered plane exactly and every layout carries the same pixels.

Variants of every layout (also `imagexpress` and `operetta`): `-12bit` / `-8bit` store the data at that
bit depth (uint16 <= 4095 / uint8), `-vignette` multiplies the signal above the camera offset by a strong
radial fall-off (`STRONG_VIGNETTE`: corners at 40 %) with the optical axis fixed per plate.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from fibroclass.errors import FibroclassError
from fibroclass.simulate.artefacts import CAMERA_OFFSET
from fibroclass.simulate.plates import parse_well
from fibroclass.simulate.seeding import rng_for
from fibroclass.simulate.writers import ImageXpressWriter, OperettaWriter, Writer

PIXEL_SIZE_UM = 0.65  # written where a layout records the pixel size (20x objective, 6.5 µm camera pixels)
CHANNEL_NAMES = ("Alexa 488 Phalloidin", "Hoechst 33342")  # channel 1 (actin), channel 2 (nuclei)
STRONG_VIGNETTE = 0.6  # relative fall-off at the field corners of `-vignette` variants
Z_DIMMING = (0.55, 1.0, 0.8)  # plane intensities of a 3-plane stack (the middle one is the rendered plane)
HARMONY_NS = "http://www.perkinelmer.com/PEHH/HarmonyV5"


def to_bits(plane: np.ndarray, bits: int) -> np.ndarray:
    """Re-quantize 16-bit counts to `bits` (16 unchanged; 12 -> uint16 <= 4095; 8 -> uint8)."""
    plane = np.asarray(plane, dtype=np.uint16)
    if bits == 16:
        return plane
    top = 2**bits - 1
    scaled = np.rint(plane.astype(np.float64) * (top / 65535.0))
    return scaled.astype(np.uint8 if bits == 8 else np.uint16)


def vignette_profile(shape: tuple[int, int], strength: float, plate: str) -> np.ndarray:
    """Radial fall-off (1 on the optical axis, 1 - strength at the corners), axis offset fixed per plate."""
    h, w = shape
    dy, dx = rng_for(0, plate, "export-vignette").normal(0.0, 0.05, 2)
    yy, xx = np.ogrid[:h, :w]
    r2 = ((yy - (h - 1) / 2 - dy * h) / (h / 2)) ** 2 + ((xx - (w - 1) / 2 - dx * w) / (w / 2)) ** 2
    return np.clip(1.0 - strength * r2 / 2.0, 0.05, 1.0)


def apply_vignette(plane: np.ndarray, strength: float, plate: str) -> np.ndarray:
    """Dim the signal above the camera offset by `vignette_profile` (uint16 in, uint16 out)."""
    prof = vignette_profile(plane.shape, strength, plate)
    signal = np.maximum(plane.astype(np.float64) - CAMERA_OFFSET, 0.0)
    out = np.minimum(plane, CAMERA_OFFSET) + signal * prof
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


def z_stack(plane: np.ndarray, n: int) -> list[np.ndarray]:
    """`n` planes whose pixel-wise maximum is `plane` (n = 1: the plane itself)."""
    if n == 1:
        return [plane]
    gains = Z_DIMMING if n == len(Z_DIMMING) else [1.0] + [0.6] * (n - 1)
    return [plane if g == 1.0 else (plane.astype(np.float64) * g).astype(plane.dtype) for g in gains]


class ExportWriter(Writer):
    """A writer that re-quantizes (`bits`), optionally vignettes, and may finish a plate with index files."""

    bits: int = 16
    vignette: float = 0.0
    pixel_size_um: float = PIXEL_SIZE_UM

    def convert(self, plane: np.ndarray, plate: str) -> np.ndarray:
        """The stored version of one rendered uint16 plane."""
        plane = np.asarray(plane, dtype=np.uint16)
        if self.vignette > 0:
            plane = apply_vignette(plane, self.vignette, plate)
        return to_bits(plane, self.bits)

    def write(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        stored = [self.convert(p, plate) for p in planes]
        return self.write_stored(Path(images_dir), plate, well, site, stored)

    def write_stored(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        """Write converted planes; default: one TIFF per channel at `relpath`."""
        paths = []
        for ch, plane in enumerate(planes, start=1):
            path = images_dir / self.relpath(plate, well, site, ch)
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, np.ascontiguousarray(plane))
            paths.append(path)
        return paths

    def finish(self, images_dir: Path) -> None:
        """Write whatever indexes the plate(s) once every field is on disk (nothing by default)."""


class HarmonyWriter(ExportWriter):
    """Harmony export: Operetta-named planes in `{plate}/Images/` + `Index.idx.xml`."""

    name = "harmony"
    z_planes = 1

    def __init__(self) -> None:
        self._images: dict[str, list[dict[str, object]]] = defaultdict(list)

    def relpath(self, plate: str, well: str, site: int, channel: int, plane: int = 1) -> str:
        row, col = parse_well(well)
        return f"{plate}/Images/r{row + 1:02d}c{col + 1:02d}f{site:02d}p{plane:02d}-ch{channel}sk1fk1fl1.tiff"

    def write_stored(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        row, col = parse_well(well)
        paths = []
        for ch, plane in enumerate(planes, start=1):
            for z, zplane in enumerate(z_stack(plane, self.z_planes), start=1):
                path = images_dir / self.relpath(plate, well, site, ch, z)
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, np.ascontiguousarray(zplane))
                paths.append(path)
                self._images[plate].append(
                    {"url": path.name, "row": row + 1, "col": col + 1, "field": site, "plane": z}
                    | {"channel": ch, "h": plane.shape[0], "w": plane.shape[1]}
                )
        return paths

    def finish(self, images_dir: Path) -> None:
        for plate, images in self._images.items():
            root = ET.Element("EvaluationInputData", {"xmlns": HARMONY_NS, "Version": "1"})
            ET.SubElement(root, "InstrumentType").text = "Phenix"
            plate_el = ET.SubElement(ET.SubElement(root, "Plates"), "Plate")
            for key, value in (("PlateID", plate), ("Name", plate), ("PlateTypeName", "96well")):
                ET.SubElement(plate_el, key).text = value
            channel_map = ET.SubElement(ET.SubElement(root, "Maps"), "Map")
            for ch, name in enumerate(CHANNEL_NAMES, start=1):
                ET.SubElement(
                    ET.SubElement(channel_map, "Entry", ChannelID=str(ch)), "ChannelName"
                ).text = name
            images_el = ET.SubElement(root, "Images")
            for i, im in enumerate(images):
                el = ET.SubElement(images_el, "Image", Version="1")
                fields = {
                    "id": f"img{i}",
                    "State": "Ok",
                    "URL": im["url"],
                    "Row": im["row"],
                    "Col": im["col"],
                    "FieldID": im["field"],
                    "PlaneID": im["plane"],
                    "TimepointID": 0,
                    "ChannelID": im["channel"],
                    "ChannelName": CHANNEL_NAMES[int(im["channel"]) - 1],
                }
                for key, value in fields.items():
                    ET.SubElement(el, key).text = str(value)
                for axis, size in (("X", im["w"]), ("Y", im["h"])):
                    ET.SubElement(el, f"ImageResolution{axis}", Unit="m").text = repr(
                        self.pixel_size_um * 1e-6
                    )
                    ET.SubElement(el, f"ImageSize{axis}").text = str(size)
            out = Path(images_dir) / plate / "Images" / "Index.idx.xml"
            ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
        self._images.clear()


class HarmonyZStackWriter(HarmonyWriter):
    """Harmony export with a 3-plane Z-stack per channel."""

    name = "harmony-zstack"
    z_planes = 3


class ImageXpressHTDWriter(ExportWriter):
    """MetaXpress layout: `TimePoint_1/ZStep_{z}/` planes (3-plane stacks) + `{plate}.HTD`."""

    name = "imagexpress_htd"
    z_planes = 3

    def __init__(self) -> None:
        self._plates: dict[str, set[str]] = defaultdict(set)

    def relpath(self, plate: str, well: str, site: int, channel: int, plane: int = 1) -> str:
        return f"{plate}/TimePoint_1/ZStep_{plane}/{plate}_{well}_s{site}_w{channel}.tif"

    def write_stored(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        paths = []
        for ch, plane in enumerate(planes, start=1):
            for z, zplane in enumerate(z_stack(plane, self.z_planes), start=1):
                path = images_dir / self.relpath(plate, well, site, ch, z)
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, np.ascontiguousarray(zplane))
                paths.append(path)
        self._plates[plate].add(well)
        return paths

    def finish(self, images_dir: Path) -> None:
        for plate in self._plates:
            lines = [
                '"HTSInfoFile", Version 1.0',
                f'"Description", "fibroclass simulated plate {plate}"',
                '"TimePoints", 1',
                '"ZSeries", TRUE',
                f'"ZSteps", {self.z_planes}',
                '"XWells", 12',
                '"YWells", 8',
                '"Sites", TRUE',
                '"Waves", TRUE',
                f'"NWavelengths", {len(CHANNEL_NAMES)}',
                *(f'"WaveName{i}", "{n}"' for i, n in enumerate(CHANNEL_NAMES, start=1)),
                '"EndFile"',
            ]
            (Path(images_dir) / plate / f"{plate}.HTD").write_text("\r\n".join(lines) + "\r\n")
        self._plates.clear()


class MultipageWriter(ExportWriter):
    """One plain multi-page TIFF per field (page k = channel k + 1, no axes metadata)."""

    name = "multipage"

    def relpath(self, plate: str, well: str, site: int, channel: int = 0) -> str:
        return f"{plate}/{plate}_{well}_s{site}.tif"

    def write_stored(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        path = images_dir / self.relpath(plate, well, site)
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, np.ascontiguousarray(np.stack(planes)), metadata=None)
        return [path]


class OmeTiffWriter(MultipageWriter):
    """One OME-TIFF per field: axes CYX, channel names, physical pixel size, significant bits."""

    name = "ometiff"

    def relpath(self, plate: str, well: str, site: int, channel: int = 0) -> str:
        return f"{plate}/{plate}_{well}_s{site}.ome.tif"

    def write_stored(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        path = images_dir / self.relpath(plate, well, site)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "axes": "CYX",
            "Channel": {"Name": list(CHANNEL_NAMES[: len(planes)])},
            "PhysicalSizeX": self.pixel_size_um,
            "PhysicalSizeY": self.pixel_size_um,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
            "SignificantBits": self.bits,
        }
        tifffile.imwrite(path, np.ascontiguousarray(np.stack(planes)), ome=True, metadata=metadata)
        return [path]


class LoadDataWriter(ExportWriter):
    """Planes in `{plate}/{well}/` with free-form names, listed by a CellProfiler `load_data.csv`."""

    name = "loaddata"
    channel_columns = ("OrigActin", "OrigDNA")

    def __init__(self) -> None:
        self._rows: list[dict[str, object]] = []

    def relpath(self, plate: str, well: str, site: int, channel: int) -> str:
        return f"{plate}/{well}/{plate}-{well}-f{site}-{self.channel_columns[channel - 1]}.tif"

    def write_stored(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        paths = super().write_stored(images_dir, plate, well, site, planes)
        row: dict[str, object] = {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site}
        for name, path in zip(self.channel_columns, paths, strict=False):
            row[f"Image_FileName_{name}"] = path.name
            row[f"Image_PathName_{name}"] = os.path.relpath(path.parent, images_dir)
        self._rows.append(row)
        return paths

    def finish(self, images_dir: Path) -> None:
        if self._rows:
            pd.DataFrame(self._rows).to_csv(Path(images_dir) / "load_data.csv", index=False)
        self._rows.clear()


class OmeZarrWriter(ExportWriter):
    """An NGFF 0.4 HCS plate `{plate}.zarr`: arrays (c, z=1, y, x) with channel labels and pixel size."""

    name = "omezarr"

    def __init__(self) -> None:
        self._wells: dict[str, dict[str, int]] = defaultdict(dict)  # plate -> well path -> fields

    def relpath(self, plate: str, well: str, site: int, channel: int = 0) -> str:
        row, col = parse_well(well)
        return f"{plate}.zarr/{well[0]}/{col + 1}/{site - 1}/0"

    def write_stored(
        self, images_dir: Path, plate: str, well: str, site: int, planes: Sequence[np.ndarray]
    ) -> list[Path]:
        zarr = _zarr()
        data = np.stack(planes)[:, None]  # (c, z, y, x)
        array_path = images_dir / self.relpath(plate, well, site)
        root = zarr.open_group(str(images_dir / f"{plate}.zarr"), mode="a", zarr_format=2)
        image = root.require_group(str(array_path.parent.relative_to(images_dir / f"{plate}.zarr")))
        arr = image.create_array("0", shape=data.shape, chunks=(1, 1, *data.shape[2:]), dtype=data.dtype)
        arr[:] = data
        px = self.pixel_size_um
        image.attrs["multiscales"] = [
            {
                "version": "0.4",
                "axes": [
                    {"name": "c", "type": "channel"},
                    {"name": "z", "type": "space", "unit": "micrometer"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, px, px]}]}
                ],
            }
        ]
        image.attrs["omero"] = {
            "channels": [{"label": n, "window": {"start": 0, "end": 2**self.bits - 1}} for n in CHANNEL_NAMES]
        }
        well_path = "/".join(array_path.parent.relative_to(images_dir / f"{plate}.zarr").parts[:2])
        self._wells[plate][well_path] = max(self._wells[plate].get(well_path, 0), site)
        return [array_path]

    def finish(self, images_dir: Path) -> None:
        zarr = _zarr()
        for plate, wells in self._wells.items():
            root = zarr.open_group(str(Path(images_dir) / f"{plate}.zarr"), mode="a", zarr_format=2)
            rows = sorted({w.split("/")[0] for w in wells})
            cols = sorted({w.split("/")[1] for w in wells}, key=int)
            well_list = []
            for path, n_fields in sorted(wells.items()):
                r, c = path.split("/")
                well_list.append({"path": path, "rowIndex": rows.index(r), "columnIndex": cols.index(c)})
                root[path].attrs["well"] = {
                    "images": [{"path": str(i)} for i in range(n_fields)],
                    "version": "0.4",
                }
            root.attrs["plate"] = {
                "name": plate,
                "version": "0.4",
                "rows": [{"name": r} for r in rows],
                "columns": [{"name": c} for c in cols],
                "wells": well_list,
                "field_count": max(wells.values()),
                "acquisitions": [{"id": 0}],
            }
        self._wells.clear()


def _zarr():  # noqa: ANN202 - the zarr module
    try:
        import zarr
    except ImportError as exc:
        raise FibroclassError("the omezarr layout needs the 'zarr' package (pip install zarr)") from exc
    return zarr


def _per_plane(base: type[Writer]) -> dict[str, object]:
    """Class attributes giving an ExportWriter the file naming of a plain per-plane writer."""
    return {"relpath": base.relpath, "__doc__": base.__doc__}


BASE_WRITERS: dict[str, type[ExportWriter]] = {
    w.name: w
    for w in (
        HarmonyWriter,
        HarmonyZStackWriter,
        ImageXpressHTDWriter,
        MultipageWriter,
        OmeTiffWriter,
        LoadDataWriter,
        OmeZarrWriter,
        type("ImageXpressExport", (ExportWriter,), {"name": "imagexpress", **_per_plane(ImageXpressWriter)}),
        type("OperettaExport", (ExportWriter,), {"name": "operetta", **_per_plane(OperettaWriter)}),
    )
}


def _variant(base: type[ExportWriter], suffix: str, **attrs: object) -> type[ExportWriter]:
    return type(
        f"{base.__name__}_{suffix.replace('-', '_')}", (base,), {"name": f"{base.name}-{suffix}", **attrs}
    )


EXPORT_WRITERS: dict[str, type[Writer]] = {
    **{n: w for n, w in BASE_WRITERS.items() if n not in ("imagexpress", "operetta")},
    **{f"{n}-12bit": _variant(w, "12bit", bits=12) for n, w in BASE_WRITERS.items()},
    **{f"{n}-8bit": _variant(w, "8bit", bits=8) for n, w in BASE_WRITERS.items()},
    **{f"{n}-vignette": _variant(w, "vignette", vignette=STRONG_VIGNETTE) for n, w in BASE_WRITERS.items()},
}


def export_index(index: pd.DataFrame, naming: str, images_dir: str | Path) -> Path:
    """Write the fields of a field index (uint16 planes, `path_actin`, `path_nuclei`, ...) in another layout.

    The same stored pixels under another export layout (plus its variant's bit depth / vignetting);
    returns `images_dir`.
    """
    from fibroclass.io.images import read_raw
    from fibroclass.schema import PLATE, SITE, WELL
    from fibroclass.simulate.writers import get_writer

    writer = get_writer(naming)
    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    channels = [c for c in index.columns if c.startswith("path_")]
    for row in index.to_dict("records"):
        planes = [read_raw(row[c]) for c in channels]
        bad = [p.dtype for p in planes if p.dtype != np.uint16]
        if bad:
            raise FibroclassError(f"export_index re-exports uint16 planes; {row[channels[0]]} is {bad[0]}")
        writer.write(images_dir, row[PLATE], row[WELL], int(row[SITE]), planes)
    finish = getattr(writer, "finish", None)
    if finish is not None:
        finish(images_dir)
    return images_dir
