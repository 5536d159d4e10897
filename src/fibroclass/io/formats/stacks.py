"""Z-stacks and timepoints of index-file formats: which plane(s) of a stack a field uses.

`z` is `"max"` (maximum projection over all planes, the default) or a 1-based plane number, as the
export numbers planes (Harmony PlaneID, ImageXpress ZStep_N). Only the first timepoint is indexed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from fibroclass.errors import FibroclassError
from fibroclass.io.images import max_projection_locator

ZChoice = str | int


def check_z(z: ZChoice) -> ZChoice:
    """Validate a Z choice: "max" or a plane number >= 1 (strings of digits accepted)."""
    if isinstance(z, str) and z.strip().lower() == "max":
        return "max"
    try:
        plane = int(z)
    except (TypeError, ValueError):
        raise FibroclassError(f"z must be 'max' or a plane number >= 1, got {z!r}") from None
    if plane < 1:
        raise FibroclassError(f"z must be 'max' or a plane number >= 1, got {z!r}")
    return plane


def z_index(z: ZChoice) -> str | int:
    """The `z=` value of an in-file locator: "max" or the 0-based plane index."""
    z = check_z(z)
    return z if z == "max" else int(z) - 1


def choose_planes(planes: Mapping[int, str], z: ZChoice) -> str | None:
    """The locator for one channel of a field given its planes {plane number: locator}.

    None when the chosen plane is missing. A single plane is used as is.
    """
    z = check_z(z)
    if z == "max":
        return max_projection_locator([planes[p] for p in sorted(planes)])
    return planes.get(int(z))


def first_timepoint(timepoints: set[int], where: str, problems: list[str]) -> int:
    """The lowest timepoint, noting in `problems` when there are several."""
    first = min(timepoints)
    if len(timepoints) > 1:
        problems.append(f"{where} holds {len(timepoints)} timepoints; only timepoint {first} is indexed")
    return first


def with_z(fmt: object, z: ZChoice) -> object:
    """`fmt` reading stacks with `z` (a copy; formats without stacks are returned as they are)."""
    if not hasattr(fmt, "z") or check_z(z) == fmt.z:
        return fmt
    clone = copy.copy(fmt)
    clone.z = check_z(z)
    return clone
