"""Model cards: rendered from facts, and gathered from a registered version in a real MLflow sqlite store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
import torch
from mlflow.tracking import MlflowClient

from fibroclass import schema
from fibroclass.cli.app import main
from fibroclass.data.splits import read_split
from fibroclass.evaluation import lodo
from fibroclass.evaluation.modelcard import CardFacts, render_model_card
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.spec import ModelSpec
from fibroclass.tracking.cards import card_facts, parse_model_ref, write_card
from fibroclass.tracking.models import log_classifier
from fibroclass.tracking.store import ensure_experiment

REPO = Path(__file__).resolve().parents[1]


def test_card_states_data_metrics_calibration_use_and_limits() -> None:
    per = pd.DataFrame(
        {
            schema.DONOR: ["GoF3", "HD3"],
            schema.LABEL: [1, 0],
            "n": [4, 4],
            "accuracy": [0.75, 1.0],
            "mean_p": [0.7, 0.2],
            "auroc": [0.9, 0.95],
        }
    )
    facts = CardFacts(
        name="fibroclass",
        version="7",
        run_id="abc",
        model_uri="models:/m-1",
        aliases=["champion"],
        architecture={"backbone": "resnet18"},
        donors={"train": ["HD1", "GoF1"], "val": ["HD2", "GoF2"], "test": ["HD3", "GoF3"]},
        donor_classes={"HD1": "healthy", "GoF1": "disease", "HD3": "healthy", "GoF3": "disease"},
        split_counts={"test": {"healthy": {"wells": 3, "fields": 12}, "GoF": {"wells": 2, "fields": 8}}},
        simulated=True,
        test_metrics={"test/auroc": 0.93},
        per_donor=per,
        temperature=1.8,
        calibration={
            "val/ece_before": 0.21,
            "val/ece_after": 0.05,
            "test/ece_before": 0.2,
            "test/ece_after": 0.08,
        },
    )
    card = render_model_card(facts)
    assert card.startswith("# Model card: fibroclass v7\n")
    assert "models:/fibroclass/7 (aliases: @champion)" in card
    assert "| test | HD3 (healthy), GoF3 (disease) | 3 / 2 | 12 / 8 |" in card
    assert "| GoF3 | disease | 4 | 0.750 | 0.700 | 0.900 |" in card
    assert "**T = 1.800**" in card and "| test | 0.200 | 0.080 |" in card
    assert "## Intended use" in card and "## Limits" in card
    assert "SIMULATED plates" in card and "Trained on 2 donors (6 in the whole split)" in card
    assert "does not detect other phenotypes" in card


def test_parse_model_ref() -> None:
    assert parse_model_ref("models:/fibroclass/3") == ("fibroclass", "3")
    assert parse_model_ref("models:/fibroclass@champion") == ("fibroclass", "champion")
    with pytest.raises(Exception, match="not a registered version"):
        parse_model_ref("runs:/abc/model")


@pytest.fixture
def registered(mlflow_uri, tmp_path):
    """A registered version whose run holds what `fibroclass train` logs: split, config, test fields, metrics."""
    split_dir = tinyplate.make_tiny_split(tmp_path / "plate", size=24, fields=1)
    manifest = read_split(split_dir)
    index = pd.read_parquet(tmp_path / "plate" / "index.parquet")
    test = index[index[schema.DONOR].isin(manifest.donors["test"])].reset_index(drop=True)
    test = test.assign(label=(test[schema.ROLE] == "disease").astype(int))
    test = test.assign(logit=np.where(test["label"] == 1, 2.0, -1.0) + np.linspace(-0.5, 0.5, len(test)))
    exp = ensure_experiment("fibroclass-train")
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_params({"backbone": "tiny", "lr": 0.003, "split": str(split_dir), "batch_size": 16})
        mlflow.log_metrics(
            {"test/auroc": 1.0, "test/n_fields": float(len(test)), "calibration/temperature": 1.25}
            | {"val/ece_before": 0.3, "val/ece_after": 0.1, "test/ece_before": 0.25, "test/ece_after": 0.12}
        )
        mlflow.log_artifacts(str(split_dir), "split")
        mlflow.log_text(
            "seed_everything: 0\ntrainer:\n  max_epochs: 3\n  precision: 32-true\n", "config/train.yaml"
        )
        with (tmp_path / "fields.csv").open("w") as fh:
            test.to_csv(fh, index=False)
        mlflow.log_artifact(str(tmp_path / "fields.csv"), "test")
    torch.manual_seed(0)
    model = FibroClassifier(ModelSpec(crop_size=16, temperature=1.25, mean=[0.1, 0.2], std=[0.3, 0.4]))
    logged = log_classifier(model.eval(), run_id=run.info.run_id)
    return logged, manifest, test


def test_card_of_a_registered_version_reads_its_run(registered, tmp_path):
    logged, manifest, test = registered
    path = write_card("fibroclass", logged.version, tmp_path / "models")
    assert path == tmp_path / "models" / "fibroclass-v1.md"
    card = path.read_text()
    assert "models:/fibroclass/1 (aliases: @challenger)" in card and logged.model_uri in card
    assert f"**index sha256**: {manifest.index_sha256}" in card and "**plates**: TP1" in card
    for split in schema.SPLITS:
        for donor in manifest.donors[split]:
            assert f"{donor} (" in card.split(f"| {split} |")[1].splitlines()[0]
    assert "**max_epochs**: 3" in card and "**input channels**: actin, nuclei" in card
    assert "**T = 1.250**" in card and "| val | 0.300 | 0.100 |" in card
    assert "**data**: images not made by `fibroclass simulate`" in card
    per = lodo.donor_metrics(test.assign(**{schema.P_DISEASE: 1 / (1 + np.exp(-test["logit"] / 1.25))}))
    for row in per.itertuples(index=False):
        assert f"| {row.donor} | {('healthy', 'disease')[row.label]} | {row.n} | {row.accuracy:.3f} |" in card
    client = MlflowClient()
    assert {a.path for a in client.list_artifacts(logged.run_id, "model_card")} == {
        "model_card/fibroclass-v1.md"
    }

    # on demand, by alias, with a LODO comparison: the same facts plus the CV table
    lodo_dir = tmp_path / "lodo"
    lodo_dir.mkdir()
    oof = test.assign(**{lodo.FOLD: "f", schema.P_DISEASE: 0.5})
    lodo.compare_lodo({"cnn": oof, "logreg": oof}).to_csv(lodo_dir / "comparison.csv", index=False)
    assert (
        main(
            [
                "evaluate",
                "card",
                "--model",
                "models:/fibroclass@challenger",
                "--out",
                str(tmp_path / "again"),
                "--lodo",
                str(lodo_dir),
            ]
        )
        == 0
    )
    again = (tmp_path / "again" / "fibroclass-v1.md").read_text()
    assert "## Leave-one-pair-out cross-validation" in again and "cnn_auroc" in again
    assert again.split("## Leave-one")[0] == card.split("## Limits")[0]
    facts = card_facts("fibroclass", "1")
    assert facts.split_counts == json.loads((Path(manifest.source)).read_text())["counts"]


def test_card_errors_are_one_line(registered, tmp_path, capsys):
    assert main(["evaluate", "card", "--model", "models:/fibroclass/9"]) == 1
    assert "registered model fibroclass version/alias 9 not found" in capsys.readouterr().err
    assert (
        main(["evaluate", "card", "--model", "models:/fibroclass/1", "--lodo", str(tmp_path / "nope")]) == 1
    )
    assert "comparison.csv not found" in capsys.readouterr().err
    assert main(["evaluate", "card", "--help"]) == 0
    assert "Example: fibroclass evaluate card --model models:/fibroclass/3" in " ".join(
        capsys.readouterr().out.split()
    )
