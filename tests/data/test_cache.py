"""On-disk memory-mapped field cache: same pixels as decoding, decoded once, invalidated by source
changes, shared with DataLoader worker processes, wired into the DataModule."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile
import torch
from tinyplate import make_tiny_split
from torch.utils.data import DataLoader

from fibroclass.data.cache import MemmapFieldCache, make_field_cache
from fibroclass.data.datamodule import FibroDataModule
from fibroclass.data.datasets import FieldTileDataset
from fibroclass.data.fields import FieldCache


class CountingCache(MemmapFieldCache):
    """Counts decodes (the real decode still runs)."""

    decodes = 0

    def load(self, i: int) -> np.ndarray:
        CountingCache.decodes += 1
        return super().load(i)


@pytest.fixture
def fields(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for f in range(5):
        row = []
        for ch in (1, 2):
            path = tmp_path / "img" / f"P1_A0{f + 1}_s1_w{ch}.tif"
            path.parent.mkdir(exist_ok=True)
            tifffile.imwrite(path, rng.integers(0, 65535, (36, 41), dtype=np.uint16))
            row.append(str(path))
        paths.append(row)
    return paths


def test_same_pixels_as_decoding_and_decoded_once(tmp_path, fields):
    CountingCache.decodes = 0
    ref = FieldCache(fields, downsample=2)
    cache = CountingCache(fields, downsample=2, cache_dir=tmp_path / "cache")
    cache.preload(workers=2)
    assert CountingCache.decodes == 5 and len(list((tmp_path / "cache").rglob("*.npy"))) == 5
    for i in range(5):
        got = cache.get(i)
        assert isinstance(got, np.memmap) and got.dtype == np.float32 and not got.flags.writeable
        np.testing.assert_array_equal(got, ref.get(i))

    again = CountingCache(fields, downsample=2, cache_dir=tmp_path / "cache")  # a later run
    again.preload()
    np.testing.assert_array_equal(again.get(3), ref.get(3))
    assert CountingCache.decodes == 5 and not list((tmp_path / "cache").rglob("*.tmp"))


def test_changed_source_or_settings_are_decoded_again(tmp_path, fields):
    cache_dir = tmp_path / "cache"
    MemmapFieldCache(fields, cache_dir=cache_dir).preload(workers=1)
    tifffile.imwrite(fields[1][0], np.full((36, 41), 65535, np.uint16))  # re-exported image
    fresh = MemmapFieldCache(fields, cache_dir=cache_dir)
    assert fresh.missing() == [1]
    assert float(fresh.get(1)[0].min()) == 1.0 and fresh.get(1).shape == (2, 36, 41)
    coarse = MemmapFieldCache(fields, downsample=3, cache_dir=cache_dir)
    assert coarse.missing() == list(range(5)) and coarse.get(0).shape == (2, 12, 13)


def test_worker_processes_read_the_maps(tmp_path, fields):
    cache = make_field_cache(fields, 1, str(tmp_path / "cache"))
    assert isinstance(cache, MemmapFieldCache) and isinstance(make_field_cache(fields), FieldCache)
    cache.preload()
    cache.get(0)
    assert len(pickle.dumps(cache)) < 20_000  # maps are reopened in workers, never pickled
    labels = np.zeros(5)
    ds_disk, ds_mem = FieldTileDataset(cache, labels, 16), FieldTileDataset(FieldCache(fields), labels, 16)
    loader = DataLoader(ds_disk, batch_size=7, num_workers=2, persistent_workers=False)
    disk = torch.cat([x for x, _, _ in loader])
    mem = torch.cat([x for x, _, _ in DataLoader(ds_mem, batch_size=7)])
    assert len(disk) == 5 * 9
    torch.testing.assert_close(disk, mem, rtol=0, atol=0)


def test_datamodule_cache_dir(tmp_path):
    split = make_tiny_split(tmp_path / "plate", size=32)
    cache_dir = tmp_path / "cache"
    dm = FibroDataModule(str(split), crop_size=16, batch_size=4, cache_dir=str(cache_dir), num_workers=0)
    dm.prepare_data()
    n_fields = sum(len(f) for f in dm.frames.values())
    assert len(list(cache_dir.rglob("*.npy"))) == n_fields
    assert all(isinstance(c, MemmapFieldCache) for c in dm.caches.values())
    plain = FibroDataModule(str(split), crop_size=16, batch_size=4)
    plain.setup("fit")
    assert dm.mean == pytest.approx(plain.mean, rel=1e-6) and dm.std == pytest.approx(plain.std, rel=1e-6)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 2, 16, 16) and x.dtype == torch.float32
