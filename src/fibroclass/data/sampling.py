"""Samplers that make a DDP run over W processes train on exactly what one process would.

- `EpochSampler` (training): one global permutation per epoch (seed, epoch) shared by every rank, rank r
  taking every W-th position from r — so with a per-rank batch of B, the W ranks' step-k batches are
  together the step-k batch of size W·B of a single-process run with the same seed. Indices are
  yielded as `epoch · n + i` so that `EpochSeeded` can derive each sample's random crop and
  augmentation from (seed, epoch, i) alone, independent of rank, worker and process.
- `ShardSampler` (evaluation): rank r takes positions r, r+W, ... without the padding duplicates of
  `DistributedSampler`, so every tile is evaluated exactly once (metrics are then gathered).

Both subclass `DistributedSampler`, so Lightning keeps them instead of inserting its own and calls
`set_epoch` each epoch. Gradients averaged over ranks equal the full-batch gradient when per-rank
batches are equal (`drop_last`); BatchNorm then needs `trainer.sync_batchnorm: true` to see the full batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


class EpochSampler(DistributedSampler):
    """Shuffled training order shared by all ranks (see module docstring); yields `epoch · n + i`."""

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False
        )  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        for i in super().__iter__():
            yield self.epoch * n + int(i)


class ShardSampler(DistributedSampler):
    """In-order evaluation shard of rank r: positions r, r + W, ... (no padding, no shuffling)."""

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)  # type: ignore[arg-type]
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one (epoch, sample) of a run seeded with `seed`."""
    return int(
        np.random.SeedSequence([seed % 2**63, epoch, index]).generate_state(2, np.uint32).view(np.uint64)[0]
        >> 1
    )


class EpochSeeded(Dataset):
    """Wraps a dataset that draws its randomness from torch's RNG: item `epoch · n + i` is item `i`
    drawn with torch's RNG seeded from (seed, epoch, i), so it is the same in any process."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, j: int):  # noqa: ANN204 - the wrapped dataset's item
        epoch, i = divmod(int(j), len(self))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, i))
            return self.dataset[i]


__all__ = ["EpochSampler", "EpochSeeded", "ShardSampler", "sample_seed"]
