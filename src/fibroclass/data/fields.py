"""Getting one field as a (C, H, W) float32 array: decode, downsample, cache.

`FieldCache.get(i)` is the single place training reads pixels; it uses the same `read_field` and
`downsample` as scoring, so both see identical inputs. `FieldCache` keeps fields in memory (small data
sets); `make_field_cache(..., cache_dir=...)` returns the memory-mapped on-disk `data.cache.MemmapFieldCache`
(decode once, shared by DataLoader workers and DDP ranks) without touching the datasets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fibroclass.data.reader import FieldReader
from fibroclass.errors import FibroclassError
from fibroclass.io.images import read_field
from fibroclass.measure.resample import downsample as downsample_field
from fibroclass.schema import PLATE, ROLE, ROLE_TO_LABEL, SITE, WELL, path_col


def load_field(paths: Sequence[str], downsample: int = 1) -> np.ndarray:
    """Read one field (a path per channel) and block-mean downsample it: (C, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(downsample_field(read_field(paths), downsample), dtype=np.float32)


def channel_paths(frame: pd.DataFrame, channels: Sequence[str]) -> list[list[str]]:
    """Per-row lists of image paths in `channels` order; names the missing `path_<channel>` column."""
    cols = [path_col(c) for c in channels]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise FibroclassError(f"field index has no column {missing[0]} (channels {list(channels)})")
    return frame[cols].astype(str).values.tolist()


def field_labels(frame: pd.DataFrame) -> np.ndarray:
    """Binary labels from the `role` column: healthy 0, disease 1; other roles are an error."""
    bad = frame.loc[~frame[ROLE].isin(list(ROLE_TO_LABEL)), [PLATE, WELL, SITE, ROLE]]
    if not bad.empty:
        r = bad.iloc[0]
        raise FibroclassError(
            f"field {r[PLATE]} {r[WELL]} site {r[SITE]} has role {r[ROLE]!r}; training uses only "
            f"{sorted(ROLE_TO_LABEL)} wells"
        )
    return frame[ROLE].map(ROLE_TO_LABEL).to_numpy(dtype=np.int64)


class FieldCache:
    """Fields of one split, decoded and downsampled on first use, then kept in memory."""

    def __init__(
        self, paths: Sequence[Sequence[str]], downsample: int = 1, reader: FieldReader | None = None
    ) -> None:
        self.paths = [list(p) for p in paths]
        self.reader = reader  # row i -> corrected (C, H, W) field (data.illumination); None: read_field
        self.downsample = int(downsample)
        if self.downsample < 1:
            raise FibroclassError(f"downsample must be >= 1, got {downsample}")
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> np.ndarray:
        """Decode and prepare field `i` (no caching): the one place a training field's pixels come from."""
        if self.reader is None:
            return load_field(self.paths[i], self.downsample)
        return np.ascontiguousarray(downsample_field(self.reader(i), self.downsample), dtype=np.float32)

    def cache_key(self) -> str:
        """The preparation settings `load` depends on (part of the on-disk cache key, `data.cache`)."""
        prep = self.reader.cache_key() if self.reader is not None else "load_field"
        return f"{prep}:downsample={self.downsample}"

    def get(self, i: int) -> np.ndarray:
        """Field `i` as (C, H, W) float32."""
        img = self._cache.get(i)
        if img is None:
            img = self.load(i)
            self._cache[i] = img
        return img

    def preload(self) -> None:
        """Decode every field now (before DataLoader workers fork, so they share the pages)."""
        for i in range(len(self)):
            self.get(i)
