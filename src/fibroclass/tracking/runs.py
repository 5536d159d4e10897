"""One MLflow run per fit: the Lightning logger and helpers adding texts, folders and tags to a run."""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from fibroclass.tracking.store import DEFAULT_EXPERIMENT, ensure_experiment, resolve_tracking_uri


def make_logger(
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    log_checkpoints: bool = True,
    create_experiment: bool = True,
    run_id: str | None = None,
) -> MLFlowLogger:
    """An MLFlowLogger on the resolved store; the experiment is created with fibroclass's artifact location.

    `log_checkpoints` uploads the ModelCheckpoint's best checkpoint to the run when training ends.
    Pass `create_experiment=False` on non-zero ranks (the logger never writes there). `run_id` continues
    an existing run (a resumed fit) instead of starting one.
    """
    uri = resolve_tracking_uri(tracking_uri)
    if create_experiment:
        ensure_experiment(experiment, uri)
    return MLFlowLogger(
        experiment_name=experiment,
        run_name=run_name,
        tracking_uri=uri,
        tags=tags,
        log_model=log_checkpoints,
        run_id=run_id,
    )


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    """Store `text` as `artifact_file` in the run."""
    MlflowClient().log_text(run_id, text, artifact_file)


def log_dict(run_id: str, data: dict, artifact_file: str) -> None:
    """Store `data` as JSON/YAML `artifact_file` in the run."""
    MlflowClient().log_dict(run_id, data, artifact_file)


def log_folder(run_id: str, folder: str | Path, artifact_path: str) -> None:
    """Copy every file of `folder` under `artifact_path` in the run."""
    MlflowClient().log_artifacts(run_id, str(folder), artifact_path)


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Log `metrics` to the run in batches (one store round trip per 1000 metrics)."""
    stamp = int(time.time() * 1000)
    items = [Metric(k, float(v), stamp, step) for k, v in metrics.items()]
    client = MlflowClient()
    for start in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[start : start + 1000])


def start_run(
    experiment: str, run_name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None
) -> str:
    """Create a run in `experiment` (created if missing) and return its id; `parent_run_id` nests it."""
    experiment_id = ensure_experiment(experiment)  # also makes the resolved store current
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return MlflowClient().create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id


def end_run(run_id: str, failed: bool = False) -> None:
    """Mark a run created by `start_run` as finished (or failed)."""
    MlflowClient().set_terminated(run_id, status="FAILED" if failed else "FINISHED")
