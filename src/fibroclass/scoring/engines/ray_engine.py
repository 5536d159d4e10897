"""The Ray Data engine: the field stage of many plates on a Ray cluster (or every core of this machine).

Pipeline, streaming with Ray Data's backpressure:
1. field list: the fields of the chunks to score, in groups of `FIELDS_PER_TASK` (each group a pickled
   `FieldTiles` over its own slice of the `FieldReader`: paths, bit depths, its plates' corrections);
2. read + per-field features as Ray tasks (`FieldTiles`, the code the local engine's DataLoader runs:
   decode, QC/nuclei/organization features, unreadable and non-finite fields flagged, tiles);
3. inference on a pool of actors that each hold the model once (`num_gpus=1` per actor when the cluster
   has GPUs, else CPU actors), tiles of several fields per forward pass of `inference.batch_size`
   (`fields.inference.score_items`, as locally);
4. per-field rows streamed back to this process (the driver), which writes each chunk to `OUT/parts/`
   (`fields.stage.ChunkSink`) as soon as its last field arrived; the merge (per-plate normalization, dose
   response, calls, report) then runs here as after the local engine.

Plate illumination estimates (models trained with flat-field/normalization) are one Ray task per plate.
A killed read task is retried and a killed actor restarted (`MAX_RETRIES` times each); a killed driver
leaves the finished chunks, so the same command resumes. Without an address (and no `$RAY_ADDRESS`) the
engine starts a local Ray cluster and shuts it down after; with `auto` or `ray://HOST:PORT` it joins that
cluster, whose nodes need fibroclass installed and the images at the same paths (only the driver writes
OUT).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch
from ray import cloudpickle

from fibroclass.data.illumination import IlluminationSettings, PlateCorrections, corrections_for_model
from fibroclass.data.reader import FieldReader
from fibroclass.errors import FibroclassError
from fibroclass.progress import progress_bar
from fibroclass.schema import PLATE
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.fields.features import FieldFeature
from fibroclass.scoring.fields.inference import (
    FieldResult,
    FieldTiles,
    TileModel,
    make_runner,
    resolve_precision,
    score_items,
)
from fibroclass.scoring.fields.parts import Chunk
from fibroclass.scoring.fields.stage import ChunkSink, prepare_rows, todo_plates

FIELDS_PER_TASK = 4  # fields decoded by one read task (small: balances slow fields across workers)
FORWARDS_PER_CALL = 4  # forward passes of `batch_size` tiles per actor call (fewer partial batches)
MAX_RETRIES = 3  # a killed read task is retried, a killed actor restarted, this many times


# -- worker side ------------------------------------------------------------------------------------------
def read_groups(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Ray task: decode each group's fields (+ features, tiles) into one row per field."""
    out: dict[str, list] = {"i": [], "tiles": [], "has_tiles": [], "features": [], "reason": []}
    for start, blob in zip(batch["start"], batch["group"], strict=True):
        group: FieldTiles = pickle.loads(blob)
        for k in range(len(group)):
            i, tiles, values, reason = group[k]
            out["i"].append(int(start) + i)
            out["has_tiles"].append(tiles is not None)
            out["tiles"].append(np.zeros((0, 1, 1, 1), np.float32) if tiles is None else tiles.numpy())
            out["features"].append(cloudpickle.dumps(values))
            out["reason"].append(reason)
    return {
        "i": np.asarray(out["i"], dtype=np.int64),
        "tiles": out["tiles"],
        "has_tiles": np.asarray(out["has_tiles"], dtype=bool),
        "features": np.asarray(out["features"], dtype=object),
        "reason": np.asarray(out["reason"], dtype=object),
    }


