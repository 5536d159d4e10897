"""`fibroclass score` end to end: a classifier registered in a real MLflow sqlite store scores real TIFFs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fibroclass.cli.app import main
from fibroclass.scoring.outputs import FILES

HEALTHY, DISEASE = 8000, 30000


@pytest.fixture
def registered_model(mlflow_uri):
    import mlflow
    import torch

    from fibroclass.models.classifier import FibroClassifier
    from fibroclass.models.spec import ModelSpec
    from fibroclass.tracking.models import log_classifier

    torch.manual_seed(0)
    model = FibroClassifier(ModelSpec(backbone="tiny", crop_size=16, mean=[0.2, 0.1], std=[0.1, 0.1]))
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run():
        logged = log_classifier(model, alias="champion")
    return f"models:/{logged.registered_name}@champion"


def test_cli_scores_plate_with_registered_model(tmp_path, kit, registered_model, capsys):
    layout = kit.screen_layout("P1", HEALTHY, DISEASE)
    kit.make_index(tmp_path / "images", layout, sites=2)
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    out = tmp_path / "scores"
    argv = ["score", str(tmp_path / "images"), "--platemap", str(platemap), "--model", registered_model]
    rc = main([*argv, "--out", str(out), "--batch-size", "8", "--device", "cpu", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert sorted(p.name for p in out.iterdir() if p.name not in ("parts", "plots")) == sorted(
        [*FILES, "report.html"]
    )  # parts: resume; plots: the report's PNGs
    assert "plate QC" in printed and "P1" in printed and "ruxolitinib" in printed and str(out) in printed
    wells = pd.read_csv(out / "wells.csv")
    assert len(wells) == len(layout) and wells["disease_score"].notna().all()
    assert json.loads((out / "run.json").read_text())["model_uri"] == registered_model


def test_cli_user_errors_are_one_line(tmp_path, kit, capsys):
    layout = kit.screen_layout("P1", HEALTHY, DISEASE)
    kit.make_index(tmp_path / "images", layout, sites=1)
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("qc: {zprime: 2}\n")
    rc = main(
        ["score", str(tmp_path / "images"), "--platemap", str(platemap), "--model", "models:/x@y",
         "--out", str(tmp_path / "o"), "--config", str(bad_config)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and "qc.zprime" in err and err.count("\n") == 1


def test_cli_help_has_example():
    from typer.testing import CliRunner

    from fibroclass.cli.app import app

    result = CliRunner().invoke(app, ["score", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
