"""Where runs and artifacts live: the tracking URI and the experiments' artifact locations.

Default (no `MLFLOW_TRACKING_URI`): an embedded SQLite store `sqlite:///<cwd>/mlruns.db` with
artifacts in `<cwd>/mlartifacts`. (MLflow 3's own default is `sqlite:///mlflow.db` with artifacts in
`./mlruns`; fibroclass pins both paths so `mlflow ui --backend-store-uri ...` finds them.)
For any SQLite store, new experiments keep artifacts in `mlartifacts/` next to the database file.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import mlflow
from mlflow.tracking import MlflowClient

from fibroclass.errors import FibroclassError

DEFAULT_DB = "mlruns.db"
DEFAULT_ARTIFACTS = "mlartifacts"
DEFAULT_EXPERIMENT = "fibroclass-train"


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    """`sqlite:///<cwd>/mlruns.db` (absolute)."""
    return f"sqlite:///{Path(cwd or os.getcwd()).resolve() / DEFAULT_DB}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """`uri`, else `MLFLOW_TRACKING_URI`, else the default embedded store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI, else None."""
    prefix = "sqlite:///"  # SQLAlchemy: sqlite:///relative.db, sqlite:////absolute.db
    if not uri.startswith(prefix):
        return None
    path = unquote(uri[len(prefix) :].split("?", 1)[0])
    return Path(path) if path and path != ":memory:" else None


def default_artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: `<db dir>/mlartifacts` for SQLite; None (server default) otherwise."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.resolve().parent / DEFAULT_ARTIFACTS).as_uri()


def use_tracking_uri(uri: str | None = None) -> str:
    """Resolve the tracking URI, make it (and the registry URI) current for `mlflow`, and return it."""
    resolved = resolve_tracking_uri(uri)
    db = sqlite_path(resolved)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    return resolved


def ensure_experiment(name: str = DEFAULT_EXPERIMENT, uri: str | None = None) -> str:
    """Id of experiment `name`, created (with the default artifact location) when missing or deleted."""
    resolved = use_tracking_uri(uri)
    client = MlflowClient(resolved)
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise FibroclassError(
            f"MLflow experiment '{name}' is deleted in {resolved}; restore it (mlflow experiments restore) "
            "or choose another --mlflow.experiment"
        )
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=default_artifact_location(resolved))
