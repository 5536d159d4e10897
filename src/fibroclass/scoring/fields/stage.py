"""The field stage of scoring: decode in reader workers, run the field features and the model, and write
each plate chunk to OUT/parts/ as soon as its fields are all scored (resumable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from fibroclass.data.illumination import ILLUMINATION_FILE, FieldReader, corrections_for_model
from fibroclass.progress import progress_bar
from fibroclass.schema import FIELD_KEYS, PLATE
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.fields.features import FieldFeature
from fibroclass.scoring.fields.inference import (
    FieldResult,
    Runner,
    field_paths,
    iter_field_results,
    results_frame,
)
from fibroclass.scoring.fields.parts import Chunk


# -- field stage -----------------------------------------------------------------------------------------
def _score_chunks(
    index: pd.DataFrame,
    chunks: Sequence[Chunk],
    runner: Runner,
    cfg: ScoreConfig,
    features: Sequence[FieldFeature],
    progress: bool,
) -> None:
    """Score the fields of `chunks` in one overlapped DataLoader pass, writing each chunk when complete."""
    if not chunks:
        return
    spec = runner.model.spec
    for folder in {c.stem.parent for c in chunks}:  # temp files of a killed run on these plates
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    rows = np.concatenate([c.rows for c in chunks])
    owner = np.repeat(np.arange(len(chunks)), [len(c.rows) for c in chunks])
    start = np.cumsum([0] + [len(c.rows) for c in chunks])
    got: list[list[FieldResult]] = [[] for _ in chunks]
    keys = index[list(FIELD_KEYS)]
    paths = field_paths(index.iloc[rows], spec.channels)
    # illumination/pixel-size correction as in training, estimated from each plate's own fields
    plate_dirs = {c.plate: c.stem.parent for c in chunks}
    corrections = corrections_for_model(index[index[PLATE].astype(str).isin(plate_dirs)], spec)
    for plate, folder in plate_dirs.items():  # the estimates this run applied, kept per plate
        corrections.save_plate(plate, folder / ILLUMINATION_FILE)
    reader = FieldReader(index.iloc[rows], spec.channels, corrections)
    with progress_bar(progress, "scoring fields") as bar:
        task = bar.add_task("fields", total=len(rows))
        for r in iter_field_results(paths, runner, cfg.batch_size, cfg.num_workers, features, reader):
            k = int(owner[r.i])
            got[k].append(replace(r, i=r.i - int(start[k])))
            bar.advance(task, 1)
            if len(got[k]) == len(chunks[k].rows):
                chunk = chunks[k]
                table, emb = results_frame(
                    keys.iloc[chunk.rows], got[k], spec.temperature, spec.embedding_dim
                )
                chunk.write(table, emb)
                got[k] = []
