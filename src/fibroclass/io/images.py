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

Memory is bounded whatever a file claims: what a locator will decode is planned from the header alone
(`plane_info`: plane shape, dtype, pages, tiles/strips, planes projected), and `read_raw` refuses with
`OversizeError` ("oversize: ...") before decoding a plane larger than `max_pixels` (default
`DEFAULT_MAX_MEGAPIXELS`), more than `MAX_PLANES` planes for one projection or more than `MAX_SEGMENTS`
tiles per plane. Projections are decoded one plane at a time (peak memory: two planes).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from fibroclass.errors import FibroclassError
from fibroclass.io.bitdepth import scale_to_unit

_FRAGMENT = re.compile(r"(?:[a-z]+=[A-Za-z0-9_.-]+)(?:&[a-z]+=[A-Za-z0-9_.-]+)*")
_KEYS = ("page", "c", "z", "t")
FLOAT_TOLERANCE = 1e-3  # float pixels this far outside [0, 1] are rounding, not another scale
DEFAULT_MAX_MEGAPIXELS = 64.0  # largest plane decoded per channel (score config: discovery.max_megapixels)
MAX_PLANES = 1024  # most planes decoded (max-projected) for one channel of a field
MAX_SEGMENTS = 1_000_000  # most tiles or strips in one plane


class OversizeError(FibroclassError):
    """A file whose header claims more than may be decoded; the message starts with `oversize: `."""


@dataclass(frozen=True)
class PlaneInfo:
    """What decoding one plane locator (no `|`) reads, from its file's header alone."""

    source: str
    shape: tuple[int, ...]  # one decoded plane: (Y, X), (Y, X, samples) for RGB, or more for a stack
    dtype: str
    planes: int = 1  # planes decoded and max-projected into it
    pages: int = 1  # pages (IFDs) in the file
    segments: int = 1  # tiles or strips per page

    @property
    def pixels(self) -> int:
        """Values in one decoded plane."""
        return math.prod(self.shape)

    def describe(self) -> str:
        """`W × H px` (plus samples) of one plane."""
        dims = (self.shape[1], self.shape[0], *self.shape[2:]) if len(self.shape) >= 2 else self.shape
        return " × ".join(map(str, dims)) + " px"


def check_size(info: PlaneInfo, name: str, max_pixels: float | None = None) -> None:
    """Raise `OversizeError` when `info` claims more than may be decoded (see the module docstring)."""
    cap = DEFAULT_MAX_MEGAPIXELS * 1e6 if max_pixels is None else float(max_pixels)
    if info.pixels > cap:
        raise OversizeError(
            f"oversize: image {name} claims {info.describe()} per plane ({info.pixels / 1e6:.4g} Mpx), above the "
            f"{cap / 1e6:.4g} Mpx cap (discovery.max_megapixels); not decoded"
        )
    if info.planes > MAX_PLANES:
        raise OversizeError(
            f"oversize: image {name} claims {info.planes} planes of {info.describe()} for one channel "
            f"(at most {MAX_PLANES} are projected); not decoded"
        )
    if info.segments > MAX_SEGMENTS:
        raise OversizeError(
            f"oversize: image {name} claims {info.segments} tiles/strips per plane (at most {MAX_SEGMENTS}); "
            "not decoded"
        )


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
    n_planes = math.prod(len(c) for c in choices)
    if n_planes > MAX_PLANES:  # a stack claiming 100000 planes: refused before listing them
        raise OversizeError(
            f"oversize: image {name} claims {n_planes} planes to project (axes {arr_axes}YX, shape {shape}; "
            f"at most {MAX_PLANES}); not decoded"
        )
    grids = np.array(np.meshgrid(*choices, indexing="ij")).reshape(len(choices), -1).T if choices else [()]
    return [tuple(int(v) for v in g) for g in grids]


@dataclass(frozen=True)
class _Plan:
    """How to decode a locator: its `PlaneInfo` and a reader run only after the size check."""

    info: PlaneInfo
    decode: Callable[[], np.ndarray]


def _max_of(planes: Sequence[Callable[[], np.ndarray]], shape: tuple[int, ...]) -> np.ndarray:
    """Maximum projection of planes decoded one at a time (two planes in memory at most)."""
    out: np.ndarray | None = None
    for read in planes:
        plane = np.asarray(read()).reshape(shape)
        out = plane if out is None else np.maximum(out, plane, out=out)
    assert out is not None
    return out


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in shape if s != 1) or (1,)


