"""Field logits from a classifier: tiles of each field through the model, averaged per field, prepared
exactly as in training (`data`) and scoring (`data.illumination.FieldReader`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from fibroclass.data.datamodule import FibroDataModule
from fibroclass.data.datasets import FieldTileDataset
from fibroclass.data.fields import FieldCache, channel_paths
from fibroclass.data.illumination import corrections_for_model
from fibroclass.data.reader import FieldReader
from fibroclass.models.module import field_level


# -- predictions and calibration ----------------------------------------------------------------------
def _tile_logits(model: nn.Module, dataset: FieldTileDataset, batch_size: int = 256) -> np.ndarray:
    """Mean tile logit per field (field order of `dataset`), before any temperature."""
    if len(dataset) == 0:
        return np.zeros(0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.inference_mode():
            for x, y, f in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                parts.append((model(x.to(device)).float().cpu(), y, f))
    finally:
        model.train(was_training)
    logits, labels, fields = (torch.cat(t) for t in zip(*parts, strict=True))
    table = field_level(logits, labels, fields)
    return table.sort_values("field")["logit"].to_numpy(float)


def module_field_logits(classifier: nn.Module, dm: FibroDataModule, split: str) -> np.ndarray:
    """Field logits of a data module's `split` fields, read and tiled exactly as its test predictions."""
    return _tile_logits(classifier, dm.eval_dataset(split), dm.eval_batch_size)


def field_logits(
    model: nn.Module, frame: pd.DataFrame, context: pd.DataFrame | None = None, batch_size: int = 256
) -> np.ndarray:
    """Mean tile logit per field of `frame` for a logged model, prepared as in training and scoring.

    Fields go through `data.illumination.FieldReader` with the model's illumination settings; the
    per-plate estimates come from `context` (default: `frame`) - pass the split's control fields to
    reproduce training, or the whole plates to reproduce scoring.
    """
    spec = model.spec
    corrections = corrections_for_model(frame if context is None else context, spec)
    reader = FieldReader(frame, spec.channels, corrections)
    cache = FieldCache(channel_paths(frame, spec.channels), spec.downsample, reader)
    return _tile_logits(model, FieldTileDataset(cache, np.zeros(len(frame)), spec.crop_size), batch_size)
