"""Field inference: read → downsample → tile → batched model → per-field disease score and embedding.

Tiles of several fields share a forward batch; a torch DataLoader (optionally with workers) reads and
tiles the next fields while the model computes. A field that cannot be read becomes a flagged row
(`qc_pass=False`, `qc_reason="unreadable: ..."`, NaN scores) instead of stopping the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset

from fibroclass.data.preprocess import downsample, tile_field
from fibroclass.errors import FibroclassError
from fibroclass.io.images import read_field
from fibroclass.models.spec import ModelSpec
from fibroclass.schema import DISEASE_SCORE, NUCLEI_COUNT, P_DISEASE, QC_PASS, QC_REASON, path_col


class TileModel(Protocol):
    """What scoring needs from a classifier (the interface of `FibroClassifier`)."""

    spec: ModelSpec

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...  # (N, C, H, W) in [0, 1] -> (N,) logits

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...  # (N, C, H, W) -> (N, D)


class FieldTiles(Dataset):
    """Map-style dataset: item i = (i, tiles (T, C, crop, crop) float32 tensor or None, error message)."""

    def __init__(self, paths: Sequence[Sequence[str]], factor: int, crop_size: int) -> None:
        self.paths = [list(p) for p in paths]
        self.factor = factor
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        paths = self.paths[i]
        missing = [p for p in paths if not isinstance(p, str) or not p]
        if missing:
            return i, None, "unreadable: a channel file is missing for this field"
        try:
            img = read_field(paths)
            tiles = tile_field(downsample(img, self.factor), self.crop_size)
        except FibroclassError as exc:
            return i, None, f"unreadable: {exc}"
        except Exception as exc:  # noqa: BLE001 - any bad file must become a flagged row, never a crash
            return i, None, f"unreadable: {type(exc).__name__}: {exc} ({paths})"
        return i, torch.from_numpy(np.ascontiguousarray(tiles)), ""


def _keep_item(item: tuple[int, torch.Tensor | None, str]) -> tuple[int, torch.Tensor | None, str]:
    """DataLoader collate for batch_size=None: hand each field through unchanged."""
    return item


def embed_and_logits(model: TileModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and logits of a batch with one backbone pass when the model is `head(embed(x))`.

    `FibroClassifier.forward` is exactly `head(embed(x))`, so its `head` is applied to the embedding
    instead of running the backbone twice; other models are called twice.
    """
    emb = model.embed(x)
    head = getattr(model, "head", None)
    if isinstance(head, torch.nn.Module):
        return emb, head(emb).squeeze(-1)
    return emb, model(x)


def resolve_device(device: str) -> torch.device:
    """`auto` → cuda when available, else cpu; an unavailable cuda request is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise FibroclassError(f"unknown device '{device}' (use auto, cpu or cuda)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FibroclassError(f"device '{device}' requested but CUDA is not available (use --device cpu)")
    return dev


def _field_paths(index: pd.DataFrame, channels: Sequence[str]) -> list[list[str]]:
    cols = [path_col(c) for c in channels]
    missing = [c for c in cols if c not in index.columns]
    if missing:
        raise FibroclassError(
            f"field index lacks column(s) {missing} for the model's channels {list(channels)}; "
            "map the file channel tokens to these names in the score config (discovery.channels)"
        )
    return [[p if isinstance(p, str) else "" for p in row] for row in index[cols].itertuples(index=False)]


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("scoring fields"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


def score_fields(
    index: pd.DataFrame,
    model: TileModel,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
    num_workers: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Score every field of `index` (one row per field, a `path_<channel>` column per model channel).

    Returns the index with `disease_score` (mean tile logit / temperature), `p_disease`,
    `nuclei_count` (NaN: filled by the nuclei module), `qc_pass` and `qc_reason` added, and a
    (n_fields, D) float32 array of mean tile embeddings in the same row order (NaN rows when unreadable).
    """
    if batch_size < 1:
        raise FibroclassError(f"batch size must be >= 1, got {batch_size}")
    spec: ModelSpec = model.spec
    fields = index.reset_index(drop=True).copy()
    n = len(fields)
    paths = _field_paths(fields, spec.channels)
    dev = resolve_device(device)
    module = model.to(dev) if isinstance(model, torch.nn.Module) else model
    if isinstance(module, torch.nn.Module):
        module.eval()

    logit_sum = np.zeros(n, dtype=np.float64)
    emb_sum: np.ndarray | None = None
    tiles_left = np.zeros(n, dtype=np.int64)
    reasons = [""] * n

    loader = DataLoader(
        FieldTiles(paths, spec.downsample, spec.crop_size),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_keep_item,
    )
    buf: list[torch.Tensor] = []
    owners: list[np.ndarray] = []
    buffered = 0

    def run_batch(take: int, bar: Progress, task: int) -> None:
        nonlocal buf, owners, buffered, emb_sum
        x_all = torch.cat(buf) if len(buf) > 1 else buf[0]
        own_all = np.concatenate(owners)
        x, own = x_all[:take], own_all[:take]
        buf, owners = ([x_all[take:]], [own_all[take:]]) if take < len(own_all) else ([], [])
        buffered -= take
        with torch.inference_mode():
            emb_t, logit_t = embed_and_logits(module, x.to(dev))
            emb = emb_t.float().reshape(take, -1).cpu().numpy()
            logits = logit_t.float().reshape(take).cpu().numpy()
        if emb_sum is None:
            emb_sum = np.zeros((n, emb.shape[1]), dtype=np.float64)
        np.add.at(logit_sum, own, logits)
        np.add.at(emb_sum, own, emb)
        np.subtract.at(tiles_left, own, 1)
        touched = np.unique(own)
        bar.advance(task, int((tiles_left[touched] == 0).sum()))  # fields whose last tile was in this batch

    n_tiles = np.zeros(n, dtype=np.int64)
    with _progress(progress) as bar:
        task = bar.add_task("fields", total=n)
        for i, tiles, reason in loader:
            if tiles is None:
                reasons[i] = reason
                bar.advance(task, 1)
                continue
            n_tiles[i] = tiles_left[i] = len(tiles)
            buf.append(tiles)
            owners.append(np.full(len(tiles), i, dtype=np.int64))
            buffered += len(tiles)
            while buffered >= batch_size:
                run_batch(batch_size, bar, task)
        if buffered:
            run_batch(buffered, bar, task)

    ok = n_tiles > 0
    score = np.full(n, np.nan)
    score[ok] = logit_sum[ok] / n_tiles[ok] / float(spec.temperature)
    dim = emb_sum.shape[1] if emb_sum is not None else int(spec.embedding_dim)
    embeddings = np.full((n, dim), np.nan, dtype=np.float32)
    if emb_sum is not None:
        embeddings[ok] = (emb_sum[ok] / n_tiles[ok, None]).astype(np.float32)

    fields[DISEASE_SCORE] = score
    fields[P_DISEASE] = 1.0 / (1.0 + np.exp(-score))
    fields[NUCLEI_COUNT] = np.nan
    fields[QC_PASS] = ok
    fields[QC_REASON] = reasons
    return fields, embeddings
