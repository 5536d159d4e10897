"""The one user-facing error type: the CLI prints its message on one line and exits 1."""

from __future__ import annotations


class FibroclassError(Exception):
    """A user mistake or unusable input; the message must name the file/well/column involved."""
