"""Log, register and safely load classifiers.

A logged model is an MLflow pytorch model (so the MLflow UI shows it and `mlflow models serve` can
use it) whose `extra_files/` hold the declarative `fibroclass_spec.json` (ModelSpec) and
`state_dict.pt` (plain tensors). `load_classifier` rebuilds the network from those two files with
`torch.load(weights_only=True)`: loading never runs pickled code unless explicitly trusted.
"""

from __future__ import annotations

import copy
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fibroclass.errors import FibroclassError
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.spec import ModelSpec
from fibroclass.tracking.store import use_tracking_uri

SPEC_FILE = "fibroclass_spec.json"
WEIGHTS_FILE = "state_dict.pt"
PICKLE_FILE = "data/model.pth"  # mlflow.pytorch's pickle serialization
DEFAULT_NAME = "fibroclass"
DEFAULT_ALIAS = "challenger"


@dataclass(frozen=True)
class LoggedClassifier:
    """Where a logged classifier lives: its logged-model URI and, when registered, name/version/alias."""

    model_uri: str  # models:/m-... (the MLflow 3 logged model)
    run_id: str
    model_id: str
    registered_name: str | None = None
    version: str | None = None
    alias: str | None = None

    @property
    def registry_uri(self) -> str | None:
        """`models:/<name>/<version>`, when registered."""
        return f"models:/{self.registered_name}/{self.version}" if self.version else None


def _pip_requirements() -> list[str]:
    return [f"torch=={torch.__version__.split('+')[0]}", "numpy"]


def _run(run_id: str | None):
    active = mlflow.active_run()
    if run_id is None:
        if active is None:
            raise FibroclassError("log_classifier needs a run_id or an active MLflow run")
        return nullcontext(active)
    if active is not None and active.info.run_id == run_id:
        return nullcontext(active)
    return mlflow.start_run(run_id=run_id)


def log_classifier(
    model: FibroClassifier,
    spec: ModelSpec | None = None,
    run_id: str | None = None,
    registered_name: str | None = DEFAULT_NAME,
    alias: str | None = DEFAULT_ALIAS,
    name: str = "model",
    tags: dict[str, str] | None = None,
) -> LoggedClassifier:
    """Log `model` in run `run_id` as artifact `name`, register it as `registered_name` and set `alias`.

    The MLflow-native copy uses MLflow 3's default `pt2` (torch.export) serialization, which needs an
    input example; a batch of 2 keeps the batch dimension dynamic. `pip_requirements` are given
    explicitly so MLflow does not infer them by loading the model in a subprocess.
    """
    spec = spec or model.spec
    use_tracking_uri()
    cpu_model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    example = np.random.default_rng(0).random(
        (2, spec.in_chans, spec.crop_size, spec.crop_size), dtype=np.float32
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, weights_path = Path(tmp) / SPEC_FILE, Path(tmp) / WEIGHTS_FILE
        spec.save(spec_path)
        torch.save({k: v.detach().clone() for k, v in cpu_model.state_dict().items()}, weights_path)
        with _run(run_id) as run:
            info = mlflow.pytorch.log_model(
                cpu_model,
                name=name,
                input_example=example,
                pip_requirements=_pip_requirements(),
                extra_files=[str(spec_path), str(weights_path)],
                metadata={"fibroclass_spec": spec.to_dict()},
            )
            run_id = run.info.run_id
    logged = LoggedClassifier(model_uri=info.model_uri, run_id=run_id, model_id=info.model_id)
    if not registered_name:
        return logged
    version = mlflow.register_model(info.model_uri, registered_name, tags=tags)
    if alias:
        MlflowClient().set_registered_model_alias(registered_name, alias, version.version)
    return LoggedClassifier(
        model_uri=info.model_uri,
        run_id=run_id,
        model_id=info.model_id,
        registered_name=registered_name,
        version=str(version.version),
        alias=alias,
    )


def _find(root: Path, filename: str) -> Path | None:
    for candidate in (root / "extra_files" / filename, root / filename):
        if candidate.is_file():
            return candidate
    return None


def load_classifier_dir(
    path: str | Path, trust_pickle: bool = False, source: str | None = None
) -> FibroClassifier:
    """Load a classifier from a local folder: a logged MLflow model or a folder with the spec + weights."""
    root, source = Path(path), source or str(path)
    spec_path, weights_path = _find(root, SPEC_FILE), _find(root, WEIGHTS_FILE)
    if spec_path and weights_path:
        model = FibroClassifier(ModelSpec.load(spec_path))
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # wrong shapes, truncated file, non-tensor content
            raise FibroclassError(
                f"cannot load weights {weights_path.name} of model {source}: {exc}"
            ) from exc
        return model.eval()
    if (root / PICKLE_FILE).is_file():
        if not trust_pickle:
            raise FibroclassError(
                f"model {source} has no {SPEC_FILE}/{WEIGHTS_FILE}, only a pickled network ({PICKLE_FILE}), "
                "which can run arbitrary code when loaded; pass trust_pickle=True (--trust-pickle) only for a trusted source"
            )
        model = mlflow.pytorch.load_model(str(root), map_location="cpu")
        if not isinstance(model, FibroClassifier):
            raise FibroclassError(f"model {source} holds a {type(model).__name__}, not a FibroClassifier")
        return model.eval()
    raise FibroclassError(f"{source} is not a fibroclass model: no {SPEC_FILE} and {WEIGHTS_FILE} found")


def load_classifier(
    uri: str | Path, trust_pickle: bool = False, device: str | torch.device = "cpu"
) -> FibroClassifier:
    """Load a classifier in eval mode on `device` (CPU by default).

    `uri`: `models:/fibroclass@challenger`, `models:/fibroclass/3`, `models:/m-...`, `runs:/<run_id>/model`,
    or a local folder (a downloaded logged model, or one holding `fibroclass_spec.json` + `state_dict.pt`).
    """
    text = str(uri)
    if Path(text).is_dir():
        return load_classifier_dir(text, trust_pickle).to(device)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        raise FibroclassError(f"model {text} not found: give a folder or a models:/ or runs:/ URI")
    tracking = use_tracking_uri()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=tmp)
        except (MlflowException, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FibroclassError(
                f"cannot resolve model {text} in MLflow store {tracking}: {reason}"
            ) from exc
        return load_classifier_dir(local, trust_pickle, source=text).to(device)
