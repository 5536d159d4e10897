"""Helpers of the format tests: one tiny simulated plate, re-exported in every layout (same pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fibroclass.io.discover import DiscoveryResult, discover_fields
from fibroclass.io.images import read_field, read_raw
from fibroclass.io.index import build_index
from fibroclass.schema import BIT_DEPTH, PLATE, SITE, WELL
from fibroclass.simulate import export_index, simulate_training_set

KEYS = [PLATE, WELL, SITE]


def source_plate(root: Path, size: int = 32, fields: int = 2) -> tuple[pd.DataFrame, Path]:
    """A simulated ImageXpress plate (8 fields of 4 wells) and its plate map: (field index, plate map)."""
    sim = simulate_training_set(
        root / "source", size=size, fields=fields, n_plates=1, donors_per_class=1, wells_per_donor=2
    )
    return build_index(sim.images_dir, sim.platemap).index, sim.platemap


def exported(index: pd.DataFrame, naming: str, root: Path, **discover) -> DiscoveryResult:
    """The same stored pixels written in layout `naming` under `root/naming`, then discovered."""
    return discover_fields(export_index(index, naming, root / naming), **discover)


def pixels(fields: pd.DataFrame, channels: tuple[str, ...] = ("actin", "nuclei")) -> np.ndarray:
    """(n, C, H, W) float32 of every field, scaled by the index's bit depth."""
    return np.stack(
        [
            read_field([row[f"path_{c}"] for c in channels], int(row[BIT_DEPTH]) or None)
            for row in fields.to_dict("records")
        ]
    )


def raw(fields: pd.DataFrame, channel: str = "actin") -> np.ndarray:
    """(n, H, W) stored values of one channel."""
    return np.stack([read_raw(p) for p in fields[f"path_{channel}"]])
