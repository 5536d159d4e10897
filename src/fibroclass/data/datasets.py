"""Torch datasets over cached fields: random training crops and exhaustive evaluation tiles."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from fibroclass.data.fields import FieldCache
from fibroclass.data.preprocess import tile_field, tile_starts

# (C, H, W) float32 crop, per-sample seed -> augmented (C, H, W) float32 crop
Augment = Callable[[np.ndarray, int], np.ndarray]


def _pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad a (C, H, W) field smaller than `size` (same padding as `tile_field`)."""
    c, h, w = img.shape
    if h >= size and w >= size:
        return img
    mode = "reflect" if min(h, w) > 1 else "edge"
    return np.pad(img, ((0, 0), (0, max(0, size - h)), (0, max(0, size - w))), mode=mode)


class FieldCropDataset(Dataset):
    """Training samples: `crops_per_field` random `crop_size` crops of every field per epoch.

    Item `i` is a crop of field `i // crops_per_field`; its position and augmentation come from a
    seed drawn from torch's RNG, so runs are reproducible under `seed_everything(workers=True)` and
    differ between epochs and DataLoader workers. Returns (crop (C, S, S) float32, label float32).
    """

    def __init__(
        self,
        fields: FieldCache,
        labels: np.ndarray,
        crop_size: int,
        crops_per_field: int = 8,
        augment: Augment | None = None,
    ) -> None:
        if len(labels) != len(fields):
            raise ValueError(f"{len(labels)} labels for {len(fields)} fields")
        self.fields = fields
        self.labels = np.asarray(labels, dtype=np.float32)
        self.crop_size = int(crop_size)
        self.crops_per_field = int(crops_per_field)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.fields) * self.crops_per_field

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        field = i // self.crops_per_field
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        rng = np.random.default_rng(seed)
        img = _pad_to(self.fields.get(field), self.crop_size)
        _, h, w = img.shape
        y = int(rng.integers(0, h - self.crop_size + 1))
        x = int(rng.integers(0, w - self.crop_size + 1))
        crop = img[:, y : y + self.crop_size, x : x + self.crop_size]
        if self.augment is not None:
            crop = self.augment(crop, seed)
        return torch.from_numpy(np.ascontiguousarray(crop)), torch.tensor(self.labels[field])


class FieldTileDataset(Dataset):
    """Evaluation samples: every tile of every field (as `tile_field` cuts them for scoring).

    Returns (tile (C, S, S) float32, label float32, field row number int64); the row number lets
    predictions be averaged per field.
    """

    def __init__(self, fields: FieldCache, labels: np.ndarray, tile_size: int) -> None:
        if len(labels) != len(fields):
            raise ValueError(f"{len(labels)} labels for {len(fields)} fields")
        self.fields = fields
        self.labels = np.asarray(labels, dtype=np.float32)
        self.tile_size = int(tile_size)
        self._items: list[tuple[int, int]] | None = None  # (field, tile) pairs, built lazily
        self._last: tuple[int, np.ndarray] | None = None  # tiles of the last field (items are in order)

    def _tiles_per_field(self, i: int) -> int:
        _, h, w = self.fields.get(i).shape
        s = self.tile_size
        return len(tile_starts(max(h, s), s)) * len(tile_starts(max(w, s), s))

    @property
    def items(self) -> list[tuple[int, int]]:
        if self._items is None:
            self._items = [(f, t) for f in range(len(self.fields)) for t in range(self._tiles_per_field(f))]
        return self._items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        field, tile = self.items[i]
        if self._last is None or self._last[0] != field:
            self._last = (field, tile_field(self.fields.get(field), self.tile_size))
        tiles = self._last[1]
        return (
            torch.from_numpy(np.ascontiguousarray(tiles[tile])),
            torch.tensor(self.labels[field]),
            torch.tensor(field, dtype=torch.int64),
        )