class FieldScorer:
    """Ray actor: holds the model once (on its GPU when it has one) and scores batches of decoded fields."""

    def __init__(self, model: Any, device: str, precision: str, compile: bool, batch_size: int) -> None:
        model = ray.get(model[0]) if isinstance(model, list) else model
        self.runner = make_runner(model, device, precision, compile)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        items = (
            (int(i), torch.from_numpy(np.array(t, dtype=np.float32)) if has else None, feats, str(reason))
            for i, t, has, feats, reason in zip(
                batch["i"],
                batch["tiles"],
                batch["has_tiles"],
                batch["features"],
                batch["reason"],
                strict=True,
            )
        )
        results = list(score_items(items, self.runner, self.batch_size))  # features pass through as bytes
        return {
            "i": np.asarray([r.i for r in results], dtype=np.int64),
            "logit": np.asarray([r.logit for r in results], dtype=np.float64),
            "embedding": [np.zeros(0, np.float32) if r.embedding is None else r.embedding for r in results],
            "n_tiles": np.asarray([r.n_tiles for r in results], dtype=np.int64),
            "features": np.asarray([r.features for r in results], dtype=object),
            "reason": np.asarray([r.reason for r in results], dtype=object),
        }


# -- driver side ------------------------------------------------------------------------------------------
class RayEngine:
    """The field stage on Ray Data (see the module docstring). `address`: None joins `$RAY_ADDRESS` when set,
    else starts a local cluster (shut down after); `auto` or `ray://HOST:PORT` joins that cluster."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address or None
        self._owned = False
        self._started = False
        self._precision: str | None = None
        self._model_ref: Any = None  # held while scoring: a restarted actor reloads the model from it

    # cluster ---------------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._started:
            return
        if not ray.is_initialized():  # else a cluster this process already joined (a notebook, the tests)
            address = self.address or os.environ.get("RAY_ADDRESS") or "local"
            kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
            if address == "local":
                kwargs["include_dashboard"] = False  # a cluster of our own, for this run only
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = "a new local cluster" if address == "local" else address
                raise FibroclassError(f"cannot start or join the Ray cluster ({where}): {exc}") from exc
            self._owned = True
        self._started = True
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # fibroclass's own progress bar counts fields
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        with contextlib.suppress(ImportError):  # Ray Data's one-time note that its bars are off: on purpose
            from ray.util.debug import log_once

            log_once("ray_data_progress_manager_disabled")

    def close(self) -> None:
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._owned = self._started = False
        self._precision = self._model_ref = None

    def _resources(self) -> tuple[float, float]:
        res = ray.cluster_resources()
        return float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0))

    def _use_gpu(self, cfg: ScoreConfig) -> bool:
        self._start()
        gpus = self._resources()[1]
        if cfg.device.startswith("cuda") and gpus < 1:
            raise FibroclassError(
                f"device '{cfg.device}' requested but the Ray cluster has no GPU (use --device cpu)"
            )
        return cfg.device != "cpu" and gpus >= 1

    # engine ----------------------------------------------------------------------------------------------
    def precision(self, model: TileModel, cfg: ScoreConfig) -> str:
        if self._precision is None:
            if cfg.precision != "auto":
                self._precision = resolve_precision(cfg.precision, torch.device("cpu"))
            elif cfg.device == "cpu" or not self._use_gpu(cfg):
                self._precision = "fp32"
            else:  # what the actors' GPUs support (bf16 autocast where they can)
                probe = ray.remote(num_gpus=1)(lambda: resolve_precision("auto", torch.device("cuda")))
                self._precision = str(ray.get(probe.remote()))
        return self._precision

    def score_chunks(
        self,
        index: pd.DataFrame,
        chunks: Sequence[Chunk],
        model: TileModel,
        cfg: ScoreConfig,
        features: Sequence[FieldFeature],
        progress: bool,
    ) -> None:
        if not chunks:
            return
        self._start()
        spec = model.spec
        rows, reader = prepare_rows(index, chunks, spec, self._corrections(todo_plates(index, chunks), spec))
        sink = ChunkSink(index, chunks, spec)
        ds = self._dataset(reader, model, cfg, features)
        with progress_bar(progress, "scoring fields") as bar:
            task = bar.add_task("fields", total=len(rows))
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for r in _results(batch):
                        sink.add(r)
                        bar.advance(task, 1)
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                while cause is not None and not isinstance(cause, FibroclassError):
                    cause = cause.__cause__
                if isinstance(cause, FibroclassError):
                    raise FibroclassError(str(cause)) from exc
                raise
        sink.check_complete()

    def _corrections(self, todo: pd.DataFrame, spec: Any) -> PlateCorrections:
        """Illumination estimates as one Ray task per plate (only models trained with them read images)."""
        settings = IlluminationSettings.from_dict((getattr(spec, "extra", None) or {}).get("illumination"))
        if not settings.enabled:
            return corrections_for_model(todo, spec)
        estimate = ray.remote(max_retries=MAX_RETRIES)(corrections_for_model)
        refs = [estimate.remote(rows, spec) for _, rows in todo.groupby(PLATE, sort=True)]
        return PlateCorrections.combine(ray.get(refs), todo)

    def _dataset(
        self, reader: FieldReader, model: TileModel, cfg: ScoreConfig, features: Sequence[FieldFeature]
    ):  # noqa: ANN202 - ray.data.Dataset
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        spec = model.spec
        self._model_ref = ray.put(model)
        cpus, _ = self._resources()
        use_gpu = self._use_gpu(cfg)
        n = len(reader)
        groups = [
            {
                "start": a,
                "group": cloudpickle.dumps(
                    FieldTiles(
                        reader.paths[a : a + FIELDS_PER_TASK], spec.downsample, spec.crop_size, spec.channels,
                        list(features), reader.slice(a, a + FIELDS_PER_TASK),
                    )
                ),
            }
            for a in range(0, n, FIELDS_PER_TASK)
        ]  # fmt: skip
        blocks = min(len(groups), max(4 * int(cpus), math.ceil(len(groups) / 16)))
        ds = ray.data.from_items(groups, override_num_blocks=blocks)
        task_cpus = 1.0 if cpus >= 2 else 0.5  # a one-CPU cluster must fit a reader beside the model
        actors = int(self._resources()[1]) if use_gpu else max(1, int(cpus) // 8)
        # A capped task pool (sized unlike the actor pool) also keeps Ray from fusing reads into the actors.
        ds = _map_batches(
            ds,
            read_groups,
            {"max_retries": MAX_RETRIES},
            batch_size=1,
            compute=TaskPoolStrategy(size=max(int(cpus), actors + 1)),
            num_cpus=task_cpus,
        )
        per_call = max(1, math.ceil(FORWARDS_PER_CALL * cfg.batch_size / _tiles_per_field(reader, spec)))
        return _map_batches(
            ds,
            FieldScorer,
            {"max_restarts": MAX_RETRIES, "max_task_retries": MAX_RETRIES},
            batch_size=per_call,
            compute=ActorPoolStrategy(size=actors),
            num_gpus=1 if use_gpu else None,
            num_cpus=task_cpus,
            fn_constructor_kwargs={
                "model": [self._model_ref],  # nested: the actors borrow the driver's reference
                "device": "cuda" if use_gpu else "cpu",
                "precision": self.precision(model, cfg),
                "compile": cfg.compile,
                "batch_size": cfg.batch_size,
            },
        )


def _map_batches(ds: Any, fn: Any, retries: dict[str, int], **kwargs: Any) -> Any:
    """`ds.map_batches(fn, **kwargs)` with bounded retries where this Ray accepts them (its remote args are
    deprecated; without them Ray Data retries a dead worker until it succeeds)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            return ds.map_batches(fn, **kwargs, **retries)
    except TypeError:
        return ds.map_batches(fn, **kwargs)


def _tiles_per_field(reader: FieldReader, spec: Any, probes: int = 3) -> int:
    """Tiles of the first readable field (sizes the actors' batches of fields); 1 when none is readable."""
    for a in range(min(probes, len(reader))):
        _, tiles, _, _ = FieldTiles(
            reader.paths[a : a + 1],
            spec.downsample,
            spec.crop_size,
            spec.channels,
            (),
            reader.slice(a, a + 1),
        )[0]
        if tiles is not None:
            return max(1, len(tiles))
    return 1


def _results(batch: dict[str, np.ndarray]) -> list[FieldResult]:
    """The actor's output rows as the `FieldResult`s the local engine produces."""
    out = []
    for i, logit, emb, n, feats, reason in zip(
        batch["i"], batch["logit"], batch["embedding"], batch["n_tiles"], batch["features"], batch["reason"],
        strict=True,
    ):  # fmt: skip
        embedding = np.asarray(emb, dtype=np.float32) if int(n) > 0 else None
        out.append(FieldResult(int(i), float(logit), embedding, int(n), pickle.loads(feats), str(reason)))
    return out


__all__ = ["FieldScorer", "RayEngine", "read_groups"]
