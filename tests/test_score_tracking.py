"""`fibroclass score` logs each scoring run to MLflow (experiment fibroclass-score): the model version it
used, the plate QC numbers and the report; `--no-mlflow` skips it. Real sqlite store, real TIFFs."""

from __future__ import annotations

import json
import math

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from fibroclass.cli.app import main
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.spec import ModelSpec
from fibroclass.simulate import ArtefactRates, simulate_screen
from fibroclass.tracking.models import log_classifier
from fibroclass.tracking.scoring import SCORE_EXPERIMENT, plate_metrics, resolve_model


@pytest.fixture
def registered(mlflow_uri):
    """A tiny classifier logged in a 'training' run and registered as fibroclass v1 @champion."""
    torch.manual_seed(0)
    model = FibroClassifier(ModelSpec(backbone="tiny", crop_size=16, mean=[0.2, 0.1], std=[0.1, 0.1]))
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run() as run:
        logged = log_classifier(model, alias="champion")
    return logged, run.info.run_id


@pytest.fixture
def screen(tmp_path):
    return simulate_screen(tmp_path / "sim", seed=2, size=48, fields=1, artefacts=ArtefactRates(0, 0, 0))


def _score(screen, out, *extra: str) -> int:
    argv = ["score", str(screen.images_dir), "--platemap", str(screen.platemap)]
    return main([*argv, "--model", "models:/fibroclass@champion", "--out", str(out), "--no-progress", *extra])


def test_score_run_logged_with_model_version_plate_qc_and_report(registered, screen, tmp_path, capsys):
    logged, train_run = registered
    assert _score(screen, tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert f"MLflow: experiment {SCORE_EXPERIMENT}" in printed and "report:" in printed

    client = MlflowClient()
    exp = client.get_experiment_by_name(SCORE_EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id])
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["model_uri"] == "models:/fibroclass@champion"
    assert (params["model_name"], params["model_version"], params["model_alias"]) == (
        "fibroclass",
        "1",
        "champion",
    )
    assert params["model_run_id"] == train_run == logged.run_id
    assert params["config.z_prime_min"] == "0.5" and params["config.readout.calls.hit_rescue_pct"] == "50.0"
    assert params["n_fields"] == "96" and run.info.status == "FINISHED"

    qc = json.loads((tmp_path / "out" / "plate_qc.json").read_text())["plates"]["SCREEN01"]
    assert metrics["SCREEN01/pass"] == float(qc["pass"])
    assert metrics["SCREEN01/fields_flagged"] == qc["n_fields_flagged"]
    if qc["z_prime"] is not None:
        assert metrics["SCREEN01/z_prime"] == pytest.approx(qc["z_prime"])
    assert metrics["plates_failed"] == float(not qc["pass"])
    assert sum(v for k, v in metrics.items() if k.startswith("calls/")) == 5  # five simulated compounds
    assert tags["fibroclass.plates_failed"] == ("none" if qc["pass"] else "SCREEN01")
    assert tags["fibroclass.model"] == "fibroclass/1"

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "plate_qc.json", "compounds.csv", "wells.csv", "run.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/dose_response.png" in plots


def test_no_mlflow_skips_logging(registered, screen, tmp_path, capsys):
    assert _score(screen, tmp_path / "out", "--no-mlflow") == 0
    assert "MLflow: experiment" not in capsys.readouterr().out
    assert MlflowClient().get_experiment_by_name(SCORE_EXPERIMENT) is None
    assert (tmp_path / "out" / "report.html").is_file()


def test_resolve_model_uris(registered):
    logged, train_run = registered
    assert resolve_model("models:/fibroclass/1")["model_run_id"] == train_run
    assert resolve_model(f"runs:/{train_run}/model") == {"model_run_id": train_run}
    assert "model_resolve_error" in resolve_model("models:/fibroclass@nosuchalias")
    assert resolve_model("/some/folder") == {}


def test_plate_metrics_skip_undefined_numbers():
    qc = {
        "P 1": {"z_prime": 0.7, "ssmd": math.inf, "n_fields": 10, "n_fields_flagged": 2, "pass": True},
        "P/2": {"z_prime": None, "ssmd": None, "n_fields": 4, "n_fields_flagged": 0, "pass": False},
    }
    m = plate_metrics(qc)
    assert m["P 1/z_prime"] == 0.7 and "P 1/ssmd" not in m and m["P 1/fields_flagged_frac"] == 0.2
    assert "P_2/z_prime" not in m and m["P_2/pass"] == 0.0 and m["plates_failed"] == 1.0
