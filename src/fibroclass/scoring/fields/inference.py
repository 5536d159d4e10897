"""Field inference: read → features → downsample → tile → batched model → per-field score and embedding.

Data path (built so that reading the files is the bottleneck, not Python):
- a torch DataLoader with `num_workers` processes decodes fields (and computes the per-field features of
  `scoring.fields.features` on the decoded pixels) while the model runs; items arrive in field order;
- tiles of consecutive fields share forward batches; on CUDA the tiles are pinned, copied
  asynchronously, `channels_last`, under bf16 autocast (`precision="auto"`), optionally `torch.compile`d,
  and the results of batch k are copied back only after batch k+1 was launched;
- `iter_field_results` yields each field as soon as its last tile is scored, so callers can stream
  results to disk (`scoring.pipeline` writes per-plate chunks); `score_fields` collects them in memory.

A field that cannot be read becomes a flagged row (`qc_pass=False`, `qc_reason="unreadable: ..."`,
NaN scores) instead of stopping the run; so does a field with NaN/inf pixels (`"nonfinite: ..."`), which is
never fed to the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from fibroclass.data.illumination import corrections_for_model
from fibroclass.data.preprocess import tile_field
from fibroclass.data.reader import FieldReader
from fibroclass.errors import FibroclassError
from fibroclass.io.images import OversizeError, read_field
from fibroclass.measure.resample import downsample
from fibroclass.models.spec import ModelSpec
from fibroclass.progress import progress_bar
from fibroclass.schema import (
    BIT_DEPTH,
    DISEASE_SCORE,
    NUCLEI_COUNT,
    P_DISEASE,
    PIXEL_SIZE,
    QC_PASS,
    QC_REASON,
    path_col,
)
from fibroclass.scoring.fields.features import FEATURE_ERROR, FIELD_FEATURES, FieldFeature, compute_features

PRECISIONS = ("auto", "fp32", "bf16")


class TileModel(Protocol):
    """What scoring needs from a classifier (the interface of `FibroClassifier`)."""

    spec: ModelSpec

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...  # (N, C, H, W) in [0, 1] -> (N,) logits

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...  # (N, C, H, W) -> (N, D)


# One DataLoader item: (field number, tiles (T, C, S, S) float32 or None, features, error message).
FieldItem = tuple[int, torch.Tensor | None, dict[str, Any], str]


class FieldTiles(Dataset):
    """Map-style dataset over fields: decode, compute per-field features, downsample, tile."""

    def __init__(
        self,
        paths: Sequence[Sequence[str]],
        factor: int,
        crop_size: int,
        channels: Sequence[str] = (),
        features: Sequence[FieldFeature] = (),
        reader: FieldReader | None = None,
    ) -> None:
        self.paths = [list(p) for p in paths]
        self.factor = factor
        self.crop_size = crop_size
        self.channels = tuple(channels)
        self.features = list(features)
        self.reader = reader  # bit depth + illumination/pixel-size correction as in training (same rows)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> FieldItem:
        paths = self.paths[i]
        skip = self.reader.skip_reason(i) if self.reader is not None else ""
        if skip.startswith("oversize: "):  # flagged from the file headers at indexing: never decoded
            return i, None, {}, skip
        if skip or any(not isinstance(p, str) or not p for p in paths):
            return i, None, {}, f"unreadable: {skip or 'a channel file is missing for this field'}"
        try:
            img = read_field(paths) if self.reader is None else self.reader.raw(i)
        except OversizeError as exc:  # the header claims more than may be decoded ("oversize: ...")
            return i, None, {}, str(exc)
        except FibroclassError as exc:
            return i, None, {}, f"unreadable: {exc}"
        except Exception as exc:  # noqa: BLE001 - any bad file must become a flagged row, never a crash
            return i, None, {}, f"unreadable: {type(exc).__name__}: {exc} ({paths})"
        context = (
            {PIXEL_SIZE: self.reader.pixel_sizes[i], BIT_DEPTH: self.reader.bit_depths[i]}
            if self.reader is not None
            else {}
        )
        values, feature_error = compute_features(img, self.channels, self.features, context)
        if feature_error:
            values[FEATURE_ERROR] = feature_error
        nonfinite = nonfinite_reason(img, paths)
        if nonfinite:  # never fed to the model: one NaN pixel makes every tile's logit NaN
            return i, None, values, nonfinite
        try:
            model_img = img if self.reader is None else self.reader.correct(i, img)
            tiles = tile_field(downsample(model_img, self.factor), self.crop_size)
        except Exception as exc:  # noqa: BLE001
            return i, None, values, f"unreadable: {type(exc).__name__}: {exc} ({paths})"
        return i, torch.from_numpy(np.ascontiguousarray(tiles)), values, ""


def nonfinite_reason(img: np.ndarray, paths: Sequence[str]) -> str:
    """`nonfinite: ...` naming the channel files of a (C, H, W) field with NaN/inf pixels ("" when none)."""
    bad = ~np.isfinite(img)
    if not bad.any():
        return ""
    counts = bad.reshape(len(img), -1).sum(axis=1)
    where = "; ".join(f"{int(n)} in {p}" for n, p in zip(counts, paths, strict=False) if n)
    return f"nonfinite: NaN/inf pixels ({where})"


def _keep_item(item: FieldItem) -> FieldItem:
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


def resolve_precision(precision: str, dev: torch.device) -> str:
    """`auto` → bf16 on a CUDA device that supports it, else fp32; `fp32`/`bf16` as given."""
    if precision not in PRECISIONS:
        raise FibroclassError(f"unknown precision '{precision}' (use {', '.join(PRECISIONS)})")
    if precision != "auto":
        return precision
    return "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


@dataclass
class Runner:
    """The model placed for inference: device, memory format, autocast dtype, optional compile."""

    model: TileModel
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.model, torch.nn.Module):
            self.model = self.model.to(self.device).eval()
            if self.channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)
        self.fn = lambda x: embed_and_logits(self.model, x)

    def compile(self) -> None:
        """`torch.compile` the forward (dynamic batch size: the last batch of a run is smaller)."""
        self.fn = torch.compile(self.fn, dynamic=True)

    def launch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start the forward of a CPU batch; returns device tensors (copied back later)."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"),
        ):
            emb, logits = self.fn(x)
        return emb.float().reshape(len(x), -1), logits.float().reshape(len(x))


def make_runner(
    model: TileModel, device: str = "auto", precision: str = "auto", compile: bool = False
) -> Runner:
    """Place `model` for scoring: `channels_last` on CUDA, bf16 autocast per `precision`, compiled if asked."""
    dev = resolve_device(device)
    runner = Runner(model, dev, resolve_precision(precision, dev), channels_last=dev.type == "cuda")
    if compile:
        runner.compile()
    return runner


@dataclass
class FieldResult:
    """One scored field: number in the input order, mean tile logit and embedding, tiles, features."""

    i: int
    logit: float  # mean tile logit (NaN when unreadable)
    embedding: np.ndarray | None  # (D,) float32 mean tile embedding (None when unreadable)
    n_tiles: int
    features: dict[str, Any]
    reason: str  # "" or "unreadable: ..."


def field_paths(index: pd.DataFrame, channels: Sequence[str]) -> list[list[str]]:
    """Per-field channel paths in model channel order; names missing `path_<channel>` columns."""
    cols = [path_col(c) for c in channels]
    missing = [c for c in cols if c not in index.columns]
    if missing:
        raise FibroclassError(
            f"field index lacks column(s) {missing} for the model's channels {list(channels)}; "
            "map the file channel tokens to these names in the score config (discovery.channels)"
        )
    return [[p if isinstance(p, str) else "" for p in row] for row in index[cols].itertuples(index=False)]


def make_loader(dataset: FieldTiles, num_workers: int, pin_memory: bool) -> DataLoader:
    """In-order loader of single fields; workers decode ahead (4 fields each) while the model runs."""
    return DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_keep_item,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
    )


def iter_field_results(
    paths: Sequence[Sequence[str]],
    runner: Runner,
    batch_size: int = 64,
    num_workers: int = 0,
    features: Sequence[FieldFeature] | None = None,
    reader: FieldReader | None = None,
) -> Iterator[FieldResult]:
    """Score fields (a path list per field, model channel order), yielding each field once complete.

    Fields are yielded in completion order (unreadable fields at once, others when their last tile
    was scored), which is input order except that unreadable fields may come early.
    """
    if batch_size < 1:
        raise FibroclassError(f"batch size must be >= 1, got {batch_size}")
    spec: ModelSpec = runner.model.spec
    feats = list(FIELD_FEATURES if features is None else features)
    dataset = FieldTiles(paths, spec.downsample, spec.crop_size, spec.channels, feats, reader)
    loader = make_loader(dataset, num_workers, pin_memory=runner.device.type == "cuda")
    yield from score_items(loader, runner, batch_size)


def score_items(items: Iterable[FieldItem], runner: Runner, batch_size: int = 64) -> Iterator[FieldResult]:
    """Score decoded fields (`FieldTiles` items, any source: a DataLoader, a Ray batch), tiles of
    consecutive fields sharing forward batches of `batch_size`; yields each field once complete."""
    if batch_size < 1:
        raise FibroclassError(f"batch size must be >= 1, got {batch_size}")
    on_gpu = runner.device.type == "cuda"

    # Per field in flight: tiles still to score, running sums, features.
    left: dict[int, int] = {}
    logit_sum: dict[int, float] = {}
    emb_sum: dict[int, np.ndarray] = {}
    feats_of: dict[int, dict[str, Any]] = {}
    n_tiles: dict[int, int] = {}
    buf: list[torch.Tensor] = []
    owners: list[np.ndarray] = []
    buffered = 0
    pending: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None

    def take(count: int) -> tuple[torch.Tensor, np.ndarray]:
        nonlocal buf, owners, buffered
        x_all = torch.cat(buf) if len(buf) > 1 else buf[0]
        own_all = np.concatenate(owners)
        buf, owners = ([x_all[count:]], [own_all[count:]]) if count < len(own_all) else ([], [])
        buffered -= count
        return x_all[:count], own_all[:count]

    def resolve(batch: tuple[torch.Tensor, torch.Tensor, np.ndarray]) -> Iterator[FieldResult]:
        emb_t, logit_t, own = batch
        emb, logits = emb_t.cpu().numpy(), logit_t.cpu().numpy().astype(np.float64)
        starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])  # owners are non-decreasing runs
        l_sums = np.add.reduceat(logits, starts)
        e_sums = np.add.reduceat(emb.astype(np.float64), starts, axis=0)
        counts = np.diff(np.r_[starts, len(own)])
        for k, s in enumerate(starts):
            i = int(own[s])
            logit_sum[i] += float(l_sums[k])
            emb_sum[i] = e_sums[k] if i not in emb_sum else emb_sum[i] + e_sums[k]
            left[i] -= int(counts[k])
            if left[i] == 0:
                n = n_tiles.pop(i)
                yield FieldResult(
                    i,
                    logit_sum.pop(i) / n,
                    (emb_sum.pop(i) / n).astype(np.float32),
                    n,
                    feats_of.pop(i),
                    "",
                )
                del left[i]

    def run(count: int) -> Iterator[FieldResult]:
        nonlocal pending
        x, own = take(count)
        launched = (*runner.launch(x), own)
        if pending is not None:
            yield from resolve(pending)
        pending = launched

    for i, tiles, values, reason in items:
        if tiles is None:
            yield FieldResult(i, float("nan"), None, 0, values, reason)
            continue
        left[i] = n_tiles[i] = len(tiles)
        logit_sum[i] = 0.0
        feats_of[i] = values
        if on_gpu:  # pinned by the loader: copy now, asynchronously; batches are assembled on the GPU
            tiles = tiles.to(runner.device, non_blocking=True)
        buf.append(tiles)
        owners.append(np.full(len(tiles), i, dtype=np.int64))
        buffered += len(tiles)
        while buffered >= batch_size:
            yield from run(batch_size)
    if buffered:
        yield from run(buffered)
    if pending is not None:
        yield from resolve(pending)


def results_frame(
    index: pd.DataFrame, results: Sequence[FieldResult], temperature: float, embedding_dim: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The field rows of `index` (row i ↔ result with `i`) with score, QC and feature columns added,
    plus the (n, D) float32 mean embeddings (NaN rows for unreadable fields)."""
    fields = index.reset_index(drop=True).copy()
    n = len(fields)
    by_i = {r.i: r for r in results}
    if sorted(by_i) != list(range(n)):
        raise FibroclassError(f"internal: {len(by_i)} results for {n} fields")
    ordered = [by_i[i] for i in range(n)]
    dims = {len(r.embedding) for r in ordered if r.embedding is not None}
    dim = dims.pop() if dims else int(embedding_dim)
    embeddings = np.full((n, dim), np.nan, dtype=np.float32)
    score = np.full(n, np.nan)
    for k, r in enumerate(ordered):
        if r.embedding is not None:
            embeddings[k] = r.embedding
            score[k] = r.logit / float(temperature)
    fields[DISEASE_SCORE] = score
    fields[P_DISEASE] = 1.0 / (1.0 + np.exp(-score))
    fields[NUCLEI_COUNT] = np.nan  # a feature may provide it below
    fields[QC_PASS] = np.isfinite(score)
    fields[QC_REASON] = [r.reason for r in ordered]
    feature_rows = [r.features for r in ordered]
    columns = list(dict.fromkeys(k for row in feature_rows for k in row))
    for col in columns:
        values = [row.get(col, np.nan) for row in feature_rows]
        if col == FEATURE_ERROR:
            values = ["" if v is np.nan else v for v in values]
        fields[col] = values
    return fields, embeddings


def score_fields(
    index: pd.DataFrame,
    model: TileModel,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
    num_workers: int = 0,
    features: Sequence[FieldFeature] | None = None,
    precision: str = "auto",
    compile: bool = False,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Score every field of `index` (one row per field, a `path_<channel>` column per model channel).

    Returns the index with `disease_score` (mean tile logit / temperature), `p_disease`,
    `nuclei_count` (NaN unless a feature provides it), `qc_pass`, `qc_reason` and the per-field feature
    columns added, and a (n_fields, D) float32 array of mean tile embeddings in the same row order (NaN
    rows when unreadable). `features` default to `scoring.fields.features.FIELD_FEATURES`.
    """
    spec: ModelSpec = model.spec
    paths = field_paths(index, spec.channels)
    reader = FieldReader(index, spec.channels, corrections_for_model(index, spec))  # plates' own estimates
    runner = make_runner(model, device, precision, compile)
    results: list[FieldResult] = []
    with progress_bar(progress, "scoring fields") as bar:
        task = bar.add_task("fields", total=len(paths))
        for r in iter_field_results(paths, runner, batch_size, num_workers, features, reader):
            results.append(r)
            bar.advance(task, 1)
    return results_frame(index, results, spec.temperature, spec.embedding_dim)