def _plan_tiff(tif: tifffile.TiffFile, loc: Locator, name: str) -> _Plan:
    # Indexing the pages first detects loops in a damaged IFD chain, which `series` would follow forever.
    n_pages = len(tif.pages)
    first = tif.pages.first
    no_selection = loc.c is None and loc.z is None and loc.t is None

    def info(shape: Sequence[int], page: object = first, planes: int = 1) -> PlaneInfo:
        segments = len(getattr(page, "dataoffsets", ()) or ()) or 1
        return PlaneInfo(
            loc.source, _squeezed(shape), str(getattr(page, "dtype", None)), planes, n_pages, segments
        )

    # ImageJ writes stacks over 4 GB with one IFD: the description claims the other planes.
    ij_images = int((tif.imagej_metadata or {}).get("images", 1) or 1) if tif.is_imagej else 1
    if loc.page is None and no_selection and n_pages == 1 and ij_images <= 1:
        return _Plan(info(first.shape), lambda: np.squeeze(first.asarray()))  # one plane per file
    if loc.page is not None:
        if not 0 <= loc.page < n_pages:
            raise FibroclassError(f"image {name}: page {loc.page} out of range ({n_pages} pages)")
        page = tif.pages[loc.page]
        return _Plan(info(page.shape, page), lambda: np.squeeze(page.asarray()))
    if not tif.series:  # pages without a readable image (a damaged IFD chain)
        raise FibroclassError(f"cannot read image {name}: its {n_pages} page(s) hold no image series")
    series = tif.series[0]
    axes, shape = series.axes, tuple(series.shape)
    if no_selection:
        full = _squeezed(shape)
        rgb = len(full) == 3 and full[-1] in (3, 4)
        if len(full) > 2 and not rgb:  # a stack where one plane is expected: refused from the header
            planes = math.prod(full[:-2])

            def stack() -> np.ndarray:
                raise FibroclassError(
                    f"image {name} has shape {full}, expected a 2-D plane (select one with #page=N or #c=N)"
                )

            return _Plan(info(full[-2:], planes=planes), stack)
        return _Plan(info(full), lambda: np.squeeze(series.asarray()))
    if not axes.endswith("YX"):
        raise FibroclassError(f"image {name} has axes {axes}; expected planes ending in YX")
    lead, lead_shape = axes[:-2], shape[:-2]
    picks = _select(lead, lead_shape, loc, name)
    pages = [int(np.ravel_multi_index(p, lead_shape)) if p else 0 for p in picks]
    readers = [lambda k=k: _series_plane(tif, series, k, shape[-2:]) for k in pages]
    return _Plan(info(shape[-2:], planes=len(pages)), lambda: _max_of(readers, shape[-2:]))


def _series_plane(
    tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, k: int, shape: tuple
) -> np.ndarray:
    """Plane k of a series; a truncated one (an ImageJ stack with one IFD) is read at its contiguous offset."""
    if not getattr(series, "is_truncated", False):
        return tif.asarray(key=k, series=0)
    dtype = np.dtype(series.keyframe.dtype).newbyteorder(tif.byteorder)
    count = math.prod(shape)
    tif.filehandle.seek(int(series.dataoffset) + k * count * dtype.itemsize)
    return tif.filehandle.read_array(dtype, count).reshape(shape).astype(dtype.newbyteorder("="))


def _read_tiff(loc: Locator, name: str, max_pixels: float | None = None) -> np.ndarray:
    with tifffile.TiffFile(loc.source) as tif:
        plan = _plan_tiff(tif, loc, name)
        check_size(plan.info, name, max_pixels)
        return plan.decode()


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


def _plan_zarr(loc: Locator, name: str) -> _Plan:
    try:
        import zarr
    except ImportError as exc:  # optional dependency on Python < 3.11
        raise FibroclassError(f"reading OME-Zarr image {name} needs the 'zarr' package") from exc
    arr = zarr.open_array(loc.source, mode="r")
    axes = _zarr_axes(Path(loc.source), arr.ndim)
    if not axes.endswith("YX"):
        raise FibroclassError(f"OME-Zarr array {name} has axes {axes}; expected planes ending in YX")
    picks = _select(axes[:-2], tuple(arr.shape[:-2]), loc, name)
    chunks = math.prod(math.ceil(s / max(c, 1)) for s, c in zip(arr.shape[-2:], arr.chunks[-2:], strict=True))
    info = PlaneInfo(loc.source, tuple(int(s) for s in arr.shape[-2:]), str(arr.dtype), len(picks), 1, chunks)
    readers = [lambda p=p: arr[p] for p in picks]
    return _Plan(info, lambda: _max_of(readers, info.shape))


