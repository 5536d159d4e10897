"""Logging, registering and safely loading classifiers with a real MLflow sqlite store."""

from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from fibroclass.errors import FibroclassError
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.spec import ModelSpec
from fibroclass.tracking.models import load_classifier, log_classifier
from fibroclass.tracking.store import (
    default_artifact_location,
    default_tracking_uri,
    ensure_experiment,
    sqlite_path,
)


def _model(seed: int) -> FibroClassifier:
    torch.manual_seed(seed)
    model = FibroClassifier(ModelSpec(crop_size=16, mean=[0.1, 0.3], std=[0.05, 0.2], temperature=1.7))
    with torch.no_grad():  # non-default BatchNorm statistics must survive the round trip too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_log_register_and_load_by_alias_version_run_and_folder(mlflow_uri, tmp_path):
    exp = ensure_experiment("fibroclass-test")
    assert mlflow.get_experiment(exp).artifact_location == (tmp_path / "mlartifacts").as_uri()
    x = torch.rand(5, 2, 16, 16)
    with mlflow.start_run(experiment_id=exp) as run:
        first = log_classifier(_model(0), run_id=run.info.run_id)
    second_model = _model(1)
    with mlflow.start_run(experiment_id=exp) as run2:
        pass
    second = log_classifier(second_model, run_id=run2.info.run_id)  # run already ended: reopened
    assert (first.version, second.version) == ("1", "2")
    assert str(MlflowClient().get_model_version_by_alias("fibroclass", "challenger").version) == "2"

    with torch.no_grad():
        expected = second_model(x)
        for uri in (
            "models:/fibroclass@challenger",
            "models:/fibroclass/2",
            f"runs:/{run2.info.run_id}/model",
        ):
            loaded = load_classifier(uri)
            assert isinstance(loaded, FibroClassifier) and not loaded.training
            assert loaded.spec.temperature == 1.7 and loaded.spec.embedding_dim == 64
            torch.testing.assert_close(loaded(x), expected)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri="models:/fibroclass/1", dst_path=str(tmp_path / "dl")
        )
        torch.testing.assert_close(load_classifier(local)(x), _model(0)(x))


def test_pickle_only_model_needs_trust(mlflow_uri):
    model = _model(2)
    exp = ensure_experiment("pickled")
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.pytorch.log_model(
            model, name="model", serialization_format="pickle", pip_requirements=["torch"]
        )
    with pytest.raises(FibroclassError, match="only a pickled network.*trust_pickle"):
        load_classifier(info.model_uri)
    loaded = load_classifier(info.model_uri, trust_pickle=True)
    x = torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_unresolvable_uris_are_user_errors(mlflow_uri, tmp_path):
    ensure_experiment("empty")
    with pytest.raises(FibroclassError, match="cannot resolve model models:/fibroclass@champion"):
        load_classifier("models:/fibroclass@champion")
    with pytest.raises(FibroclassError, match="not found"):
        load_classifier(str(tmp_path / "missing"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FibroclassError, match="not a fibroclass model"):
        load_classifier(str(tmp_path / "empty_dir"))


def test_store_defaults(tmp_path):
    uri = default_tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert sqlite_path(uri) == tmp_path / "mlruns.db"
    assert default_artifact_location(uri) == (tmp_path / "mlartifacts").as_uri()
    assert default_artifact_location("http://mlflow.example:5000") is None
