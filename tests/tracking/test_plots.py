"""Test-set figures and their logging into a run."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from fibroclass.tracking.plots import confusion_figure, log_figure, log_table, roc_figure
from fibroclass.tracking.store import ensure_experiment


def test_roc_and_confusion_are_logged_as_png_and_csv(mlflow_uri):
    labels, scores = [0, 0, 1, 1, 1], [-2.0, 0.5, 0.3, 1.0, 2.0]
    roc = roc_figure(labels, scores)
    assert "AUROC = 0.833" in roc.axes[0].get_legend().get_texts()[0].get_text()
    cm = confusion_figure(labels, [int(s > 0) for s in scores])
    assert [t.get_text() for t in cm.axes[0].texts] == ["1", "1", "0", "3"]
    with mlflow.start_run(experiment_id=ensure_experiment("plots")) as run:
        log_figure(roc, "test/roc.png", run.info.run_id)
        log_figure(cm, "test/confusion.png", run.info.run_id)
        log_table(pd.DataFrame({"label": labels, "logit": scores}), "test/fields.csv", run.info.run_id)
    files = {f.path: f.file_size for f in MlflowClient().list_artifacts(run.info.run_id, "test")}
    assert set(files) == {"test/roc.png", "test/confusion.png", "test/fields.csv"}
    assert all(size > 0 for size in files.values())
