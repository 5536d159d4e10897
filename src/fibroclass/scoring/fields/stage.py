"""The field stage shared by the scoring engines: which rows to read, with which corrections, and the sink
that turns per-field results (in any order) into finished chunks in `OUT/parts/`.

`prepare_rows` lists the fields of the chunks to score, removes temp files of killed runs, estimates each
plate's illumination corrections (or takes them from the caller) and saves them next to the plate's
chunks. `ChunkSink.add` collects `FieldResult`s and writes each chunk as soon as its last field arrived.
`score_chunks_local` is the local engine: one overlapped DataLoader pass (`fields.inference`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from fibroclass.data.illumination import ILLUMINATION_FILE, PlateCorrections, corrections_for_model
from fibroclass.data.reader import FieldReader
from fibroclass.errors import FibroclassError
from fibroclass.models.spec import ModelSpec
from fibroclass.progress import progress_bar
from fibroclass.schema import FIELD_KEYS, PLATE
from fibroclass.scoring.fields.features import FieldFeature
from fibroclass.scoring.fields.inference import (
    FieldResult,
    Runner,
    field_paths,
    iter_field_results,
    results_frame,
)
from fibroclass.scoring.fields.parts import Chunk


def todo_plates(index: pd.DataFrame, chunks: Sequence[Chunk]) -> pd.DataFrame:
    """The index rows of every plate that has a chunk to score (what illumination is estimated from)."""
    plates = {c.plate for c in chunks}
    return index[index[PLATE].astype(str).isin(plates)]


def prepare_rows(
    index: pd.DataFrame,
    chunks: Sequence[Chunk],
    spec: ModelSpec,
    corrections: PlateCorrections | None = None,
) -> tuple[np.ndarray, FieldReader]:
    """The index positions of the fields of `chunks` (concatenated, chunk order) and their reader.

    Temp files of a killed run on these plates are removed; `corrections` (default: estimated here from
    each plate's own fields, as in training) are saved per plate next to its chunks.
    """
    for folder in {c.stem.parent for c in chunks}:  # temp files of a killed run on these plates
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    rows = np.concatenate([c.rows for c in chunks])
    if corrections is None:
        corrections = corrections_for_model(todo_plates(index, chunks), spec)
    for plate, folder in {c.plate: c.stem.parent for c in chunks}.items():  # the estimates applied, per plate
        corrections.save_plate(plate, folder / ILLUMINATION_FILE)
    return rows, FieldReader(index.iloc[rows], spec.channels, corrections)


class ChunkSink:
    """Collects field results (`r.i` = position among the fields of `chunks`, in any order) and writes
    each chunk to `OUT/parts/` once all of its fields are in."""

    def __init__(self, index: pd.DataFrame, chunks: Sequence[Chunk], spec: ModelSpec) -> None:
        self.chunks = list(chunks)
        self.spec = spec
        self.keys = index[list(FIELD_KEYS)]
        sizes = [len(c.rows) for c in self.chunks]
        self.owner = np.repeat(np.arange(len(self.chunks)), sizes)
        self.start = np.cumsum([0, *sizes])
        self.got: list[dict[int, FieldResult]] = [{} for _ in self.chunks]
        self.written = 0

    def __len__(self) -> int:
        return int(self.start[-1])

    def add(self, r: FieldResult) -> None:
        """Keep one field's result; a chunk is written when its last field arrives (a repeat replaces)."""
        k = int(self.owner[r.i])
        got = self.got[k]
        got[r.i - int(self.start[k])] = replace(r, i=r.i - int(self.start[k]))
        chunk = self.chunks[k]
        if len(got) == len(chunk.rows):
            table, emb = results_frame(
                self.keys.iloc[chunk.rows], list(got.values()), self.spec.temperature, self.spec.embedding_dim
            )
            chunk.write(table, emb)
            self.got[k] = {}
            self.written += 1

    def check_complete(self) -> None:
        """Every chunk written (an engine that lost fields is an internal error, not a silent gap)."""
        if self.written != len(self.chunks):
            missing = [
                c.stem.name for c, g in zip(self.chunks, self.got, strict=True) if g or not c.is_done()
            ]
            raise FibroclassError(
                f"internal: {len(missing)} chunk(s) not complete after scoring: {missing[:3]}"
            )


def score_chunks_local(
    index: pd.DataFrame,
    chunks: Sequence[Chunk],
    runner: Runner,
    batch_size: int,
    num_workers: int,
    features: Sequence[FieldFeature],
    progress: bool,
) -> None:
    """Score the fields of `chunks` in one overlapped DataLoader pass, writing each chunk when complete."""
    if not chunks:
        return
    spec = runner.model.spec
    rows, reader = prepare_rows(index, chunks, spec)
    sink = ChunkSink(index, chunks, spec)
    paths = field_paths(index.iloc[rows], spec.channels)
    with progress_bar(progress, "scoring fields") as bar:
        task = bar.add_task("fields", total=len(rows))
        for r in iter_field_results(paths, runner, batch_size, num_workers, features, reader):
            sink.add(r)
            bar.advance(task, 1)
    sink.check_complete()
