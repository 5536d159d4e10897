"""Deterministic random streams keyed by names (plate, well, site, donor), independent of file naming."""

from __future__ import annotations

import zlib

import numpy as np


def _key(part: int | str) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))
    if int(part) < 0:
        raise ValueError(f"seed parts must be >= 0, got {part}")
    return int(part)


def rng_for(seed: int, *parts: int | str) -> np.random.Generator:
    """A generator that depends only on `seed` and the ordered `parts` (e.g. plate, well, site)."""
    return np.random.default_rng(np.random.SeedSequence([_key(seed), *(_key(p) for p in parts)]))
