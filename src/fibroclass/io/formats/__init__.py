"""Registry of export formats, tried in order by `naming="auto"` (see `base` for the protocol).

To add a format, implement `Format` and `register_format(MyFormat(), before="imagexpress")`;
formats keyed on an index file (Harmony Index.xml, ImageXpress .HTD, LoadData CSV) should come first.
"""

from __future__ import annotations

from fibroclass.errors import FibroclassError
from fibroclass.io.formats.base import Format, ImageFile, NameFormat, Scan
from fibroclass.io.formats.harmony import Harmony
from fibroclass.io.formats.imagexpress import ImageXpress
from fibroclass.io.formats.imagexpress_htd import ImageXpressHTD
from fibroclass.io.formats.loaddata import LoadData
from fibroclass.io.formats.ometiff import OmeTiff
from fibroclass.io.formats.omezarr import OmeZarr
from fibroclass.io.formats.operetta import Operetta
from fibroclass.io.formats.regex import RegexFormat

FORMATS: dict[str, Format] = {}


def register_format(fmt: Format, before: str | None = None) -> None:
    """Add (or replace) a format; `before` puts it ahead of an existing one in auto-detection order."""
    items = [(k, v) for k, v in FORMATS.items() if k != fmt.name]
    pos = next((i for i, (k, _) in enumerate(items) if k == before), len(items))
    items.insert(pos, (fmt.name, fmt))
    FORMATS.clear()
    FORMATS.update(items)


def naming_choices() -> str:
    """`auto | <each registered format> | custom`: the --naming help of the CLI, from the registry."""
    return " | ".join(["auto", *FORMATS, "custom"])


def get_format(name: str) -> Format:
    """The registered format called `name`."""
    try:
        return FORMATS[name]
    except KeyError:
        raise FibroclassError(
            f"unknown naming {name!r} (known: auto, custom, {', '.join(FORMATS)})"
        ) from None


# Index-file and container formats first: their folders may also hold names other formats would parse.
register_format(LoadData())
register_format(Harmony())
register_format(OmeZarr())
register_format(ImageXpressHTD())
register_format(OmeTiff())
register_format(Operetta())
register_format(ImageXpress())

__all__ = [
    "FORMATS",
    "Format",
    "Harmony",
    "ImageFile",
    "ImageXpress",
    "ImageXpressHTD",
    "LoadData",
    "NameFormat",
    "OmeTiff",
    "OmeZarr",
    "Operetta",
    "RegexFormat",
    "Scan",
    "get_format",
    "register_format",
]
