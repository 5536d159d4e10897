"""Typer root command `fibroclass`; each command lives in its own module with a `register(app)`."""

from __future__ import annotations

import importlib
import os
import sys

import click
import typer

from fibroclass.errors import FibroclassError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# One module per command; each defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = ("simulate", "index", "split", "train", "evaluate", "explain", "score", "demo")

app = typer.Typer(
    name="fibroclass",
    help="Score STAT4 GoF fibroblast disorganization and its drug rescue from fluorescence plates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """fibroclass: train on control wells, score drug-screen plates.

    Example: fibroclass demo --out demo_out
    """
    _state["debug"] = debug


for _name in COMMAND_MODULES:
    importlib.import_module(f"fibroclass.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args
    try:
        app(args=args, standalone_mode=False, prog_name="fibroclass")
    except FibroclassError as exc:
        if _state["debug"]:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
