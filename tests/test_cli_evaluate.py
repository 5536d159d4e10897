"""`fibroclass evaluate model|card|lodo` and `fibroclass explain`: help examples, a tiny run each, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from fibroclass import schema
from fibroclass.cli.app import main
from fibroclass.data.splits import read_split
from fibroclass.evaluation.calibration import apply_temperature
from fibroclass.evaluation.metrics import auroc, expected_calibration_error
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.predict import field_logits
from fibroclass.models.spec import ModelSpec
from fibroclass.tracking.models import log_classifier
from fibroclass.tracking.store import ensure_experiment

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "example"),
    [
        (["evaluate", "--help"], "Honest evaluation"),
        (["evaluate", "lodo", "--help"], "Example: fibroclass evaluate lodo data/index.parquet"),
        (
            ["evaluate", "model", "--help"],
            "Example: fibroclass evaluate model --model models:/fibroclass@challenger",
        ),
        (["evaluate", "card", "--help"], "Example: fibroclass evaluate card --model"),
        (["explain", "--help"], "Example: fibroclass explain --model models:/fibroclass@challenger --index"),
        (["--help"], "explain"),
    ],
)
def test_help_has_examples(argv, example, capsys):
    assert main(argv) == 0
    assert example in " ".join(capsys.readouterr().out.split())


@pytest.fixture
def model_and_split(mlflow_uri, tmp_path):
    """A real registered classifier (temperature 2) and a tiny donor split on disk."""
    split_dir = tinyplate.make_tiny_split(tmp_path / "plate", size=40, fields=2)
    torch.manual_seed(0)
    model = FibroClassifier(ModelSpec(crop_size=16, temperature=2.0, mean=[0.1, 0.1], std=[0.1, 0.1])).eval()
    exp = ensure_experiment("fibroclass-train")
    run_id = MlflowClient().create_run(exp).info.run_id
    log_classifier(model, run_id=run_id)
    return model, split_dir


def test_evaluate_model_on_split_donors(model_and_split, tmp_path, capsys):
    model, split_dir = model_and_split
    out = tmp_path / "eval"
    argv = ["evaluate", "model", "--model", "models:/fibroclass@challenger", "--split", str(split_dir)]
    assert main([*argv, "--out", str(out), "--permutations", "100"]) == 0
    printed = capsys.readouterr().out
    manifest = read_split(split_dir)
    fields = pd.read_csv(out / "fields.csv")
    assert set(fields[schema.DONOR]) == set(manifest.donors["test"])
    # the numbers are the model's own field scores on those donors
    index = pd.read_parquet(split_dir.parent.parent / "index.parquet")
    test = index[index[schema.DONOR].isin(manifest.donors["test"])].reset_index(drop=True)
    logits = field_logits(model, test)
    assert fields["logit"].to_numpy() == pytest.approx(logits, abs=1e-5)
    assert fields[schema.P_DISEASE].to_numpy() == pytest.approx(apply_temperature(logits, 2.0), abs=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    y = (test[schema.ROLE] == "disease").astype(int)
    assert summary["pooled"]["auroc"] == pytest.approx(auroc(y, apply_temperature(logits, 1.0)))
    assert summary["pooled"]["ece_before"] == pytest.approx(
        expected_calibration_error(y, apply_temperature(logits, 1.0))
    )
    per = pd.read_csv(out / "per_donor.csv")
    assert sorted(per[schema.DONOR]) == sorted(manifest.donors["test"])
    for name in ("roc.png", "confusion.png", "reliability.png", "shuffled_null.png"):
        assert (out / name).stat().st_size > 1000
    for donor in manifest.donors["test"]:
        assert donor in printed
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("fibroclass-evaluate").experiment_id])
    assert run.data.metrics["eval/auroc"] == pytest.approx(summary["pooled"]["auroc"])
    assert run.data.metrics["eval/temperature"] == 2.0
    assert "eval/per_donor.csv" in {a.path for a in client.list_artifacts(run.info.run_id, "eval")}

    assert main([*argv, "--subset", "test,holdout"]) == 1
    assert "unknown split subset(s) ['holdout']" in capsys.readouterr().err
    assert main(["evaluate", "model", "--model", "models:/nope/1", "--split", str(split_dir)]) == 1
    assert capsys.readouterr().err.startswith("error: cannot resolve model models:/nope/1")


def test_explain_writes_overlays_and_logs_them(model_and_split, tmp_path, capsys):
    _, split_dir = model_and_split
    index = split_dir.parent.parent / "index.parquet"
    out = tmp_path / "explain"
    argv = ["explain", "--model", "models:/fibroclass@challenger", "--index", str(index), "--out", str(out)]
    assert main([*argv, "--field", "TP1:B2:1", "--field", "TP1:B03", "--pick", "1"]) == 0
    table = pd.read_csv(out / "fields.csv")
    keys = list(zip(table[schema.WELL], table[schema.SITE], strict=True))
    assert keys[:3] == [("B02", 1), ("B03", 1), ("B03", 2)]  # named fields first, then picks
    assert set(table[schema.ROLE].iloc[3:]) == {"healthy", "disease"}  # one representative per control role
    for row in table.itertuples():
        field = Image.open(out / row.png)
        assert field.size[0] > 600  # the three-panel figure
        raw = np.asarray(Image.open(out / row.png.replace(".png", "_overlay.png")))
        assert raw.shape[:2] == (40, 40)  # the overlay has the field's own resolution
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("fibroclass-explain").experiment_id])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "explain")}
    assert "explain/TP1_B02_s1.png" in logged and "explain/fields.csv" in logged
    assert "wrote 5 explanations" in " ".join(capsys.readouterr().out.split())

    assert main([*argv, "--field", "TP1:Z99:1"]) == 1
    assert "Z99" in capsys.readouterr().err
    assert main([*argv, "--field", "TP1:B02:7"]) == 1
    assert "--field TP1:B02:7: no such field" in capsys.readouterr().err
    assert main(argv) == 1
    assert "--field PLATE:WELL:SITE or pick some with --pick N" in capsys.readouterr().err
