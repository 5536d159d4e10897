"""Training resume: a fit killed with SIGKILL continues from its last checkpoint in the same MLflow run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
import torch
from mlflow.tracking import MlflowClient

from fibroclass.cli.app import main
from fibroclass.tracking.resume import RUN_ID_KEY
from fibroclass.workflows.train import run_training

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def split_dir(tmp_path):
    return tinyplate.make_tiny_split(tmp_path / "plate", size=40, fields=2)


def _argv(split: Path, experiment: str, epochs: int = 10) -> list[str]:
    return [
        "--config", str(REPO / "configs" / "train" / "default.yaml"),
        "--data.split", str(split),
        "--data.crop_size", "16",
        "--data.crops_per_field", "16",
        "--data.batch_size", "8",
        "--trainer.max_epochs", str(epochs),
        "--mlflow.experiment", experiment,
        "--mlflow.model_card_dir", "null",
    ]  # fmt: skip


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _last_checkpoints(root: Path) -> list[Path]:
    return sorted(root.glob("lightning_logs/*/*/checkpoints/last.ckpt"))


@pytest.mark.slow
def test_killed_fit_resumes_in_the_same_run_and_ends_at_the_same_step(
    mlflow_uri, split_dir, tmp_path, capsys
):
    # 1. a training process, really killed with SIGKILL after its first epoch's checkpoint
    cmd = [sys.executable, "-m", "fibroclass.cli", "train", *_argv(split_dir, "resumed")]
    env = {**os.environ, "FIBROCLASS_PROGRESS": "0"}
    with open(tmp_path / "killed.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not _last_checkpoints(tmp_path):
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no last.ckpt written"
        time.sleep(0.05)
    assert proc.poll() is None  # still training when killed
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    (killed_ckpt,) = _last_checkpoints(tmp_path)
    killed = _ckpt(killed_ckpt)
    run_id = killed[RUN_ID_KEY]
    assert killed_ckpt.parent.parent.name == run_id
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "RUNNING"  # the process never closed it

    # 2. an uninterrupted fit of the same configuration, for the reference step count
    full = run_training(_argv(split_dir, "uninterrupted"))
    full_ckpt = next(p for p in _last_checkpoints(tmp_path) if p.parent.parent.name == full.run_id)
    full_steps = _ckpt(full_ckpt)["global_step"]
    assert killed["global_step"] < full_steps  # the kill landed mid-fit

    # 3. resume: same run, same final step, model registered from that run
    capsys.readouterr()
    assert main(["train", *_argv(split_dir, "resumed"), "--ckpt_path", "last"]) == 0
    assert f"MLflow run {run_id}" in capsys.readouterr().out
    exp = client.get_experiment_by_name("resumed")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    resumed = _ckpt(killed_ckpt)
    assert resumed["global_step"] == full_steps and resumed[RUN_ID_KEY] == run_id
    steps = {m.step for m in client.get_metric_history(run_id, "train/loss")}
    full_curve = {m.step for m in client.get_metric_history(full.run_id, "train/loss")}
    assert steps <= full_curve and max(steps) == max(full_curve)  # the run's curve continues to the end
    assert client.get_model_version_by_alias("fibroclass", "challenger").run_id in (run_id, full.run_id)
    versions = client.search_model_versions("name='fibroclass'")
    assert sorted(v.run_id for v in versions) == sorted([run_id, full.run_id])

    # a finished fit is not resumed by `last`
    assert main(["train", *_argv(split_dir, "uninterrupted"), "--ckpt_path", "last"]) == 1
    assert "nothing to resume" in capsys.readouterr().err


def test_resume_user_errors_are_one_line(mlflow_uri, split_dir, tmp_path, capsys):
    assert main(["train", *_argv(split_dir, "never-trained"), "--ckpt_path", "last"]) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's store set-up notes
    assert last_line.startswith("error: --ckpt_path last: MLflow experiment 'never-trained' does not exist")
    missing = tmp_path / "nope.ckpt"
    assert main(["train", *_argv(split_dir, "x"), "--ckpt_path", str(missing)]) == 1
    assert f"checkpoint {missing} does not exist" in capsys.readouterr().err
    torn = tmp_path / "torn.ckpt"
    torn.write_bytes(b"PK\x03\x04 truncated")
    assert main(["train", *_argv(split_dir, "x"), "--ckpt_path", str(torn)]) == 1
    assert f"cannot read checkpoint {torn}" in capsys.readouterr().err
