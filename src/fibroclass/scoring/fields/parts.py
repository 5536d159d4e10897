"""Per-plate chunks of field results in `<out>/parts/`: planning, fingerprints, atomic writes, resume.

Each plate's fields (in index order) are cut into chunks of `chunk_fields`. A chunk is stored as
`parts/<plate>/chunk-NNNNN.parquet` (field keys + result/feature columns), `.npy` (mean embeddings) and,
written last, `.json` holding the chunk's fingerprint: a hash of the model weights and spec, the
field-stage settings (features, precision), the fields' keys and channel locators, and the size and
modification time of every source file. A chunk is done when its `.json` matches the fingerprint the
current run computes, so an interrupted run (even `kill -9`) resumes at the first missing chunk, a
changed image, model or setting rescores exactly the chunks it affects, and a finished run reuses all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fibroclass import __version__
from fibroclass.errors import FibroclassError
from fibroclass.io.images import parse_locator, split_projection
from fibroclass.schema import BIT_DEPTH, FIELD_KEYS, PIXEL_SIZE, PLATE, path_col
from fibroclass.scoring.outputs import atomic_write

PARTS_DIR = "parts"
PARTS_FORMAT = 1


def sha_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def model_fingerprint(model: Any) -> str:
    """Hash of the model's class, spec and every parameter/buffer (name, dtype, shape and bytes)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "to_dict"):
        h.update(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode())
    if isinstance(model, torch.nn.Module):
        for name, tensor in model.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    else:
        h.update(repr(model).encode())
    return h.hexdigest()


def source_files(locator: str) -> list[str]:
    """The files (or array folders) a channel locator reads (`a.tif#page=1`, `A|B` projections)."""
    if not isinstance(locator, str) or not locator:
        return []
    return [parse_locator(part).source for part in split_projection(locator)]


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def fields_fingerprint(rows: pd.DataFrame, channels: Sequence[str]) -> str:
    """Hash of field keys, channel locators, acquisition metadata and source file size + mtime."""
    cols = [*FIELD_KEYS, *(path_col(c) for c in channels)]
    cols += [c for c in (BIT_DEPTH, PIXEL_SIZE) if c in rows.columns]
    payload = []
    for rec in rows[cols].itertuples(index=False):
        stats = [
            [_stat(src) for src in source_files(loc)]
            for loc in rec[len(FIELD_KEYS) : len(FIELD_KEYS) + len(channels)]
        ]
        payload.append([*map(str, rec), stats])
    return sha_of(payload)


def plate_slug(plate: str) -> str:
    """A file-system-safe folder name for a plate (sanitized name + short hash, so names never collide)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(plate)).strip("._")[:60] or "plate"
    return f"{safe}-{hashlib.sha1(str(plate).encode()).hexdigest()[:8]}"


@dataclass
class Chunk:
    """Consecutive fields of one plate scored and stored together."""

    plate: str
    number: int
    rows: np.ndarray  # positions in the (reset) field index
    fingerprint: str
    stem: Path  # parts/<plate>/chunk-NNNNN (suffixes .parquet, .npy, .json)
    accepted: tuple[str, ...] = ()  # other fingerprints that also count as done (a merge: any precision)

    @property
    def files(self) -> tuple[Path, Path, Path]:
        return tuple(self.stem.with_suffix(s) for s in (".parquet", ".npy", ".json"))  # type: ignore[return-value]

    def is_done(self) -> bool:
        """True when the stored chunk was written for exactly this fingerprint (or an `accepted` one,
        which then becomes the chunk's fingerprint)."""
        table, emb, stamp = self.files
        if not (stamp.is_file() and table.is_file() and emb.is_file()):
            return False
        try:
            stored = json.loads(stamp.read_text()).get("fingerprint")
        except (OSError, ValueError):
            return False
        if stored in self.accepted:
            self.fingerprint = stored
        return stored == self.fingerprint

    def write(self, table: pd.DataFrame, embeddings: np.ndarray) -> None:
        """Store the chunk atomically: table, embeddings, then the stamp that marks it done."""
        table_path, emb_path, stamp = self.files

        def save_npy(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(embeddings, dtype=np.float32))

        stamp.unlink(missing_ok=True)  # never a stamp next to half-replaced data
        atomic_write(table_path, lambda tmp: table.to_parquet(tmp, index=False))
        atomic_write(emb_path, save_npy)
        info = {"fingerprint": self.fingerprint, "plate": self.plate, "chunk": self.number, "n": len(table)}
        atomic_write(stamp, lambda tmp: tmp.write_text(json.dumps(info)))

    def read(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The stored table and embeddings (checked against the chunk's field count)."""
        table_path, emb_path, _ = self.files
        table, emb = pd.read_parquet(table_path), np.load(emb_path)
        if len(table) != len(self.rows) or len(emb) != len(self.rows):
            raise FibroclassError(f"part {table_path} holds {len(table)} fields, expected {len(self.rows)}")
        return table, emb


def plan_chunks(
    index: pd.DataFrame,
    parts_dir: Path,
    channels: Sequence[str],
    stage_fingerprint: str,
    chunk_fields: int,
    plate_scope: bool = False,
    plates: Sequence[str] | None = None,
    accepted_stages: Sequence[str] = (),
) -> list[Chunk]:
    """Cut each plate's fields (index order) into chunks and fingerprint each; plates in index order.

    `plate_scope`: field results depend on the whole plate (e.g. illumination estimated from the plate's
    fields and control wells), so every chunk's fingerprint covers all of its plate's rows and files.
    `plates`: only these plates (rows stay positions in `index`). `accepted_stages`: other stage
    fingerprints whose chunks count as done too (`Chunk.accepted`).
    """
    if chunk_fields < 1:
        raise FibroclassError(f"chunk size must be >= 1 field, got {chunk_fields}")
    chunks: list[Chunk] = []
    wanted = None if plates is None else {str(p) for p in plates}
    names = index[PLATE].astype(str)
    for plate, rows in names.groupby(names, sort=False).indices.items():
        if wanted is not None and plate not in wanted:
            continue
        folder = parts_dir / plate_slug(plate)
        plate_fp = ""
        if plate_scope:
            whole = index.iloc[rows]
            plate_fp = sha_of([fields_fingerprint(whole, channels), whole.to_csv(index=False)])
        for number, start in enumerate(range(0, len(rows), chunk_fields)):
            sel = np.asarray(rows[start : start + chunk_fields])
            fields_fp = fields_fingerprint(index.iloc[sel], channels)
            fp, *also = (
                sha_of([PARTS_FORMAT, __version__, stage, plate_fp, fields_fp])
                for stage in (stage_fingerprint, *accepted_stages)
            )
            chunks.append(Chunk(str(plate), number, sel, fp, folder / f"chunk-{number:05d}", tuple(also)))
    return chunks


__all__ = [
    "Chunk",
    "PARTS_DIR",
    "fields_fingerprint",
    "model_fingerprint",
    "plan_chunks",
    "plate_slug",
    "source_files",
]
