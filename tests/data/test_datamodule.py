"""FibroDataModule on a generated plate + real field index + donor split manifest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tinyplate import make_tiny_split

from fibroclass.data.datamodule import FibroDataModule, check_group_separation
from fibroclass.data.fields import FieldCache, channel_paths
from fibroclass.data.reader import FieldReader
from fibroclass.data.splits import read_split
from fibroclass.errors import FibroclassError
from fibroclass.io.index import read_index
from fibroclass.schema import DONOR, ROLE, SPLITS


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("plate")
    return make_tiny_split(root, size=40, donor_gain=0.5, seed=1)


def test_uses_only_manifest_donors_and_train_stats(split_dir):
    dm = FibroDataModule(str(split_dir), crop_size=16, batch_size=8)
    dm.setup("fit")
    manifest = read_split(split_dir)
    for s in SPLITS:
        assert set(dm.frames[s][DONOR]) == set(manifest.donors[s])
        assert set(dm.frames[s][ROLE]) == {"healthy", "disease"}
    # channel statistics come from the training donors only
    train = dm.caches["train"]  # fields as the model sees them (per-plate illumination correction)
    pixels = np.concatenate([train.get(i).reshape(2, -1) for i in range(len(train))], axis=1)
    np.testing.assert_allclose(dm.mean, pixels.mean(axis=1), rtol=1e-5)
    everyone = pd.concat(dm.frames.values())
    every = FieldCache(
        channel_paths(everyone, dm.channels), reader=FieldReader(everyone, dm.channels, dm.corrections)
    )
    all_pixels = np.concatenate([every.get(i).reshape(2, -1) for i in range(len(every))], axis=1)
    assert not np.allclose(dm.mean, all_pixels.mean(axis=1), rtol=1e-3)  # donors differ in gain
    kw = dm.model_spec_kwargs()
    assert kw["channels"] == ("actin", "nuclei") and kw["crop_size"] == 16 and kw["mean"] == dm.mean


def test_loaders_train_crops_and_eval_tiles(split_dir):
    dm = FibroDataModule(str(split_dir), crop_size=16, crops_per_field=2, batch_size=4, augment=False)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 2, 16, 16) and set(y.tolist()) <= {0.0, 1.0}
    tiles, labels, fields = next(iter(dm.test_dataloader()))
    assert tiles.shape[1:] == (2, 16, 16) and fields.dtype == torch.int64
    n_tiles = len(dm.eval_dataset("test"))
    assert n_tiles == len(dm.frames["test"]) * 9  # 40 px fields, 16 px tiles: 3 x 3
    assert dm.split_summary()["test"]["fields"] == len(dm.frames["test"])


def test_index_override_and_errors(split_dir, tmp_path):
    manifest = read_split(split_dir)
    index = read_index(manifest.index_path_abs)
    moved = tmp_path / "moved.parquet"
    index.to_parquet(moved)
    dm = FibroDataModule(str(split_dir), index=str(moved), crop_size=16)
    dm.setup()
    assert len(dm.frames["train"]) > 0

    changed = index[index[DONOR] != manifest.donors["train"][0]]
    changed.to_parquet(tmp_path / "changed.parquet")
    with pytest.raises(FibroclassError, match="differs"):
        FibroDataModule(str(split_dir), index=str(tmp_path / "changed.parquet")).setup()
    with pytest.raises(FibroclassError, match="does not exist"):
        FibroDataModule(str(tmp_path / "nosplit")).setup()
    with pytest.raises(FibroclassError, match="crop_size"):
        FibroDataModule(str(split_dir), crop_size=4)


def test_split_missing_a_class_is_refused(split_dir, tmp_path):
    data = json.loads((split_dir / "manifest.json").read_text())
    healthy_test = [d for d in data["donors"]["test"] if d.startswith("HD")]
    data["donors"]["test"] = [d for d in data["donors"]["test"] if d not in healthy_test]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(FibroclassError, match="test donors need both"):
        FibroDataModule(str(bad)).setup()


def test_group_separation_check():
    frames = {
        "train": pd.DataFrame({DONOR: ["a", "b"]}),
        "val": pd.DataFrame({DONOR: ["c"]}),
        "test": pd.DataFrame({DONOR: ["b"]}),
    }
    with pytest.raises(FibroclassError, match="donor b has fields in both train and test"):
        check_group_separation(frames, DONOR, "x")
    frames["test"] = pd.DataFrame({DONOR: ["d"]})
    check_group_separation(frames, DONOR, "x")


def test_hyperparameters_survive_weights_only_checkpoint_loading(split_dir, tmp_path):
    from fibroclass.data.transforms import AugmentConfig

    aug = AugmentConfig(affine_p=0.5, affine_scale=(0.8, 1.2))
    dm = FibroDataModule(str(split_dir), augmentation=aug)
    path = tmp_path / "hparams.pt"
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, path)
    loaded = torch.load(path, weights_only=True)["datamodule_hyper_parameters"]
    assert loaded["augmentation"]["affine_scale"] == (0.8, 1.2) and loaded["split"] == str(split_dir)
    assert dm.augmentation is aug  # the dataclass itself still drives the transform
