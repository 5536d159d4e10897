"""What the pipeline needs from a field-stage engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pandas as pd

from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.fields.features import FieldFeature
from fibroclass.scoring.fields.inference import TileModel
from fibroclass.scoring.fields.parts import Chunk


class FieldEngine(Protocol):
    """Scores the fields of chunks into `OUT/parts/` (decode, per-field features, model); nothing else."""

    name: str

    def precision(self, model: TileModel, cfg: ScoreConfig) -> str:
        """The autocast precision the model will run at (`fp32`/`bf16`; part of the chunk fingerprint)."""
        ...

    def score_chunks(
        self,
        index: pd.DataFrame,
        chunks: Sequence[Chunk],
        model: TileModel,
        cfg: ScoreConfig,
        features: Sequence[FieldFeature],
        progress: bool,
    ) -> None:
        """Score every field of `chunks` and write each chunk when complete (any order, resumable)."""
        ...

    def close(self) -> None:
        """Release what the engine started (a local Ray cluster); idempotent."""
        ...
