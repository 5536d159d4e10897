"""Leave-one-pair-out CV of the real CNN: tiny TIFF plate, Lightning folds, classical baseline, MLflow sqlite."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
from mlflow.tracking import MlflowClient

from fibroclass import schema
from fibroclass.cli.app import main
from fibroclass.data.splits import read_split
from fibroclass.evaluation import lodo
from fibroclass.workflows.lodo import run_lodo

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "train" / "default.yaml"
TINY = ["--data.crop_size", "16", "--data.crops_per_field", "2", "--data.batch_size", "16"]


@pytest.fixture
def index_path(tmp_path):
    """3 healthy + 3 GoF donors, 2 wells x 2 fields each, 40 px fields (written as real TIFFs)."""
    tinyplate.make_tiny_split(tmp_path / "plate", size=40, fields=2)
    return tmp_path / "plate" / "index.parquet"


def test_lodo_trains_fresh_models_that_never_see_their_held_out_pair(mlflow_uri, index_path, tmp_path):
    out = tmp_path / "lodo"
    result = run_lodo(
        index_path, CONFIG, TINY, out, max_epochs=1, baselines=("logreg",), n_permutations=200, progress=False
    )
    index = pd.read_parquet(index_path)
    donors = sorted(lodo.donor_classes(index).index)
    assert len(result.folds) == 3

    # each fold predicts exactly its held-out pair; the data module never trained or validated on it
    client = MlflowClient()
    for fold in result.folds:
        rows = result.oof[result.oof[lodo.FOLD] == fold.name]
        assert set(rows[schema.DONOR]) == set(fold.test)
        run_id = result.fold_runs[fold.name]
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == result.run_id
        used = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="split/used.json")
            ).read_text()
        )
        assert not set(used["donors"]["train"]) & set(fold.test)
        assert not set(used["donors"]["val"]) & set(fold.test)
        assert set(used["donors"]["test"]) == set(fold.test)
        assert "val/ece_after" in run.data.metrics and run.data.metrics["calibration/temperature"] > 0
        manifest = read_split(out / "folds" / fold.name / "split")
        assert set(manifest.donors["test"]) == set(fold.test)

    # per-donor table: every donor once, with a finite AUROC against the other class's held-out fields
    per = pd.read_csv(out / "per_donor.csv")
    assert sorted(per[schema.DONOR]) == donors
    assert per["auroc"].between(0, 1).all() and per["accuracy"].between(0, 1).all()
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison[schema.DONOR]) == [*donors, lodo.POOLED]
    assert {"cnn_auroc", "cnn_mean_p", "logreg_auroc", "logreg_mean_p"} <= set(comparison.columns)
    features = pd.read_parquet(out / "features.parquet")
    assert features["org_coherency"].notna().all() and len(features) == 24

    # shuffled-label (donor permutation) null sits near chance
    summary = json.loads((out / "summary.json").read_text())
    null = summary["shuffled_label_baseline"]
    assert abs(null["auroc_null_mean"] - 0.5) < 0.1 and null["level"] == "group"

    # everything is in one parent run of the fibroclass-evaluate experiment
    parent = client.get_run(result.run_id)
    assert client.get_experiment(parent.info.experiment_id).name == "fibroclass-evaluate"
    metrics = parent.data.metrics
    for donor in donors:
        assert f"cnn/donor/{donor}/auroc" in metrics
    assert metrics["cnn/auroc"] == pytest.approx(summary["pooled"]["auroc"])
    assert "logreg/auroc" in metrics and "shuffled/auroc_null_mean" in metrics and "cnn/ece_before" in metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "lodo")}
    for name in (
        "comparison.csv",
        "per_donor.csv",
        "roc.png",
        "confusion.png",
        "reliability.png",
        "donors.png",
    ):
        assert f"lodo/{name}" in artifacts
    assert not list(out.glob("folds/*/lightning"))  # fold checkpoints are not kept


def test_lodo_cli_help_and_one_line_errors(mlflow_uri, tmp_path, capsys):
    assert main(["evaluate", "lodo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Example: fibroclass evaluate lodo" in text and "--max-epochs" in text
    assert main(["evaluate", "lodo", str(tmp_path / "missing.parquet"), "--config", str(CONFIG)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: field index") and "missing.parquet" in err and err.count("\n") == 1
    plate = tinyplate.make_tiny_split(tmp_path / "two", size=24, fields=1, donors_per_class=3)
    index = plate.parent.parent / "index.parquet"
    two = pd.read_parquet(index)
    two = two[two[schema.DONOR] != "HD3"]
    two.to_parquet(tmp_path / "two.parquet")
    assert main(["evaluate", "lodo", str(tmp_path / "two.parquet"), "--config", str(CONFIG)]) == 1
    assert "needs >= 3 healthy donors" in capsys.readouterr().err
    assert main(["evaluate", "lodo", str(index), "--config", str(CONFIG), "--data.crop_sise", "16"]) == 1
    assert "crop_sise" in capsys.readouterr().err
