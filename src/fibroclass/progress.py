"""The one progress-bar rule: rich bars on stderr, shown on a terminal or with FIBROCLASS_PROGRESS=1."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_default() -> bool:
    """Whether bars are shown when the caller did not say: FIBROCLASS_PROGRESS=1/0, else stderr is a TTY."""
    env = os.environ.get("FIBROCLASS_PROGRESS")
    return env == "1" if env is not None else sys.stderr.isatty()


def show_progress(requested: bool) -> bool:
    """A bar the user asked for (`--progress`, the default) appears where `progress_default` allows it."""
    return requested and (sys.stderr.isatty() or os.environ.get("FIBROCLASS_PROGRESS") == "1")


def progress_bar(enabled: bool, label: str = "{task.description}", transient: bool = True) -> Progress:
    """A bar on stderr: label, bar, done/total and time left (elapsed when `transient` is False)."""
    clock = TimeRemainingColumn() if transient else TimeElapsedColumn()
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        clock,
        console=Console(stderr=True),
        disable=not enabled,
        transient=transient,
    )
