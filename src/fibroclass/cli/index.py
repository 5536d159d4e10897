"""`fibroclass index`: discover plate images, join the plate map, write the field index (parquet)."""

from __future__ import annotations

from pathlib import Path

import typer

from fibroclass.errors import FibroclassError
from fibroclass.io.discover import DEFAULT_CHANNEL_MAP
from fibroclass.io.formats import naming_choices
from fibroclass.io.index import build_index, write_index
from fibroclass.schema import PLATE, ROLE, WELL

MAX_WARNINGS = 20
_DEFAULT_CHANNELS = " ".join(f"{k}={v}" for k, v in DEFAULT_CHANNEL_MAP.items())


def parse_channel_options(items: list[str] | None) -> dict[str, str] | None:
    """`["w1=actin", "w2=nuclei"]` -> {"w1": "actin", "w2": "nuclei"} (None when empty)."""
    if not items:
        return None
    cmap = {}
    for item in items:
        token, sep, name = item.partition("=")
        if not sep or not token.strip() or not name.strip():
            raise FibroclassError(f"--channel {item!r} must look like TOKEN=NAME, e.g. w1=actin")
        cmap[token.strip()] = name.strip()
    return cmap


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index(
        dirs: list[Path] = typer.Argument(
            ..., help="Plate folders, folders of plate folders, or flat exports."
        ),
        platemap: Path = typer.Option(..., "--platemap", help="Plate map CSV (DESIGN.md contract)."),
        out: Path = typer.Option(..., "--out", help="Field index to write (parquet)."),
        naming: str = typer.Option(
            "auto",
            "--naming",
            help=naming_choices() + ".",
        ),
        z: str = typer.Option(
            "max", "--z", help="Z-stacks: max (maximum projection) or a plane number (1 = first)."
        ),
        pattern: str | None = typer.Option(
            None,
            "--pattern",
            help="Regex with named groups plate/well (or row+col)/site/channel (custom naming).",
        ),
        channel: list[str] | None = typer.Option(
            None,
            "--channel",
            help=f"Channel TOKEN=NAME, repeatable (default {_DEFAULT_CHANNELS}).",
        ),
        verbose: bool = typer.Option(
            False, "--verbose", help=f"Print all warnings, not the first {MAX_WARNINGS}."
        ),
    ) -> None:
        """Index the fields of plate exports and join them with the plate map.

        Example: fibroclass index exports/PLATE1 exports/PLATE2 --platemap platemap.csv --out data/index.parquet
        """
        result = build_index(
            dirs, platemap, naming=naming, channel_map=parse_channel_options(channel), pattern=pattern, z=z
        )
        df = result.index
        write_index(df, out)
        typer.echo(
            f"indexed {len(df)} fields in {df[[PLATE, WELL]].drop_duplicates().shape[0]} wells "
            f"of {df[PLATE].nunique()} plate(s) -> {out}"
        )
        wells = df[[PLATE, WELL, ROLE]].drop_duplicates().groupby(ROLE).size()
        for role, n_fields in df.groupby(ROLE).size().items():
            typer.echo(f"  {role:<10} {wells[role]:>5} wells {n_fields:>6} fields")
        shown = result.warnings if verbose else result.warnings[:MAX_WARNINGS]
        for warning in shown:
            typer.echo(f"warning: {warning}", err=True)
        if len(shown) < len(result.warnings):
            typer.echo(f"warning: ... {len(result.warnings) - len(shown)} more (use --verbose)", err=True)
