"""Reading microscope images into float32 arrays scaled to [0, 1] (no torch).

Each `path_<channel>` entry of a field index is a *locator* of one 2-D plane:

- `/data/P1/P1_B02_s1_w1.tif`: a file holding one plane (the classic case; any path without `#`/`|`).
- `/data/P1/P1_B02_s1.tif#page=1`: page 1 (0-based) of a multi-page TIFF.
- `/data/P1/P1_B02_s1.ome.tif#c=1&z=max`: the plane at channel 1 of the first series of an OME-TIFF or
  ImageJ hyperstack, by its axes; keys `c`, `z`, `t` (0-based indices); `z=max` is the maximum projection
  over Z (the default when `z` is not given); `t` defaults to 0; `c` must be given when there are several.
- `/data/P1.zarr/B/2/0/0#c=1&z=max`: the same selection in an OME-Zarr array folder (axes from the
  image's `multiscales` metadata, else `(t)(c)(z)yx` by dimensionality).
- `A|B|C`: the maximum projection of several such planes (a Z-stack stored one file per plane).

Integer pixels are scaled by their bit depth (`io.bitdepth.scale_to_unit`): the field index records one per
plate (`bit_depth` column), so 12-bit data stored as uint16 is divided by 4095, not 65535.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from fibroclass.errors import FibroclassError
from fibroclass.io.bitdepth import scale_to_unit

_FRAGMENT = re.compile(r"(?:[a-z]+=[A-Za-z0-9_.-]+)(?:&[a-z]+=[A-Za-z0-9_.-]+)*")
_KEYS = ("page", "c", "z", "t")
FLOAT_TOLERANCE = 1e-3  # float pixels this far outside [0, 1] are rounding, not another scale


@dataclass(frozen=True)
class Locator:
    """One plane: a file or array folder plus an optional page, or channel/z/time selection."""

    source: str
    page: int | None = None
    c: int | None = None
    z: int | str | None = None  # an index or "max"
    t: int | None = None

    def __str__(self) -> str:
        return make_locator(self.source, page=self.page, c=self.c, z=self.z, t=self.t)


def make_locator(source: str | Path, **keys: int | str | None) -> str:
    """`source#k=v&...` for the keys that are not None (`page`, `c`, `z`, `t`); plain `source` when none."""
    unknown = set(keys) - set(_KEYS)
    if unknown:
        raise ValueError(f"unknown locator keys {sorted(unknown)}")
    parts = [f"{k}={keys[k]}" for k in _KEYS if keys.get(k) is not None]
    return f"{source}#{'&'.join(parts)}" if parts else str(source)


def max_projection_locator(planes: Sequence[str]) -> str:
    """A locator reading the maximum projection of several plane locators."""
    return "|".join(planes) if len(planes) != 1 else planes[0]


def parse_locator(text: str) -> Locator:
    """Split `source#key=value&...` (see module docstring); a `#` not followed by keys is part of the path."""
    source, sep, fragment = text.rpartition("#")
    if not sep or not _FRAGMENT.fullmatch(fragment):
        return Locator(text)
    values: dict[str, int | str] = {}
    for item in fragment.split("&"):
        key, _, value = item.partition("=")
        if key not in _KEYS:
            raise FibroclassError(f"image locator {text} has unknown key {key!r} (known: {', '.join(_KEYS)})")
        if key == "z" and value == "max":
            values[key] = value
        elif value.isdigit():
            values[key] = int(value)
        else:
            raise FibroclassError(f"image locator {text}: {key}={value} must be a 0-based index")
    return Locator(source, **values)


def split_projection(text: str) -> list[str]:
    """The plane locators of a `A|B|C` projection locator (one item for a single plane)."""
    if "|" in text and not os.path.exists(text):
        return text.split("|")
    return [text]


def _select(arr_axes: str, shape: tuple[int, ...], loc: Locator, name: str) -> list[tuple[int, ...] | int]:
    """Index tuples over the leading (non-YX) axes selected by `loc` (several when z=max)."""
    choices: list[list[int]] = []
    for axis, size in zip(arr_axes, shape, strict=True):
        a = axis.lower()
        want: int | str | None = 0 if size == 1 else None  # other axes must be singletons
        if a == "c" and loc.c is not None:
            want = loc.c
        elif a == "z":
            want = "max" if loc.z is None else loc.z
        elif a == "t":
            want = 0 if loc.t is None else loc.t
        if want == "max":
            choices.append(list(range(size)))
        elif want is None:
            raise FibroclassError(
                f"image {name} has {size} planes along axis {axis!r} (axes {arr_axes}YX); "
                f"select one with #{axis.lower()}=N"
            )
        elif not 0 <= int(want) < size:
            raise FibroclassError(f"image {name}: {axis.lower()}={want} is out of range (size {size})")
        else:
            choices.append([int(want)])
    for axis in ("c", "z", "t"):
        if getattr(loc, axis) not in (None, 0, "max") and axis.upper() not in arr_axes.upper():
            raise FibroclassError(f"image {name} has no {axis!r} axis (axes {arr_axes}YX)")
    grids = np.array(np.meshgrid(*choices, indexing="ij")).reshape(len(choices), -1).T if choices else [()]
    return [tuple(int(v) for v in g) for g in grids]


def _read_tiff(loc: Locator, name: str) -> np.ndarray:
    with tifffile.TiffFile(loc.source) as tif:
        # Indexing the pages first detects loops in a damaged IFD chain, which `series` would follow forever.
        n_pages = len(tif.pages)
        if loc.page is None and n_pages == 1 and loc.c is None and loc.z is None and loc.t is None:
            return np.squeeze(tif.pages.first.asarray())  # one plane per file: the common case
        if loc.page is not None:
            if not 0 <= loc.page < n_pages:
                raise FibroclassError(f"image {name}: page {loc.page} out of range ({n_pages} pages)")
            return np.squeeze(tif.pages[loc.page].asarray())
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        if loc.c is None and loc.z is None and loc.t is None:
            return np.squeeze(series.asarray())
        if not axes.endswith("YX"):
            raise FibroclassError(f"image {name} has axes {axes}; expected planes ending in YX")
        lead, lead_shape = axes[:-2], shape[:-2]
        picks = _select(lead, lead_shape, loc, name)
        pages = [int(np.ravel_multi_index(p, lead_shape)) if p else 0 for p in picks]
        data = tif.asarray(key=pages, series=0)
        return data.reshape(len(pages), *shape[-2:]).max(axis=0)


def _zarr_axes(array_dir: Path, ndim: int) -> str:
    """Axis names of an OME-Zarr image array from its parent group's multiscales metadata."""
    for meta_file in (array_dir.parent / ".zattrs", array_dir.parent / "zarr.json"):
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            meta = meta.get("attributes", {}).get("ome", meta.get("attributes", meta))
            for ms in meta.get("multiscales", []):
                axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])]
                if len(axes) == ndim:
                    return "".join(a[0] for a in axes).upper()
    return "TCZYX"[-ndim:]


