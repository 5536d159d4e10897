"""LightningDataModule over a committed donor split: random crops to train, every tile to evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from fibroclass.data.cache import make_field_cache
from fibroclass.data.datasets import FieldCropDataset, FieldTileDataset
from fibroclass.data.fields import FieldCache, channel_paths, field_labels
from fibroclass.data.illumination import DISABLED, IlluminationSettings, PlateCorrections, training_pixel_size
from fibroclass.data.reader import FieldReader
from fibroclass.data.sampling import EpochSampler, EpochSeeded, ShardSampler
from fibroclass.data.stats import channel_stats
from fibroclass.data.transforms import AugmentConfig, apply_transform, build_train_transform
from fibroclass.errors import FibroclassError
from fibroclass.schema import CHANNELS, DONOR, ROLE, ROLE_TO_LABEL, SPLIT, SPLITS


class Augmenter:
    """Picklable (crop, seed) -> augmented crop callable for DataLoader workers."""

    def __init__(self, cfg: AugmentConfig | None = None) -> None:
        self.transform = build_train_transform(cfg)

    def __call__(self, crop: np.ndarray, seed: int) -> np.ndarray:
        return apply_transform(self.transform, crop, seed)


def check_group_separation(frames: dict[str, pd.DataFrame], column: str, split_dir: str | Path) -> None:
    """Raise if a `column` value (donor) has fields in two of train/val/test: the test set must be held out."""
    groups = {s: set(f[column].dropna().astype(str)) for s, f in frames.items()}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = sorted(groups.get(a, set()) & groups.get(b, set()))
            if shared:
                raise FibroclassError(
                    f"split {split_dir}: {column} {shared[0]} has fields in both {a} and {b}"
                )


class FibroDataModule(L.LightningDataModule):
    """Healthy (label 0) vs disease (label 1) control fields of the donors named by a split manifest.

    Args:
        split: split manifest folder (e.g. `data/splits/demo`), read with `fibroclass.data.splits.read_split`.
        index: field index parquet; default: the index the manifest was made from.
        channels: model input channels, each a `path_<channel>` column of the index.
        crop_size: network input size in pixels after downsampling (training crops and eval tiles).
        downsample: integer block-mean factor applied to fields before cropping/tiling.
        crops_per_field: random training crops per field per epoch.
        batch_size: training batch size; `eval_batch_size` (default: same) for validation/test tiles.
        num_workers: DataLoader worker processes.
        augment: apply the training augmentation (`augmentation` sets its ranges); never at eval.
        stats_max_fields: training fields sampled for the per-channel mean/std.
        seed: seed of the statistics' field sample.
        cache_dir: decode each field once into memory-mapped `.npy` files there (`data.cache`), shared
            by DataLoader workers, DDP ranks and later runs; default: decode into each process's memory.
        illumination: per-plate flat-field + intensity normalization (`data.illumination`), estimated from
            each plate's fields and stored in the model spec so scoring applies the same correction.
    """

    def __init__(
        self,
        split: str,
        index: str | None = None,
        channels: tuple[str, ...] = CHANNELS,
        crop_size: int = 64,
        downsample: int = 1,
        crops_per_field: int = 8,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: bool = True,
        augmentation: AugmentConfig | None = None,
        stats_max_fields: int = 64,
        seed: int = 0,
        cache_dir: str | None = None,
        illumination: bool = True,
    ) -> None:
        super().__init__()
        if crop_size < 8 or downsample < 1 or crops_per_field < 1 or batch_size < 1:
            raise FibroclassError(
                f"data settings out of range: crop_size={crop_size} (>= 8), downsample={downsample} (>= 1), "
                f"crops_per_field={crops_per_field} (>= 1), batch_size={batch_size} (>= 1)"
            )
        # checkpoints are loaded with weights_only=True: keep hyperparameters plain (no dataclass)
        self.save_hyperparameters(ignore=["augmentation"])
        self.hparams["augmentation"] = asdict(augmentation) if augmentation is not None else None
        self.split_dir = Path(split)
        self.index_path = index
        self.channels = tuple(channels)
        self.crop_size = int(crop_size)
        self.downsample = int(downsample)
        self.crops_per_field = int(crops_per_field)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.augment = augment
        self.augmentation = augmentation
        self.stats_max_fields = int(stats_max_fields)
        self.seed = int(seed)
        self.cache_dir = cache_dir
        self.illumination = IlluminationSettings() if illumination else DISABLED
        self.corrections: PlateCorrections | None = None  # per-plate estimates, set in setup()
        self._manifest: Any = None
        self.frames: dict[str, pd.DataFrame] = {}
        self.caches: dict[str, FieldCache] = {}
        self.mean: list[float] | None = None
        self.std: list[float] | None = None

    # -- split and index -------------------------------------------------------------------------
    @property
    def manifest(self) -> Any:
        """The split manifest (`SplitManifest`: `.donors`, `.index_path`, `.assign(index)`)."""
        if self._manifest is None:
            from fibroclass.data.splits import read_split

            self._manifest = read_split(self.split_dir)
        return self._manifest

    def resolve_index_path(self) -> Path:
        """`index` if given, else the manifest's index (absolute path, else relative to cwd or the split)."""
        if self.index_path:
            return Path(self.index_path)
        m = self.manifest
        candidates = [Path(p) for p in (getattr(m, "index_path_abs", None), m.index_path) if p]
        candidates.append(self.split_dir / m.index_path)
        for path in candidates:
            if path.is_file():
                return path
        raise FibroclassError(
            f"field index {m.index_path} of split {self.split_dir} not found; pass --data.index PATH"
        )

    def _read_frames(self) -> dict[str, pd.DataFrame]:
        from fibroclass.io.index import read_index

        index_path = self.resolve_index_path()
        index = read_index(index_path)
        group_col = str(getattr(self.manifest, "by", DONOR))
        for col in (ROLE, DONOR, group_col):
            if col not in index.columns:
                raise FibroclassError(f"field index {index_path} has no column '{col}'")
        assigned = pd.Series(self.manifest.assign(index), index=index.index)
        index = index.assign(**{SPLIT: assigned})
        index = index[index[ROLE].isin(list(ROLE_TO_LABEL)) & index[SPLIT].isin(SPLITS)]
        allowed = {s: {str(d) for d in self.manifest.donors.get(s, [])} for s in SPLITS}
        groups = index[group_col].astype(str).str.strip()
        frames = {
            s: index[(index[SPLIT] == s) & groups.isin(allowed[s])].reset_index(drop=True) for s in SPLITS
        }
        check_group_separation(frames, group_col, self.split_dir)
        if group_col != DONOR:
            check_group_separation(frames, DONOR, self.split_dir)
        for s in SPLITS:
            labels = set(frames[s][ROLE])
            if labels != set(ROLE_TO_LABEL):
                have = sorted(labels) or "no fields"
                raise FibroclassError(
                    f"split {self.split_dir}: the {s} donors need both healthy and disease control fields "
                    f"in {index_path}, found {have}"
                )
        return frames

    # -- Lightning hooks ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read the split, build per-split field caches and the training-split channel statistics."""
        if self.frames:
            return
        self.frames = self._read_frames()
        every = pd.concat(self.frames.values(), ignore_index=True)
        self.corrections = PlateCorrections.estimate(
            every, self.channels, self.illumination, training_pixel_size(every)
        )
        self.caches = {
            s: make_field_cache(
                channel_paths(f, self.channels),
                self.downsample,
                self.cache_dir,
                FieldReader(f, self.channels, self.corrections),
            )
            for s, f in self.frames.items()
        }
        self.mean, self.std = channel_stats(self.caches["train"], self.stats_max_fields, self.seed)

    def prepare_data(self) -> None:
        """With `cache_dir`: decode every field of every split into the on-disk cache (once per node)."""
        if self.cache_dir:
            self.setup()
            for cache in self.caches.values():
                cache.preload()

    def model_spec_kwargs(self) -> dict[str, Any]:
        """What the classifier's `ModelSpec` takes from the data: channels, sizes, training-split stats."""
        self.setup()
        return {
            "channels": self.channels,
            "crop_size": self.crop_size,
            "downsample": self.downsample,
            "mean": list(self.mean or []),
            "std": list(self.std or []),
            "pixel_size_um": self.corrections.target_pixel_size_um if self.corrections else None,
            "extra": {"illumination": self.illumination.to_dict()},
        }

    def _labels(self, split: str) -> np.ndarray:
        return field_labels(self.frames[split])

    def _world(self) -> tuple[int, int]:
        """(world size, global rank) of the attached Trainer; (1, 0) without one."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader(self, dataset: torch.utils.data.Dataset, batch_size: int, train: bool) -> DataLoader:
        """Train: `EpochSampler` over `EpochSeeded` crops (a DDP run sees what one process would);
        eval: `ShardSampler` (each tile once). See `data.sampling`."""
        world, rank = self._world()
        if train:
            dataset = EpochSeeded(dataset, torch.initial_seed())
            sampler = EpochSampler(dataset, world, rank, seed=torch.initial_seed() % 2**31)
        else:
            sampler = ShardSampler(dataset, world, rank)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=train and len(dataset) > batch_size * world,  # no size-1 BatchNorm batches
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        ds = FieldCropDataset(
            self.caches["train"],
            self._labels("train"),
            self.crop_size,
            self.crops_per_field,
            Augmenter(self.augmentation) if self.augment else None,
        )
        return self._loader(ds, self.batch_size, train=True)

    def eval_dataset(self, split: str) -> FieldTileDataset:
        """Every tile of every field of `split` ('val' or 'test'), with field row numbers."""
        return FieldTileDataset(self.caches[split], self._labels(split), self.crop_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset("val"), self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset("test"), self.eval_batch_size, train=False)

    def split_summary(self) -> dict[str, dict[str, int]]:
        """Fields and donors per split and label, for logs and reports."""
        self.setup()
        out = {}
        for s, f in self.frames.items():
            out[s] = {"fields": len(f), "donors": int(f[DONOR].nunique())}
            for role in ROLE_TO_LABEL:
                out[s][f"{role}_fields"] = int((f[ROLE] == role).sum())
        return out


def donors_of(frames: dict[str, pd.DataFrame]) -> dict[str, Sequence[str]]:
    """Donor ids per split (sorted), as used for training."""
    return {s: sorted(f[DONOR].astype(str).unique()) for s, f in frames.items()}
