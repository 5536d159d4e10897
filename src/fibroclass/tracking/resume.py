"""Resuming an interrupted fit in its own MLflow run.

Every checkpoint of `fibroclass train` carries the id of its MLflow run (`RUN_ID_KEY`, written by
`RunIdInCheckpoint`), and `last.ckpt` is rewritten (atomically, by Lightning) at every validation, in
`<default_root_dir>/<experiment id>/<run id>/checkpoints/`. `--ckpt_path last` picks the newest
`last*.ckpt` of the experiment whose run did not finish; `--ckpt_path FILE` takes that checkpoint. The
logger then reopens the stored run (metrics continue at their steps) and Lightning restores weights,
optimizer, scheduler and loop counters, so the fit ends at the same `global_step` as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fibroclass.errors import FibroclassError
from fibroclass.tracking.store import use_tracking_uri

RUN_ID_KEY = "mlflow_run_id"
LAST = "last"


class RunIdInCheckpoint(Callback):
    """Stores the MLflow run id of the fit in every checkpoint it writes."""

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        logger = next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)
        if logger is not None and logger.run_id:
            checkpoint[RUN_ID_KEY] = logger.run_id


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a fit resumes from and the MLflow run it continues (None: a new run)."""

    checkpoint: Path
    run_id: str | None


def checkpoint_run_id(path: str | Path) -> str | None:
    """The MLflow run id stored in a checkpoint (loaded with `weights_only=True`), else None."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a checkpoint, non-tensor pickle content
        raise FibroclassError(f"cannot read checkpoint {path} to resume from: {exc}") from exc
    run_id = ckpt.get(RUN_ID_KEY) if isinstance(ckpt, dict) else None
    return str(run_id) if run_id else None


def _run_status(client: MlflowClient, run_id: str) -> str | None:
    try:
        return client.get_run(run_id).info.status
    except MlflowException:
        return None


def find_last_checkpoint(root: str | Path, experiment_id: str, client: MlflowClient) -> ResumePoint:
    """Newest `last*.ckpt` under `root/<experiment_id>/*/checkpoints/` whose run is not finished."""
    folder = Path(root) / str(experiment_id)
    candidates = sorted(
        folder.glob("*/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    finished = []
    for ckpt in candidates:
        run_id = checkpoint_run_id(ckpt) or ckpt.parent.parent.name
        status = _run_status(client, run_id)
        if status == "FINISHED":
            finished.append(run_id)
            continue
        return ResumePoint(ckpt, run_id if status is not None else None)
    if finished:
        raise FibroclassError(
            f"nothing to resume under {folder}: the runs of its last checkpoints ({', '.join(finished[:3])}) "
            "finished; give --ckpt_path a checkpoint file to continue one of them"
        )
    raise FibroclassError(
        f"--ckpt_path last: no last.ckpt of experiment {experiment_id} under {folder} "
        "(train without --ckpt_path to start a new fit)"
    )


def resolve_resume(
    ckpt_path: str, root: str | Path, experiment: str, tracking_uri: str | None = None
) -> ResumePoint:
    """`last` (see `find_last_checkpoint`, in experiment `experiment` under checkpoint root `root`) or a
    checkpoint file; the run to continue is the one stored in the checkpoint, when it exists in the store."""
    client = MlflowClient(use_tracking_uri(tracking_uri))
    if ckpt_path == LAST:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise FibroclassError(
                f"--ckpt_path last: MLflow experiment '{experiment}' does not exist in {client.tracking_uri}; "
                "nothing to resume"
            )
        return find_last_checkpoint(root, exp.experiment_id, client)
    path = Path(ckpt_path)
    if not path.is_file():
        raise FibroclassError(f"checkpoint {path} does not exist (use --ckpt_path last to find the newest)")
    run_id = checkpoint_run_id(path)
    if run_id is not None and _run_status(client, run_id) is None:
        run_id = None  # the run is in another store: continue in a new run
    return ResumePoint(path, run_id)