def _read_zarr(loc: Locator, name: str) -> np.ndarray:
    try:
        import zarr
    except ImportError as exc:  # optional dependency on Python < 3.11
        raise FibroclassError(f"reading OME-Zarr image {name} needs the 'zarr' package") from exc
    arr = zarr.open_array(loc.source, mode="r")
    axes = _zarr_axes(Path(loc.source), arr.ndim)
    if not axes.endswith("YX"):
        raise FibroclassError(f"OME-Zarr array {name} has axes {axes}; expected planes ending in YX")
    picks = _select(axes[:-2], tuple(arr.shape[:-2]), loc, name)
    planes = [np.asarray(arr[p]) for p in picks]
    return np.max(np.stack(planes), axis=0)


def _is_zarr_array(source: str) -> bool:
    return os.path.isdir(source) and (
        os.path.isfile(os.path.join(source, ".zarray")) or os.path.isfile(os.path.join(source, "zarr.json"))
    )


def read_raw(locator: str | Path) -> np.ndarray:
    """Read the 2-D plane (or maximum projection) a locator points to, in its stored dtype."""
    text = str(locator)
    planes = []
    for part in split_projection(text):
        loc = parse_locator(part)
        try:
            arr = _read_zarr(loc, part) if _is_zarr_array(loc.source) else _read_tiff(loc, part)
        except FibroclassError:
            raise
        except Exception as exc:  # tifffile/zarr raise many types for corrupt/truncated files
            raise FibroclassError(f"cannot read image {part}: {exc}") from exc
        arr = np.squeeze(arr)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            raise FibroclassError(
                f"image {part} is an RGB(A) image (shape {arr.shape}); export one grayscale plane per channel"
            )
        if arr.ndim != 2:
            raise FibroclassError(
                f"image {part} has shape {arr.shape}, expected a 2-D plane (select one with #page=N or #c=N)"
            )
        planes.append(arr)
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise FibroclassError(f"planes of projection {text} differ in shape {sorted(shapes)}")
    return planes[0] if len(planes) == 1 else np.max(np.stack(planes), axis=0)


def check_pixels(arr: np.ndarray, name: str) -> np.ndarray:
    """`arr` unchanged when its values can be scaled for the model: 8/16-bit unsigned integers, or floats in
    [0, 1] (NaN/inf pass here: scoring flags such fields); else a FibroclassError naming the image and type."""
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        finite = arr[np.isfinite(arr)]
        if finite.size and (finite.min() < -FLOAT_TOLERANCE or finite.max() > 1 + FLOAT_TOLERANCE):
            raise FibroclassError(
                f"image {name} has {arr.dtype} pixels outside [0, 1] ({finite.min():.4g}..{finite.max():.4g}); "
                "export integer pixels or intensities scaled to [0, 1]"
            )
        return arr
    raise FibroclassError(
        f"image {name} has pixel type {arr.dtype}; expected 8- or 16-bit unsigned integers or floats in [0, 1]"
    )


def read_plane(path: str | Path, bit_depth: int | None = None) -> np.ndarray:
    """Read one 2-D plane (any locator) as float32 scaled by `bit_depth` (default: by dtype) to [0, 1].

    Pixel types the model cannot use (see `check_pixels`) raise FibroclassError naming the image.
    """
    return scale_to_unit(check_pixels(read_raw(path), str(path)), bit_depth)


def read_field(paths: Sequence[str | Path], bit_depth: int | None = None) -> np.ndarray:
    """Read one field (one locator per channel, in model channel order) as a (C, H, W) float32 array."""
    planes = [read_plane(p, bit_depth) for p in paths]
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise FibroclassError(
            f"channels of one field differ in shape {sorted(shapes)}: {list(map(str, paths))}"
        )
    return np.stack(planes)
