"""Field cache, training crops, evaluation tiles and augmentation on real TIFFs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from fibroclass.data.datasets import FieldCropDataset, FieldTileDataset
from fibroclass.data.fields import FieldCache, channel_paths, field_labels
from fibroclass.data.preprocess import tile_field
from fibroclass.data.stats import channel_stats
from fibroclass.data.transforms import AugmentConfig, apply_transform, build_train_transform
from fibroclass.errors import FibroclassError
from fibroclass.io.images import read_field
from fibroclass.measure.resample import downsample
from fibroclass.schema import PLATE, ROLE, SITE, WELL


def _write_fields(tmp_path, shapes, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(shapes):
        row = []
        for ch in range(2):
            p = tmp_path / f"f{i}_c{ch}.tif"
            tifffile.imwrite(p, rng.integers(0, 65535, (h, w), dtype=np.uint16))
            row.append(str(p))
        paths.append(row)
    return paths


def test_field_cache_reads_downsamples_and_caches(tmp_path):
    paths = _write_fields(tmp_path, [(40, 36), (20, 30)])
    cache = FieldCache(paths, downsample=2)
    img = cache.get(0)
    assert img.shape == (2, 20, 18) and img.dtype == np.float32
    np.testing.assert_allclose(img, downsample(read_field(paths[0]), 2), rtol=1e-6)
    assert cache.get(0) is img  # decoded once
    with pytest.raises(FibroclassError, match="downsample"):
        FieldCache(paths, downsample=0)


def test_labels_from_roles_and_bad_role_names_the_well():
    frame = pd.DataFrame(
        {
            PLATE: ["P"] * 3,
            WELL: ["A01", "A02", "A03"],
            SITE: [1, 1, 1],
            ROLE: ["healthy", "disease", "healthy"],
        }
    )
    assert field_labels(frame).tolist() == [0, 1, 0]
    frame.loc[2, ROLE] = "treatment"
    with pytest.raises(FibroclassError, match="A03.*treatment"):
        field_labels(frame)
    with pytest.raises(FibroclassError, match="path_actin"):
        channel_paths(frame, ("actin",))


def test_crop_dataset_shapes_labels_and_seeded_randomness(tmp_path):
    paths = _write_fields(tmp_path, [(50, 60), (24, 20)])  # the second is smaller than a crop: padded
    ds = FieldCropDataset(FieldCache(paths), np.array([0, 1]), crop_size=32, crops_per_field=3)
    assert len(ds) == 6
    torch.manual_seed(0)
    first = [ds[i] for i in range(6)]
    assert all(x.shape == (2, 32, 32) and x.dtype == torch.float32 for x, _ in first)
    assert [float(y) for _, y in first] == [0, 0, 0, 1, 1, 1]
    torch.manual_seed(0)
    again = [ds[i][0] for i in range(6)]
    assert all(torch.equal(a, b[0]) for a, b in zip(again, first, strict=True))
    assert not torch.equal(first[0][0], first[1][0])  # different crops of the same field
    # an unaugmented crop is a window of the field
    field = FieldCache(paths).get(0)
    crop = first[0][0].numpy()
    hits = [
        (y, x)
        for y in range(50 - 31)
        for x in range(60 - 31)
        if np.array_equal(field[:, y : y + 32, x : x + 32], crop)
    ]
    assert hits


def test_tile_dataset_matches_scoring_tiles(tmp_path):
    paths = _write_fields(tmp_path, [(40, 70), (16, 16)])
    cache = FieldCache(paths)
    ds = FieldTileDataset(cache, np.array([1, 0]), tile_size=32)
    expected = [tile_field(cache.get(0), 32), tile_field(cache.get(1), 32)]
    assert len(ds) == len(expected[0]) + len(expected[1]) == 6 + 1
    items = [ds[i] for i in range(len(ds))]
    assert [int(f) for _, _, f in items] == [0] * 6 + [1]
    assert [float(y) for _, y, _ in items] == [1.0] * 6 + [0.0]
    for i, (tile, _, f) in enumerate(items):
        j = i if int(f) == 0 else 0
        np.testing.assert_array_equal(tile.numpy(), expected[int(f)][j])


def test_augmentation_keeps_shape_range_and_is_seeded():
    t = build_train_transform(
        AugmentConfig(flip_p=1, rotate90_p=1, affine_p=1, brightness_contrast_p=1, blur_p=1, noise_p=1)
    )
    x = np.random.default_rng(0).random((2, 32, 32), dtype=np.float32) * 0.05
    a, b, c = apply_transform(t, x, 1), apply_transform(t, x, 1), apply_transform(t, x, 2)
    assert a.shape == x.shape and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # brightness/contrast are relative to the signal: a dim field (12-bit data in uint16) stays dim
    cfg = AugmentConfig(flip_p=0, rotate90_p=0, affine_p=0, brightness_contrast_p=1, blur_p=0, noise_p=0)
    bc = build_train_transform(cfg)
    ratios = [apply_transform(bc, x, s).mean() / x.mean() for s in range(30)]
    low, high = 1 - cfg.brightness_limit - cfg.contrast_limit, 1 + cfg.brightness_limit + cfg.contrast_limit
    assert low - 1e-3 <= min(ratios) and max(ratios) <= high + 1e-3
    assert max(ratios) - min(ratios) > 0.1  # but it does vary


def test_channel_stats_match_numpy(tmp_path):
    paths = _write_fields(tmp_path, [(20, 20), (30, 10), (10, 10)])
    cache = FieldCache(paths)
    mean, std = channel_stats(cache, max_fields=10)
    pixels = np.concatenate([cache.get(i).reshape(2, -1) for i in range(3)], axis=1)
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(std, pixels.std(axis=1), rtol=1e-4)
    sub_a, sub_b = channel_stats(cache, max_fields=2, seed=3), channel_stats(cache, max_fields=2, seed=3)
    assert sub_a == sub_b
