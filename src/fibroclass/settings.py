"""Strict config sections: the one place a YAML mapping becomes a typed (frozen) dataclass.

A section class is a dataclass that inherits `Section` and names itself in `SECTION`; its
`from_dict(mapping)` rejects unknown keys with an error naming the section, the key and the known keys,
and turns a wrong value into an error naming the section instead of a bare TypeError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar, TypeVar

from fibroclass.errors import FibroclassError

S = TypeVar("S", bound="Section")


def check_keys(data: Mapping[str, Any], known: set[str] | list[str], where: str, prefix: str = "") -> None:
    """Raise naming `where` (and each key as `prefix + key`) when `data` has keys outside `known`."""
    unknown = sorted(f"{prefix}{k}" for k in set(data) - set(known))
    if unknown:
        raise FibroclassError(f"unknown key(s) {unknown} in {where} (known: {sorted(known)})")


class Section:
    """Mixin for config dataclasses: strict `from_dict`, plain `to_dict`."""

    SECTION: ClassVar[str] = "config"

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any] | None = None) -> S:
        data = dict(data or {})
        if not isinstance(data, dict):
            raise FibroclassError(f"config section '{cls.SECTION}' must be a mapping")
        check_keys(data, {f.name for f in fields(cls)}, f"config section '{cls.SECTION}'")  # type: ignore[arg-type]
        try:
            return cls(**data)
        except TypeError as exc:
            raise FibroclassError(f"config section '{cls.SECTION}': {exc}") from exc
