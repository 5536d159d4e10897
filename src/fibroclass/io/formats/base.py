"""The unit of an export format: parse the images of one folder into `ImageFile` records.

A format is any object with a `name`, `detect(folder)` and `scan(folder)` (the `Format` protocol).
Discovery walks every folder under a root top-down and, per folder, asks each registered format in
turn whether it `detect`s it; the first that does `scan`s it. A format whose `covers_subfolders`
is true (e.g. a reader of an index file that lists images in subfolders) stops the walk below that
folder. Formats report what they cannot parse as human-readable problems instead of raising.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fibroclass.errors import FibroclassError

IMAGE_SUFFIXES = (".tif", ".tiff")
MAX_EXAMPLES = 3


@dataclass(frozen=True)
class ImageFile:
    """One image plane on disk: its field keys, the raw channel token of the export and its path."""

    plate: str
    well: str  # canonical, e.g. "B02"
    site: int
    channel: str  # raw lower-case token, e.g. "w1" (ImageXpress) or "ch1" (Operetta)
    path: str  # absolute (symlinks not resolved)
    plane: int = 1
    timepoint: int = 1
    channel_name: str = ""  # lower-case channel name from the export's metadata (e.g. "alexa 488"), if any
    pixel_size_um: float | None = None  # from the export's metadata, if it says
    bit_depth: int | None = None  # declared significant bits (e.g. OME SignificantBits), if any


@dataclass
class Scan:
    """What a format found in one folder."""

    files: list[ImageFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Format(Protocol):
    """An export format (see module docstring)."""

    name: str
    covers_subfolders: bool

    def detect(self, folder: Path) -> bool:
        """Whether this format recognizes `folder` (without reading image data)."""
        ...

    def scan(self, folder: Path) -> Scan:
        """Parse the images of `folder` (and of its subfolders when `covers_subfolders`)."""
        ...


def is_candidate_image(name: str) -> bool:
    """TIFF files that could be fields: not hidden, not AppleDouble, not thumbnails."""
    low = name.lower()
    return low.endswith(IMAGE_SUFFIXES) and not low.startswith(".") and "_thumb" not in low


def image_names(folder: Path) -> list[str]:
    """Sorted names of candidate image files directly in `folder`."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return sorted(e.name for e in entries if e.is_file() and is_candidate_image(e.name))


def plate_from_folder(folder: Path) -> str:
    """Plate name of a folder of images: its name, or its parent's for Harmony-style `Images/` folders."""
    folder = Path(os.path.abspath(folder))
    if folder.name.lower() == "images" and folder.parent.name:
        return folder.parent.name
    return folder.name


def examples(items: list[str]) -> str:
    """`a, b, c (+N more)` for messages."""
    shown = ", ".join(items[:MAX_EXAMPLES])
    more = len(items) - MAX_EXAMPLES
    return f"{shown} (+{more} more)" if more > 0 else shown


class NameFormat:
    """A format where each file name alone gives plate (optional), well, site and channel.

    Subclasses set `name` and implement `parse(filename, folder) -> ImageFile | None` (None, or a
    FibroclassError such as an invalid well, for names it cannot parse); `folder` is absolute in `scan`.
    """

    name = "names"
    covers_subfolders = False

    def parse(self, filename: str, folder: Path) -> ImageFile | None:
        raise NotImplementedError

    def _try_parse(self, filename: str, folder: Path) -> ImageFile | None:
        try:
            return self.parse(filename, folder)
        except FibroclassError:
            return None

    def detect(self, folder: Path) -> bool:
        return any(self._try_parse(n, folder) is not None for n in image_names(folder))

    def scan(self, folder: Path) -> Scan:
        folder = Path(os.path.abspath(folder))  # absolute, but symlinks kept as the user sees them
        scan = Scan()
        unparsed: list[str] = []
        for filename in image_names(folder):
            rec = self._try_parse(filename, folder)
            if rec is None:
                unparsed.append(filename)
            else:
                scan.files.append(rec)
        if unparsed:
            scan.problems.append(
                f"{len(unparsed)} image file(s) in {folder} do not follow {self.name} naming: {examples(unparsed)}"
            )
        return scan
