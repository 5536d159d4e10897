"""Resuming an interrupted fit in its own MLflow run.

Every checkpoint of `fibroclass train` carries the id of its MLflow run (`RUN_ID_KEY`, written by
`RunIdInCheckpoint`), and `last.ckpt` is rewritten (atomically, by Lightning) at every validation, in
`<default_root_dir>/<experiment id>/<run id>/checkpoints/`. `--ckpt_path last` picks the newest
`last*.ckpt` of the experiment whose run did not finish; `--ckpt_path FILE` takes that checkpoint. The
logger then reopens the stored run (metrics continue at their steps) and Lightning restores weights,
optimizer, scheduler and loop counters, so the fit ends at the same `global_step` as an uninterrupted one.

Resuming never changes run silently: when the checkpoint's run is not in the store, or the store cannot be
asked, it stops with a FibroclassError; `new_run=True` (`--resume.new_run true`) continues the checkpoint's
weights and counters in a new MLflow run on purpose. `ResumePoint.message` says which it does.
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
    """The checkpoint a fit resumes from, the MLflow run it continues (None: a new run, only when asked
    for with `new_run`) and a one-line account of what resuming does."""

    checkpoint: Path
    run_id: str | None
    message: str = ""


NEW_RUN_HINT = "--resume.new_run true continues the checkpoint in a new MLflow run"


def _load(path: str | Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a checkpoint, non-tensor pickle content
        raise FibroclassError(f"cannot read checkpoint {path} to resume from: {exc}") from exc
    return ckpt if isinstance(ckpt, dict) else {}


def checkpoint_run_id(path: str | Path) -> str | None:
    """The MLflow run id stored in a checkpoint (loaded with `weights_only=True`), else None."""
    run_id = _load(path).get(RUN_ID_KEY)
    return str(run_id) if run_id else None


def _where(path: Path) -> str:
    ckpt = _load(path)
    return f"{Path(path).resolve()} (epoch {ckpt.get('epoch', '?')}, step {ckpt.get('global_step', '?')})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _run_status(client: MlflowClient, run_id: str, ckpt: Path) -> str | None:
    """The run's status; None when the store has no such run. Any other failure to look it up stops the
    resume (it never silently becomes a new run)."""
    try:
        return client.get_run(run_id).info.status
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        reason = _first_line(exc)
    except Exception as exc:  # noqa: BLE001 - a store that cannot be reached (sqlite locked, server down)
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
    raise FibroclassError(
        f"cannot look up MLflow run {run_id} of checkpoint {ckpt} in {client.tracking_uri}: {reason}; "
        "nothing resumed"
    )


def _missing_run(ckpt: Path, run_id: str, client: MlflowClient, new_run: bool) -> ResumePoint:
    if not new_run:
        raise FibroclassError(
            f"checkpoint {ckpt} belongs to MLflow run {run_id}, which does not exist in {client.tracking_uri} "
            f"(another tracking store? set --mlflow.tracking_uri); nothing resumed. {NEW_RUN_HINT}"
        )
    return ResumePoint(
        ckpt, None, f"resuming {_where(ckpt)} in a NEW MLflow run (its run {run_id} is not in this store)"
    )


def _resume(ckpt: Path, run_id: str, status: str, new_run: bool) -> ResumePoint:
    if new_run:
        return ResumePoint(ckpt, None, f"resuming {_where(ckpt)} in a NEW MLflow run (not its run {run_id})")
    return ResumePoint(ckpt, run_id, f"resuming {_where(ckpt)} in its MLflow run {run_id} (status {status})")


def find_last_checkpoint(
    root: str | Path, experiment_id: str, client: MlflowClient, new_run: bool = False
) -> ResumePoint:
    """Newest `last*.ckpt` under `root/<experiment_id>/*/checkpoints/` whose run is not finished.

    Its run must be in the store (else FibroclassError, unless `new_run`: then it continues in a new run).
    """
    folder = Path(root) / str(experiment_id)
    candidates = sorted(
        folder.glob("*/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    finished = []
    for ckpt in candidates:
        run_id = checkpoint_run_id(ckpt) or ckpt.parent.parent.name
        status = _run_status(client, run_id, ckpt)
        if status == "FINISHED":
            finished.append(run_id)
            continue
        if status is None:
            return _missing_run(ckpt, run_id, client, new_run)
        return _resume(ckpt, run_id, status, new_run)
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
    ckpt_path: str, root: str | Path, experiment: str, tracking_uri: str | None = None, new_run: bool = False
) -> ResumePoint:
    """`last` (see `find_last_checkpoint`, in experiment `experiment` under checkpoint root `root`) or a
    checkpoint file. The fit continues in the checkpoint's own MLflow run; when that run cannot be found or
    looked up, resolving stops with a FibroclassError, unless `new_run` asks for a new run on purpose."""
    client = MlflowClient(use_tracking_uri(tracking_uri))
    if ckpt_path == LAST:
        try:
            exp = client.get_experiment_by_name(experiment)
        except Exception as exc:  # noqa: BLE001 - MlflowException, or the store's own (sqlite, HTTP) errors
            raise FibroclassError(
                f"--ckpt_path last: cannot read MLflow experiment '{experiment}' in {client.tracking_uri}: "
                f"{_first_line(exc)}; nothing resumed"
            ) from exc
        if exp is None:
            raise FibroclassError(
                f"--ckpt_path last: MLflow experiment '{experiment}' does not exist in {client.tracking_uri}; "
                "nothing to resume"
            )
        return find_last_checkpoint(root, exp.experiment_id, client, new_run)
    path = Path(ckpt_path)
    if not path.is_file():
        raise FibroclassError(f"checkpoint {path} does not exist (use --ckpt_path last to find the newest)")
    run_id = checkpoint_run_id(path)
    if run_id is None:
        if not new_run:
            raise FibroclassError(
                f"checkpoint {path} names no MLflow run (not written by fibroclass train); nothing resumed. "
                f"{NEW_RUN_HINT}"
            )
        return ResumePoint(path, None, f"resuming {_where(path)} in a NEW MLflow run")
    status = _run_status(client, run_id, path)
    if status is None:
        return _missing_run(path, run_id, client, new_run)
    return _resume(path, run_id, status, new_run)
