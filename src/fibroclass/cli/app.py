"""Typer root command `fibroclass`; each command lives in its own module with a `register(app)`."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from fibroclass import __version__
from fibroclass.errors import FibroclassError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# One module per command; each defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = ("simulate", "index", "split", "train", "evaluate", "explain", "score", "report", "demo")

app = typer.Typer(
    name="fibroclass",
    help="Score STAT4 GoF fibroblast disorganization and its drug rescue from fluorescence plates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fibroclass {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """fibroclass: train on control wells, score drug-screen plates.

    Example: fibroclass demo --out demo_out
    """
    _state["debug"] = debug


for _name in COMMAND_MODULES:
    importlib.import_module(f"fibroclass.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and exit code 1.

    Click/Typer handle usage errors (message + exit 2), `--help` and `Exit` themselves (standalone
    mode); their SystemExit is turned into a return code so the demo can chain commands in-process.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args
    try:
        app(args=args, standalone_mode=True, prog_name="fibroclass")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except FibroclassError as exc:
        if _state["debug"]:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
