"""MetaXpress / ImageXpress plate folders with an `.HTD` file and/or `TimePoint_N/ZStep_M/` subfolders.

File names follow ImageXpress naming (`{plate}_{well}_s{site}_w{n}[UUID].tif`, see `imagexpress`). The HTD
(`"Key", value` lines) names the wavelengths (`WaveName{n}`), which select channels by name as well as by
token `w{n}`. Planes under `ZStep_M` form a Z-stack (maximum projection or plane M, `ImageXpressHTD(z=...)`);
images directly in a `TimePoint_N` folder (or the plate folder) are single planes and are used when there
is no stack. Only the first timepoint is indexed.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from fibroclass.errors import FibroclassError
from fibroclass.io.formats.base import ImageFile, Scan, examples, image_names
from fibroclass.io.formats.imagexpress import ImageXpress
from fibroclass.io.formats.stacks import ZChoice, check_z, choose_planes, first_timepoint

_TIMEPOINT = re.compile(r"timepoint_(\d+)", re.IGNORECASE)
_ZSTEP = re.compile(r"zstep_(\d+)", re.IGNORECASE)
_LINE = re.compile(r'\s*"([^"]+)"\s*(?:,\s*(.*))?$')


def htd_file(folder: Path) -> Path | None:
    """The first `.HTD` file of `folder`, if any."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(".htd"))
    except OSError:
        return None
    return folder / names[0] if names else None


def read_htd(path: Path) -> dict[str, list[str]]:
    """`"Key", v1, v2` lines -> {key: [v1, v2]} (quotes stripped); empty when it is not an HTS info file."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            values = [v.strip().strip('"') for v in (m[2] or "").split(",")] if m[2] else []
            out[m[1]] = values
    return out if "HTSInfoFile" in out or "NWavelengths" in out else {}


def _subdirs(folder: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    try:
        entries = [e for e in os.scandir(folder) if e.is_dir()]
    except OSError:
        return []
    found = [(int(m[1]), Path(e.path)) for e in entries if (m := pattern.fullmatch(e.name))]
    return sorted(found)


def _parse(names: ImageXpress, filename: str, folder: Path) -> ImageFile | None:
    try:
        return names.parse(filename, folder)
    except FibroclassError:  # e.g. an impossible well
        return None


class ImageXpressHTD:
    """ImageXpress plate folders with an HTD or TimePoint/ZStep folders (see module docstring)."""

    name = "imagexpress_htd"
    covers_subfolders = True

    def __init__(self, z: ZChoice = "max") -> None:
        self.z = check_z(z)
        self._names = ImageXpress()

    def detect(self, folder: Path) -> bool:
        htd = htd_file(folder)
        return bool(htd and read_htd(htd)) or bool(_subdirs(folder, _TIMEPOINT))

    def _image_dirs(self, folder: Path) -> list[tuple[int, int | None, Path]]:
        """(timepoint, z step or None, folder) of every folder that may hold images."""
        dirs: list[tuple[int, int | None, Path]] = [(1, None, folder)]
        for t, tdir in _subdirs(folder, _TIMEPOINT):
            dirs.append((t, None, tdir))
            dirs.extend((t, z, zdir) for z, zdir in _subdirs(tdir, _ZSTEP))
        return dirs

    def scan(self, folder: Path) -> Scan:
        folder = Path(os.path.abspath(folder))
        scan = Scan()
        htd = htd_file(folder) or next(
            (h for _, tdir in _subdirs(folder, _TIMEPOINT) if (h := htd_file(tdir))), None
        )
        info = read_htd(htd) if htd else {}
        wave_names = {
            f"w{k.removeprefix('WaveName')}": v[0] for k, v in info.items() if k.startswith("WaveName") and v
        }
        # (plate, well, site, channel) -> timepoint -> z (0 = single plane) -> ImageFile
        stacks: dict[tuple[str, str, int, str], dict[int, dict[int, ImageFile]]]
        stacks = defaultdict(lambda: defaultdict(dict))
        unparsed: list[str] = []
        for t, z, d in self._image_dirs(folder):
            for filename in image_names(d):
                rec = _parse(self._names, filename, folder)
                if rec is None:
                    unparsed.append(str(d / filename))
                    continue
                rec_path = str(d / filename)
                key = (rec.plate, rec.well, rec.site, rec.channel)
                stacks[key][t][z or 0] = ImageFile(rec.plate, rec.well, rec.site, rec.channel, rec_path)
        if unparsed:
            scan.problems.append(
                f"{len(unparsed)} image file(s) under {folder} do not follow imagexpress naming: {examples(unparsed)}"
            )
        if not stacks:
            return scan
        t0 = first_timepoint({t for by_t in stacks.values() for t in by_t}, str(folder), scan.problems)
        no_plane: list[str] = []
        for key, by_t in sorted(stacks.items()):
            planes = by_t.get(t0)
            if not planes:
                continue
            zsteps = {z: f.path for z, f in planes.items() if z > 0}
            locator = choose_planes(zsteps, self.z) if zsteps else planes[0].path
            if locator is None:
                no_plane.append(f"{key[1]} site {key[2]} {key[3]}")
                continue
            scan.files.append(
                ImageFile(
                    plate=key[0],
                    well=key[1],
                    site=key[2],
                    channel=key[3],
                    path=locator,
                    timepoint=t0,
                    channel_name=wave_names.get(key[3], "").strip().lower(),
                )
            )
        if no_plane:
            scan.problems.append(
                f"{folder}: ZStep_{self.z} missing for {len(no_plane)} stack(s): {examples(no_plane)}"
            )
        return scan
