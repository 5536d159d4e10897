"""`fibroclass score` (placeholder until implemented)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("score")
    def _placeholder() -> None:
        """Not implemented yet."""
        raise typer.Exit(2)
