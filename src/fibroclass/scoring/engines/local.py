"""The local engine: DataLoader worker processes decode fields and compute their features while the main
process runs the model (`scoring.fields.stage.score_chunks_local`); `num_workers: auto` uses the machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.fields.features import FieldFeature
from fibroclass.scoring.fields.inference import Runner, TileModel, make_runner
from fibroclass.scoring.fields.parts import Chunk
from fibroclass.scoring.fields.stage import score_chunks_local

WORKER_MEMORY = 1 << 30  # budget per reader process (decoded fields in flight, feature temporaries)


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (taskset, SLURM binding), capped by a cgroup quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def available_memory() -> int | None:
    """Bytes of memory available to new processes (MemAvailable; None when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def auto_num_workers() -> int:
    """Reader processes for `num_workers: auto`: one per CPU but the one running the model, at most one per
    `WORKER_MEMORY` of available memory."""
    workers = usable_cpus() - 1
    memory = available_memory()
    if memory is not None:
        workers = min(workers, int(memory // WORKER_MEMORY))
    return max(0, workers)


def resolve_num_workers(value: int | str) -> int:
    return auto_num_workers() if value == "auto" else int(value)


class LocalEngine:
    """Fields read by `num_workers` DataLoader processes, the model in this process (cfg.device)."""

    name = "local"

    def __init__(self) -> None:
        self._runner: Runner | None = None

    def _runner_for(self, model: TileModel, cfg: ScoreConfig) -> Runner:
        if self._runner is None or self._runner.model is not model:
            self._runner = make_runner(model, cfg.device, cfg.precision, cfg.compile)
        return self._runner

    def precision(self, model: TileModel, cfg: ScoreConfig) -> str:
        return self._runner_for(model, cfg).precision

    def score_chunks(
        self,
        index: pd.DataFrame,
        chunks: Sequence[Chunk],
        model: TileModel,
        cfg: ScoreConfig,
        features: Sequence[FieldFeature],
        progress: bool,
    ) -> None:
        runner = self._runner_for(model, cfg)
        workers = resolve_num_workers(cfg.num_workers)
        score_chunks_local(index, chunks, runner, cfg.batch_size, workers, features, progress)

    def close(self) -> None:
        self._runner = None
