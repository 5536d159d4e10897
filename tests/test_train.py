"""`fibroclass train` end to end on generated TIFFs + field index + donor split, with a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
import torch
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from fibroclass.cli.app import main
from fibroclass.data.splits import read_split
from fibroclass.models.module import FibroModule
from fibroclass.tracking.models import load_classifier
from fibroclass.workflows.train import build_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "train").glob("*.yaml"))


@pytest.fixture
def split_dir(tmp_path):
    return tinyplate.make_tiny_split(tmp_path / "plate", size=40, fields=2)


def test_train_tests_logs_registers_and_reloads(mlflow_uri, split_dir, tmp_path, capsys):
    argv = [
        "train",
        "--config", str(REPO / "configs" / "train" / "default.yaml"),
        "--data.split", str(split_dir),
        "--data.crop_size", "16",
        "--data.crops_per_field", "4",
        "--data.batch_size", "16",
        "--trainer.max_epochs", "2",
        "--mlflow.experiment", "e2e",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "registered models:/fibroclass/1" in out and "test/auroc" in out

    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    run_id = run.info.run_id
    params, metrics = run.data.params, run.data.metrics
    assert params["backbone"] == "tiny" and params["crop_size"] == "16" and params["split"] == str(split_dir)
    for key in (
        "train/loss",
        "val/loss",
        "val/auroc",
        "val/accuracy",
        "test/auroc",
        "test/balanced_accuracy",
    ):
        assert key in metrics
    artifacts = {
        f.path for d in ("", "config", "split", "test") for f in client.list_artifacts(run_id, d or None)
    }
    assert {"config/train.yaml", "split/manifest.json", "test/roc.png", "test/confusion.png"} <= artifacts
    checkpoint_dirs = [a for a in artifacts if a.startswith("best-epoch")]
    assert len(checkpoint_dirs) == 1

    # test metrics are field-level, on the held-out test donors only
    fields = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="test/fields.csv"))
    manifest = read_split(split_dir)
    assert set(fields["donor"]) == set(manifest.donors["test"])
    assert not set(fields["donor"]) & set(manifest.donors["train"])
    assert metrics["test/auroc"] == pytest.approx(roc_auc_score(fields["label"], fields["logit"]), abs=1e-6)

    # the registry alias resolves to a model that reproduces the tested (best-checkpoint) network
    version = client.get_model_version_by_alias("fibroclass", "challenger")
    assert version.run_id == run_id
    loaded = load_classifier("models:/fibroclass@challenger")
    ckpt_dir = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=checkpoint_dirs[0], dst_path=str(tmp_path)
    )
    (ckpt,) = Path(ckpt_dir).glob("*.ckpt")
    trained = FibroModule.load_from_checkpoint(ckpt, map_location="cpu").classifier.eval()
    x = torch.rand(6, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained(x))
    # the logged spec adds the temperature fitted on the validation donors after training
    assert {**loaded.spec.to_dict(), "temperature": 1.0} == trained.spec.to_dict()
    assert loaded.spec.temperature == pytest.approx(metrics["calibration/temperature"])
    assert loaded.spec.crop_size == 16 and loaded.spec.mean == pytest.approx(trained.spec.mean)


def test_train_cli_user_errors(mlflow_uri, split_dir, capsys):
    config = str(REPO / "configs" / "train" / "default.yaml")
    assert main(["train", "--config", config]) == 1
    assert "data.split" in capsys.readouterr().err
    assert main(["train", "--config", config, "--data.split", str(split_dir), "--model.backbone", "vgg"]) == 1
    assert "unknown backbone 'vgg'" in capsys.readouterr().err
    assert main(["train", "--config", config, "--data.split", str(split_dir / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Example: fibroclass train --config configs/train/default.yaml" in help_text
    assert "--mlflow.experiment" in help_text and "--data.split" in help_text


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_parses(mlflow_uri, split_dir, config):
    cli = build_cli(
        [
            "--config", str(config),
            "--data.split", str(split_dir),
            "--trainer.accelerator", "cpu",
            "--trainer.devices", "1",
            "--trainer.fast_dev_run", "true",
        ]
    )  # fmt: skip
    assert cli.model.hparams.backbone in ("tiny", "resnet18")
    assert cli.datamodule.crop_size >= 16 and cli.datamodule.split_dir == split_dir
    assert any(type(cb).__name__ == "AUROCCheckpoint" for cb in cli.trainer.callbacks)
    if config.stem.startswith("gpu"):
        assert cli.trainer.precision == "bf16-mixed" and cli.datamodule.num_workers > 0
