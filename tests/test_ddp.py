"""Lightning DDP training with 2 real CPU processes (gloo) equals a single-process run with the same
global batch: the same metrics and weights within float tolerance, and one MLflow run + one registered
version written by rank 0 only.

Equivalence recipe (training/README.md): per-rank batch B on W ranks ↔ batch W·B on one process, same
seed; the samplers of `fibroclass.data.sampling` give both runs the same samples, crops and
augmentations per step. BatchNorm must see the global batch: `--trainer.sync_batchnorm true` on GPUs;
SyncBatchNorm does not exist on CPU, so this CPU test uses the GroupNorm twin of the tiny CNN (`tiny_gn`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
import torch
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]


def _train(split: Path, name: str, batch: int, *extra: str, cwd: Path, env: dict) -> str:
    cmd = [
        sys.executable, "-m", "fibroclass.cli", "train",
        "--config", str(REPO / "configs" / "train" / "default.yaml"),
        "--data.split", str(split),
        "--data.crop_size", "16",
        "--data.crops_per_field", "4",
        "--data.batch_size", str(batch),
        "--data.augment", "true",
        "--model.backbone", "tiny_gn",
        "--trainer.max_epochs", "3",
        "--trainer.accelerator", "cpu",
        "--mlflow.experiment", name,
        "--mlflow.registered_name", name,
        *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.mark.slow  # a 2-process DDP fit and a 1-process fit (each imports torch, Lightning, MLflow)
def test_two_process_ddp_equals_single_process(tmp_path, mlflow_uri):
    split = tinyplate.make_tiny_split(tmp_path / "plate", size=32, fields=2)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FIBROCLASS_PROGRESS": "0",
        "MLFLOW_TRACKING_URI": mlflow_uri,
    }
    single = _train(split, "single", 16, "--trainer.devices", "1", cwd=tmp_path, env=env)
    ddp = _train(
        split, "ddp", 8, "--trainer.devices", "2", "--trainer.strategy", "ddp", cwd=tmp_path, env=env
    )
    assert "registered models:/single/1" in single
    assert ddp.count("registered models:/ddp/1") == 1 and "models:/ddp/2" not in ddp  # rank 0 only

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    runs = {}
    for name in ("single", "ddp"):
        found = client.search_runs([client.get_experiment_by_name(name).experiment_id])
        assert len(found) == 1, f"{name}: {len(found)} MLflow runs"  # one run, however many ranks
        runs[name] = found[0]
        assert len(client.search_model_versions(f"name='{name}'")) == 1
    assert runs["ddp"].data.params["batch_size"] == "8" and runs["single"].data.params["batch_size"] == "16"

    # Same curves: every logged value of every epoch, within float tolerance.
    for key in ("train/loss", "val/loss", "val/auroc", "val/accuracy"):
        a = [m.value for m in client.get_metric_history(runs["single"].info.run_id, key)]
        b = [m.value for m in client.get_metric_history(runs["ddp"].info.run_id, key)]
        assert len(a) == len(b) == 3, key
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5), key
    for key in ("test/auroc", "test/accuracy", "test/balanced_accuracy", "test/n_fields", "test/loss"):
        a, b = runs["single"].data.metrics[key], runs["ddp"].data.metrics[key]
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5), key
    assert runs["ddp"].data.metrics["test/n_fields"] == 8  # each test field once, not padded

    # Same trained weights.
    from fibroclass.tracking.models import load_classifier

    wa = load_classifier("models:/single/1").state_dict()
    wb = load_classifier("models:/ddp/1").state_dict()
    for k in wa:
        torch.testing.assert_close(wb[k].float(), wa[k].float(), rtol=1e-4, atol=1e-5, msg=k)
