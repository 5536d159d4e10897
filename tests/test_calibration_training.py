"""Temperature scaling on the validation donors: fitted at the end of `fibroclass train`, stored in the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
import torch
from mlflow.tracking import MlflowClient

from fibroclass import schema
from fibroclass.cli.app import main
from fibroclass.evaluation.calibration import (
    T_BOUNDS,
    apply_temperature,
    calibration_summary,
    fit_temperature,
)
from fibroclass.evaluation.metrics import expected_calibration_error
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.predict import field_logits
from fibroclass.models.spec import ModelSpec
from fibroclass.tracking.models import load_classifier
from fibroclass.workflows.calibrate import calibrate_classifier
from fibroclass.workflows.evaluate import split_frames

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def split_dir(tmp_path):
    return tinyplate.make_tiny_split(tmp_path / "plate", size=40, fields=2)


def _overconfident(seed: int = 0, scale: float = 60.0) -> FibroClassifier:
    """A real classifier whose logits are inflated: its p sit at 0 or 1 whatever it knows."""
    torch.manual_seed(seed)
    model = FibroClassifier(ModelSpec(crop_size=16, mean=[0.1, 0.1], std=[0.1, 0.1])).eval()
    with torch.no_grad():
        model.head.weight.mul_(scale)
        model.head.bias.fill_(scale * 0.05)
    return model


def test_temperature_fixes_an_overconfident_model_on_held_out_donors(mlflow_uri, split_dir):
    model = _overconfident()
    (val, controls), (test, _) = split_frames(split_dir, ["val"]), split_frames(split_dir, ["test"])
    assert set(val[schema.DONOR]).isdisjoint(test[schema.DONOR])
    test_logits = field_logits(model, test, context=controls)
    test_pred = pd.DataFrame({"label": (test[schema.ROLE] == "disease").astype(int), "logit": test_logits})
    before = expected_calibration_error(test_pred["label"], apply_temperature(test_logits, 1.0))
    assert before > 0.3  # p near 0/1 on fields it gets wrong half the time

    val_y = (val[schema.ROLE] == "disease").astype(int).to_numpy()
    summary = calibrate_classifier(model, val_y, field_logits(model, val, context=controls), test_pred)
    assert summary.temperature > 2.0 and model.spec.temperature == pytest.approx(summary.temperature)
    assert summary.ece["test/ece_before"] == pytest.approx(before)
    assert summary.ece["test/ece_after"] < summary.ece["test/ece_before"]
    assert summary.ece["val/ece_after"] < summary.ece["val/ece_before"]
    # scoring uses the stored temperature: same ranking, softer probabilities
    scored = apply_temperature(field_logits(model, test, context=controls), model.spec.temperature)
    assert np.argsort(scored).tolist() == np.argsort(apply_temperature(test_logits, 1.0)).tolist()
    assert np.abs(scored - 0.5).max() < np.abs(apply_temperature(test_logits, 1.0) - 0.5).max()


@pytest.mark.slow  # one real `fibroclass train` (~30 s on 2 CPU cores)
def test_train_logs_calibration_and_stores_the_temperature(mlflow_uri, split_dir, tmp_path, capsys):
    argv = [
        "train",
        "--config", str(REPO / "configs" / "train" / "default.yaml"),
        "--data.split", str(split_dir),
        "--data.crop_size", "16",
        "--data.crops_per_field", "2",
        "--data.batch_size", "16",
        "--trainer.max_epochs", "1",
        "--mlflow.experiment", "calib",
        "--mlflow.model_card_dir", str(tmp_path / "cards"),
    ]  # fmt: skip
    assert main(argv) == 0
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("calib").experiment_id])
    metrics = run.data.metrics
    for key in (
        "val/ece_before",
        "val/ece_after",
        "test/ece_before",
        "test/ece_after",
        "calibration/temperature",
    ):
        assert key in metrics and np.isfinite(metrics[key])
    # the fitted temperature minimises the validation NLL, so it never makes validation calibration worse by much
    assert metrics["val/ece_after"] <= metrics["val/ece_before"] + 0.1
    files = {a.path for a in client.list_artifacts(run.info.run_id, "calibration")}
    assert files == {"calibration/reliability_val.png", "calibration/reliability_test.png"}
    model = load_classifier("models:/fibroclass@challenger")
    assert model.spec.temperature == pytest.approx(metrics["calibration/temperature"])
    card = (tmp_path / "cards" / "fibroclass-v1.md").read_text()
    assert f"**T = {metrics['calibration/temperature']:.3f}**" in card
    assert f"| test | {metrics['test/ece_before']:.3f} | {metrics['test/ece_after']:.3f} |" in card
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "model_card")}
    assert logged == {"model_card/fibroclass-v1.md"}


def test_separable_validation_donors_do_not_sharpen_the_model_to_the_bound():
    """One donor per class is often perfectly separated: the MLE temperature would run to its lower bound
    (p = 0/1 on every new field); the prior on log T keeps it near 1 unless the data say otherwise."""
    rng = np.random.default_rng(0)
    z = np.r_[rng.normal(-5, 1, 18), rng.normal(5, 1, 18)]
    y = np.r_[np.zeros(18), np.ones(18)]
    assert fit_temperature(z, y) == pytest.approx(T_BOUNDS[0], rel=0.01)
    summary = calibration_summary(y, z)
    assert 0.3 < summary.temperature < 1.0
    t = rng.normal(0, 2, 400)
    labels = (rng.random(400) < 1 / (1 + np.exp(-t))).astype(int)
    assert calibration_summary(labels, 5 * t).temperature == pytest.approx(5, rel=0.2)  # overconfident
    assert calibration_summary(labels, 0.5 * t).temperature == pytest.approx(0.5, rel=0.2)  # underconfident
