"""On-disk field cache: each field decoded once into a memory-mappable `.npy`, shared by every process.

`MemmapFieldCache` is a `FieldCache` whose fields live in `<cache_dir>/<kk>/<key>.npy` (the prepared
(C, H, W) float32 field, exactly what `FieldCache.load` returns). The key hashes the field's channel
locators, the cache's preparation settings (`FieldCache.cache_key`) and the size + modification time of
every source file, so a re-exported image or another downsampling factor is decoded again while
everything else is reused across runs, splits, DataLoader workers and DDP ranks (the OS page cache
holds one copy). Files are written atomically (temp file + rename), so concurrent builders and killed
runs never leave a torn field. Entries of changed sources are orphaned, not deleted: remove the folder
to reclaim space.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fibroclass.data.fields import FieldCache
from fibroclass.data.reader import FieldReader
from fibroclass.errors import FibroclassError
from fibroclass.io.images import parse_locator, split_projection


def _source_stats(locator: str) -> list[list[int] | None]:
    out: list[list[int] | None] = []
    for part in split_projection(locator):
        try:
            st = os.stat(parse_locator(part).source)
            out.append([st.st_size, st.st_mtime_ns])
        except OSError:
            out.append(None)
    return out


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MemmapFieldCache(FieldCache):
    """Fields decoded once into per-field `.npy` files under `cache_dir` and served as read-only memmaps.

    Drop-in for `FieldCache` (`get(i)` → (C, H, W) float32, `preload()`); `preload(workers)` decodes the
    missing fields with a thread pool. Worker processes reopen the files lazily (maps are not pickled).
    """

    def __init__(
        self, paths: Sequence[Sequence[str]], downsample: int = 1, cache_dir: str | Path = "."
    ) -> None:
        super().__init__(paths, downsample)
        self.cache_dir = Path(cache_dir)
        self._keys: list[str] | None = None
        self._maps: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    @property
    def keys(self) -> list[str]:
        """Per-field cache keys (sources are stat'ed once per cache object)."""
        if self._keys is None:
            prep = self.cache_key()
            self._keys = [
                hashlib.sha256(
                    json.dumps([prep, list(p), [_source_stats(x) for x in p]]).encode()
                ).hexdigest()
                for p in self.paths
            ]
        return self._keys

    def file(self, i: int) -> Path:
        """The `.npy` holding field `i`."""
        key = self.keys[i]
        return self.cache_dir / key[:2] / f"{key}.npy"

    def _ensure(self, i: int) -> Path:
        path = self.file(i)
        if not path.is_file():
            _save_atomic(path, np.ascontiguousarray(self.load(i), dtype=np.float32))
        return path

    def get(self, i: int) -> np.ndarray:
        """Field `i` as a read-only (C, H, W) float32 memory map (decoded and stored on first use)."""
        arr = self._maps.get(i)
        if arr is None:
            path = self._ensure(i)
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise FibroclassError(f"field cache file {path} is unreadable ({exc}); delete it") from exc
            self._maps[i] = arr
        return arr

    def missing(self) -> list[int]:
        """Fields not yet in the cache."""
        return [i for i in range(len(self)) if not self.file(i).is_file()]

    def preload(self, workers: int | None = None) -> None:
        """Decode every missing field now, `workers` threads at a time (default: CPU count)."""
        todo = self.missing()
        if not todo:
            return
        n = workers or os.cpu_count() or 1
        if n <= 1:
            for i in todo:
                self._ensure(i)
            return
        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(self._ensure, todo))


__all__ = ["MemmapFieldCache"]


def make_field_cache(
    paths: Sequence[Sequence[str]],
    downsample: int = 1,
    cache_dir: str | None = None,
    reader: FieldReader | None = None,
) -> FieldCache:
    """In-memory `FieldCache`, or the on-disk memory-mapped cache under `cache_dir` when given."""
    if not cache_dir:
        return FieldCache(paths, downsample, reader)

    cache = MemmapFieldCache(paths, downsample, cache_dir)
    cache.reader = reader
    return cache