def _read_zarr(loc: Locator, name: str, max_pixels: float | None = None) -> np.ndarray:
    plan = _plan_zarr(loc, name)
    check_size(plan.info, name, max_pixels)
    return plan.decode()


def _is_zarr_array(source: str) -> bool:
    return os.path.isdir(source) and (
        os.path.isfile(os.path.join(source, ".zarray")) or os.path.isfile(os.path.join(source, "zarr.json"))
    )


def _guarded(part: str, fn: Callable[[], object]) -> object:
    """`fn()` with decoder exceptions (tifffile/zarr raise many types for damaged files) as FibroclassError."""
    try:
        return fn()
    except FibroclassError:
        raise
    except Exception as exc:
        raise FibroclassError(f"cannot read image {part}: {exc}") from exc


def plane_info(locator: str | Path) -> list[PlaneInfo]:
    """What each plane of a locator would decode, read from the headers only (one item per `|` part).

    Raises FibroclassError for an unreadable header, OversizeError for a claimed stack too deep to list.
    """
    infos = []
    for part in split_projection(str(locator)):
        loc = parse_locator(part)
        if _is_zarr_array(loc.source):
            infos.append(_guarded(part, lambda loc=loc, part=part: _plan_zarr(loc, part).info))
            continue

        def header(loc: Locator = loc, part: str = part) -> PlaneInfo:
            with tifffile.TiffFile(loc.source) as tif:
                return _plan_tiff(tif, loc, part).info

        infos.append(_guarded(part, header))
    return infos  # type: ignore[return-value]


def read_raw(locator: str | Path, max_pixels: float | None = None) -> np.ndarray:
    """Read the 2-D plane (or maximum projection) a locator points to, in its stored dtype.

    The header is checked first (`check_size`, cap `max_pixels`, default `DEFAULT_MAX_MEGAPIXELS`): an
    oversize plane or stack raises OversizeError without being decoded.
    """
    text = str(locator)
    parts = split_projection(text)
    total_planes, planes = 0, []
    for part in parts:
        loc = parse_locator(part)
        reader = _read_zarr if _is_zarr_array(loc.source) else _read_tiff
        arr = np.squeeze(
            _guarded(part, lambda loc=loc, part=part, reader=reader: reader(loc, part, max_pixels))
        )
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            raise FibroclassError(
                f"image {part} is an RGB(A) image (shape {arr.shape}); export one grayscale plane per channel"
            )
        if arr.ndim != 2:
            raise FibroclassError(
                f"image {part} has shape {arr.shape}, expected a 2-D plane (select one with #page=N or #c=N)"
            )
        if planes and arr.shape != planes[0].shape:
            shapes = sorted({planes[0].shape, arr.shape})
            raise FibroclassError(f"planes of projection {text} differ in shape {shapes}")
        total_planes += 1
        if total_planes > MAX_PLANES:
            raise OversizeError(
                f"oversize: projection {text[:200]} lists more than {MAX_PLANES} planes; not decoded"
            )
        planes = [arr if not planes else np.maximum(planes[0], arr)]  # one running maximum in memory
    return planes[0]


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


def read_plane(path: str | Path, bit_depth: int | None = None, max_pixels: float | None = None) -> np.ndarray:
    """Read one 2-D plane (any locator) as float32 scaled by `bit_depth` (default: by dtype) to [0, 1].

    Pixel types the model cannot use (see `check_pixels`) raise FibroclassError naming the image; an
    oversize header (`read_raw`, cap `max_pixels`) raises OversizeError.
    """
    return scale_to_unit(check_pixels(read_raw(path, max_pixels), str(path)), bit_depth)


def read_field(
    paths: Sequence[str | Path], bit_depth: int | None = None, max_pixels: float | None = None
) -> np.ndarray:
    """Read one field (one locator per channel, in model channel order) as a (C, H, W) float32 array."""
    planes = [read_plane(p, bit_depth, max_pixels) for p in paths]
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise FibroclassError(
            f"channels of one field differ in shape {sorted(shapes)}: {list(map(str, paths))}"
        )
    return np.stack(planes)
