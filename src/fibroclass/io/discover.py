"""Find the fields of microscope exports: one row per plate x well x site with a file path per channel."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fibroclass.errors import FibroclassError
from fibroclass.io.formats import FORMATS, Format, ImageFile, RegexFormat, get_format
from fibroclass.io.formats.base import examples, image_names
from fibroclass.io.formats.stacks import ZChoice, check_z, with_z
from fibroclass.io.headers import check_field_sizes
from fibroclass.io.pixels import annotate_fields
from fibroclass.io.wells import well_row_col, well_sort_key
from fibroclass.schema import COL, PLATE, ROW, SITE, SKIP_REASON, WELL, path_col

# Raw channel token of the export (lower case) -> channel name. Channels are ordered as first named here.
DEFAULT_CHANNEL_MAP: dict[str, str] = {"w1": "actin", "w2": "nuclei", "ch1": "actin", "ch2": "nuclei"}

FieldKey = tuple[str, str, int]


@dataclass
class DiscoveryResult:
    """`fields`: one row per complete field (keys + `path_<channel>`); `problems`: what was left out and why;
    `formats`: folder -> naming used for it."""

    fields: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)

    @property
    def channels(self) -> list[str]:
        """Channel names, in column order."""
        return [c.removeprefix("path_") for c in self.fields.columns if c.startswith("path_")]


def _normalize_channel_map(channel_map: Mapping[str, str] | None) -> dict[str, str]:
    cmap = {str(k).strip().lower(): str(v).strip() for k, v in (channel_map or DEFAULT_CHANNEL_MAP).items()}
    bad = [v for v in cmap.values() if not v.isidentifier()]
    if not cmap or bad:
        raise FibroclassError(
            f"channel map {dict(channel_map or {})} needs channel names like 'actin' (got {bad})"
        )
    return cmap


def _choose_format(folder: Path, naming: str, custom: Format | None, z: ZChoice = "max") -> Format | None:
    if custom is not None:
        return custom
    if naming == "auto":
        return next((with_z(fmt, z) for fmt in FORMATS.values() if fmt.detect(folder)), None)
    fmt = with_z(get_format(naming), z)
    return fmt if (fmt.detect(folder) or image_names(folder)) else None


def _scan_root(
    root: Path, naming: str, custom: Format | None, result: DiscoveryResult, z: ZChoice = "max"
) -> list[ImageFile]:
    files: list[ImageFile] = []
    n_images = 0
    claimed = False  # an index/container format took a folder (its images may not be TIFFs in it)
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        folder = Path(dirpath)
        names = image_names(folder)
        n_images += len(names)
        fmt = _choose_format(folder, naming, custom, z)
        if fmt is None:
            if names:
                result.problems.append(
                    f"{len(names)} image file(s) in {folder} match no known naming: {examples(names)}"
                )
            continue
        scan = fmt.scan(folder)
        if scan.files:
            result.formats[str(folder)] = fmt.name
        files.extend(scan.files)
        result.problems.extend(scan.problems)
        if fmt.covers_subfolders:
            claimed = True
            dirnames.clear()
    if n_images == 0 and not files and not claimed:
        raise FibroclassError(f"no TIFF images found in {root} or its subfolders")
    return files


def _assemble(
    files: list[ImageFile], cmap: dict[str, str], problems: list[str], keep_incomplete: bool = False
) -> pd.DataFrame:
    channels = list(dict.fromkeys(cmap.values()))
    outcome = "field kept as a flagged row" if keep_incomplete else "field skipped"
    unmapped: dict[str, list[str]] = defaultdict(list)
    by_key: dict[FieldKey, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        name = cmap.get(f.channel) or cmap.get(f.channel_name)  # by index token or by metadata name
        if name is None:
            unmapped[f.channel].append(f.path)
        else:
            by_key[(f.plate, f.well, f.site)][name].append(f.path)
    for token, paths in sorted(unmapped.items()):
        problems.append(
            f"channel {token!r} is not in the channel map {cmap}; ignored {len(paths)} file(s): {examples(paths)}"
        )
    rows = []
    for (plate, well, site), found in by_key.items():
        label = f"plate {plate} well {well} site {site}"
        dupes = {ch: paths for ch, paths in found.items() if len(paths) > 1}
        missing = [ch for ch in channels if ch not in found]
        reason = ""
        if dupes:
            detail = "; ".join(f"{ch}: {', '.join(sorted(p))}" for ch, p in dupes.items())
            reason = f"{label}: several files for one channel ({detail})"
        elif missing:
            have = ", ".join(f"{ch}: {p[0]}" for ch, p in found.items())
            reason = f"{label}: missing channel(s) {', '.join(missing)} (found {have})"
        if reason:
            problems.append(f"{reason}; {outcome}")
        if reason and not keep_incomplete:
            continue
        row, col = well_row_col(well)
        paths = {path_col(ch): found[ch][0] if len(found.get(ch, ())) == 1 else "" for ch in channels}
        rows.append({PLATE: plate, WELL: well, ROW: row, COL: col, SITE: site} | paths)
        if keep_incomplete:
            rows[-1][SKIP_REASON] = reason
    columns = [PLATE, WELL, ROW, COL, SITE] + [path_col(ch) for ch in channels]
    columns += [SKIP_REASON] if keep_incomplete else []
    df = pd.DataFrame(rows, columns=columns)
    if df.empty:
        return df.astype({COL: "int64", SITE: "int64"})
    order = sorted(
        range(len(df)), key=lambda i: (rows[i][PLATE], well_sort_key(rows[i][WELL]), rows[i][SITE])
    )
    return df.iloc[order].reset_index(drop=True).astype({COL: "int64", SITE: "int64"})


def discover_fields(
    roots: str | Path | Sequence[str | Path],
    naming: str = "auto",
    channel_map: Mapping[str, str] | None = None,
    pattern: str | None = None,
    z: ZChoice = "max",
    keep_incomplete: bool = False,
    max_megapixels: float | None = None,
) -> DiscoveryResult:
    """Find every field under `roots` (each a plate folder, a folder of plate folders, or a flat export).

    `naming`: "auto" (detected per folder), a registered format ("imagexpress", "operetta") or "custom"
    with `pattern` (a regex with named groups, see `formats.regex`; a pattern implies custom naming).
    `channel_map`: raw channel token -> channel name (default `DEFAULT_CHANNEL_MAP`); tokens not in it
    are ignored and reported (a token may also be a channel name from the export's metadata).
    `z`: Z-stacks become their maximum projection ("max") or plane `z` (1-based). Fields missing a
    channel, duplicate files and unparseable TIFFs are listed in `.problems` and left out of `.fields`;
    with `keep_incomplete` (scoring) fields missing a channel or holding several files for one are kept,
    with "" for those paths and the problem in `skip_reason`. Every file's header is read before any pixel
    (`io.headers.check_field_sizes`): a field over `max_megapixels` per plane (default 64), or wildly larger
    than its plate's fields, is `oversize` (kept flagged with `keep_incomplete`, else left out) and never
    decoded. Raises FibroclassError when a root is missing, holds no TIFFs at all, or no complete field is found.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    if naming == "custom" and not pattern:
        raise FibroclassError("naming 'custom' needs a pattern (a regex with named groups)")
    if naming not in ("auto", "custom"):
        get_format(naming)
    custom = RegexFormat(pattern) if pattern else None
    cmap = _normalize_channel_map(channel_map)
    result = DiscoveryResult(fields=pd.DataFrame())
    files: list[ImageFile] = []
    for root in map(Path, roots):
        root = Path(os.path.abspath(root))
        if not root.is_dir():
            raise FibroclassError(f"image folder {root} does not exist or is not a folder")
        files.extend(_scan_root(root, naming, custom, result, check_z(z)))
    files = list({f.path: f for f in files}.values())  # overlapping roots find a file twice
    result.fields = _assemble(files, cmap, result.problems, keep_incomplete)
    if not result.fields.empty:  # headers first: an oversize field is never decoded (io.headers)
        result.fields, notes = check_field_sizes(result.fields, max_megapixels, keep=keep_incomplete)
        result.problems.extend(notes)
    if not result.fields.empty:  # bit depth per plate, pixel size per field (io.pixels)
        result.fields, notes = annotate_fields(result.fields, {f.path: f for f in files})
        result.problems.extend(notes)
    if result.fields.empty:
        shown = "; ".join(result.problems[:3]) or "no file matched"
        raise FibroclassError(
            f"no complete fields found in {', '.join(map(str, roots))} (naming {naming!r}): {shown}"
        )
    return result
