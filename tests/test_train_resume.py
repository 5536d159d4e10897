"""Training resume: a fit killed with SIGKILL continues from its last checkpoint in the same MLflow run and
ends with the weights and logged losses of an uninterrupted fit; resuming never changes run silently."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
import torch
from mlflow.tracking import MlflowClient

from fibroclass.cli.app import main
from fibroclass.errors import FibroclassError
from fibroclass.tracking.resume import RUN_ID_KEY, resolve_resume

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def split_dir(tmp_path):
    return tinyplate.make_tiny_split(tmp_path / "plate", size=40, fields=2)


def _argv(split: Path, experiment: str, epochs: int = 10) -> list[str]:
    return [
        "--config", str(REPO / "configs" / "train" / "default.yaml"),  # deterministic: true
        "--data.split", str(split),
        "--data.crop_size", "16",
        "--data.crops_per_field", "16",
        "--data.batch_size", "8",
        "--trainer.max_epochs", str(epochs),
        "--trainer.log_every_n_steps", "1",
        "--mlflow.experiment", experiment,
        "--mlflow.model_card_dir", "null",
    ]  # fmt: skip


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _last_checkpoints(root: Path, run_id: str = "*") -> list[Path]:
    return sorted(root.glob(f"lightning_logs/*/{run_id}/checkpoints/last.ckpt"))


def _train(cwd: Path, *args: str, log: str) -> subprocess.Popen:
    """`fibroclass train` in its own process (one thread: the three fits compute alike)."""
    env = {**os.environ, "FIBROCLASS_PROGRESS": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fibroclass.cli", "train", *args]
    with open(cwd / log, "wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, cwd: Path, log: str) -> str:
    assert proc.wait(timeout=900) == 0, (cwd / log).read_text()[-3000:]
    return (cwd / log).read_text()


def _losses(client: MlflowClient, run_id: str) -> dict[str, dict[int, set[float]]]:
    """Every logged value of every loss metric, by step (a resumed run logs the steps it replays again)."""
    out: dict[str, dict[int, set[float]]] = {}
    for key in client.get_run(run_id).data.metrics:
        if "loss" in key:
            by_step: dict[int, set[float]] = defaultdict(set)
            for m in client.get_metric_history(run_id, key):
                by_step[m.step].add(m.value)
            out[key] = dict(by_step)
    return out


@pytest.mark.slow
def test_killed_fit_resumes_in_its_run_with_the_weights_and_losses_of_an_uninterrupted_fit(
    mlflow_uri, split_dir, tmp_path
):
    # 1. a training process, really killed with SIGKILL after its first checkpoint
    proc = _train(tmp_path, *_argv(split_dir, "resumed"), log="killed.log")
    deadline = time.monotonic() + 300
    while not _last_checkpoints(tmp_path):
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no last.ckpt written"
        time.sleep(0.05)
    time.sleep(0.5)  # a few more steps, logged to MLflow, that the resumed fit replays
    assert proc.poll() is None  # still training when killed
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    (killed_ckpt,) = _last_checkpoints(tmp_path)
    killed = _ckpt(killed_ckpt)
    run_id = killed[RUN_ID_KEY]
    assert killed_ckpt.parent.parent.name == run_id
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "RUNNING"  # the process never closed it

    # 2. an uninterrupted fit of the same configuration
    _finish(_train(tmp_path, *_argv(split_dir, "uninterrupted"), log="full.log"), tmp_path, "full.log")
    (full_run,) = client.search_runs([client.get_experiment_by_name("uninterrupted").experiment_id])
    full = _ckpt(_last_checkpoints(tmp_path, full_run.info.run_id)[0])
    assert killed["global_step"] < full["global_step"]  # the kill landed mid-fit

    # 3. resume: same run, said so, same final step and weights, every logged loss value the same
    out = _finish(_train(tmp_path, *_argv(split_dir, "resumed"), "--ckpt_path", "last", log="resumed.log"),
                  tmp_path, "resumed.log")  # fmt: skip
    assert (
        f"resuming {killed_ckpt} (epoch {killed['epoch']}, step {killed['global_step']}) in its MLflow run {run_id}"
        in out
    )
    assert f"MLflow run {run_id}" in out
    (run,) = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    resumed = _ckpt(killed_ckpt)
    assert resumed["global_step"] == full["global_step"] and resumed[RUN_ID_KEY] == run_id
    assert resumed["state_dict"].keys() == full["state_dict"].keys()
    for name, weight in full["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], weight), name
    got, want = _losses(client, run_id), _losses(client, full_run.info.run_id)
    assert got.keys() == want.keys() and "train/loss" in got and "val/loss" in got
    for key, by_step in want.items():
        assert got[key].keys() == by_step.keys(), key
        for step, values in by_step.items():
            assert len(values) == 1 and got[key][step] == values, (key, step, got[key][step], values)
    replayed = [s for s, v in got["train/loss"].items() if s > killed["global_step"]]
    assert replayed and max(replayed) == full["global_step"] - 1
    versions = client.search_model_versions("name='fibroclass'")
    assert sorted(v.run_id for v in versions) == sorted([run_id, full_run.info.run_id])

    # a finished fit is not resumed by `last`
    done = _train(tmp_path, *_argv(split_dir, "uninterrupted"), "--ckpt_path", "last", log="again.log")
    assert done.wait(timeout=300) == 1 and "nothing to resume" in (tmp_path / "again.log").read_text()


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
    assert main(["train", *_argv(split_dir, "x"), "--resume.new_run", "true"]) == 1
    assert "--resume.new_run needs --ckpt_path" in capsys.readouterr().err


def _checkpoint(path: Path, run_id: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 2, "global_step": 12, **({RUN_ID_KEY: run_id} if run_id else {})}, path)
    return path


def test_a_checkpoint_whose_run_is_not_in_the_store_stops_unless_a_new_run_is_asked_for(mlflow_uri, tmp_path):
    stray = _checkpoint(tmp_path / "elsewhere" / "last.ckpt", "0123456789abcdef0123456789abcdef")
    with pytest.raises(
        FibroclassError, match=r"belongs to MLflow run 0123456789abcdef.*, which does not exist in"
    ) as err:
        resolve_resume(str(stray), tmp_path / "lightning_logs", "exp")
    assert "nothing resumed" in str(err.value) and "--resume.new_run true" in str(err.value)
    point = resolve_resume(str(stray), tmp_path / "lightning_logs", "exp", new_run=True)
    assert point.run_id is None and "in a NEW MLflow run" in point.message and "step 12" in point.message
    anonymous = _checkpoint(tmp_path / "plain.ckpt", None)
    with pytest.raises(FibroclassError, match="names no MLflow run"):
        resolve_resume(str(anonymous), tmp_path / "lightning_logs", "exp")

    # --ckpt_path last: the newest last.ckpt of the experiment belongs to a run this store does not have
    client = MlflowClient()
    exp_id = client.create_experiment("exp")
    _checkpoint(
        tmp_path / "lightning_logs" / exp_id / "feedc0de" / "checkpoints" / "last.ckpt", "feedc0de" * 4
    )
    with pytest.raises(FibroclassError, match="which does not exist in"):
        resolve_resume("last", tmp_path / "lightning_logs", "exp")
    assert resolve_resume("last", tmp_path / "lightning_logs", "exp", new_run=True).run_id is None

    # an unfinished run of this store: resumed in it, or in a new run when asked
    run = client.create_run(exp_id)
    ckpt = _checkpoint(tmp_path / "lightning_logs" / exp_id / run.info.run_id / "checkpoints" / "last.ckpt",
                       run.info.run_id)  # fmt: skip
    point = resolve_resume("last", tmp_path / "lightning_logs", "exp")
    assert (point.checkpoint, point.run_id) == (ckpt, run.info.run_id)
    assert f"in its MLflow run {run.info.run_id} (status RUNNING)" in point.message
    assert resolve_resume("last", tmp_path / "lightning_logs", "exp", new_run=True).run_id is None


@pytest.fixture
def restore_uris(mlflow_uri):
    """resolve_resume makes its URI current for `mlflow`: put this test's sqlite store back afterwards."""
    import mlflow

    yield
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_registry_uri(mlflow_uri)


def test_a_store_that_cannot_be_asked_stops_the_resume(tmp_path, monkeypatch, restore_uris):
    with socket.socket() as s:  # a loopback port nobody listens on: the tracking server is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    ckpt = _checkpoint(tmp_path / "last.ckpt", "0123456789abcdef0123456789abcdef")
    uri = f"http://127.0.0.1:{port}"
    for new_run in (False, True):
        with pytest.raises(
            FibroclassError, match=r"cannot look up MLflow run 0123456789abcdef.*nothing resumed"
        ):
            resolve_resume(str(ckpt), tmp_path, "exp", tracking_uri=uri, new_run=new_run)
    with pytest.raises(FibroclassError, match=r"--ckpt_path last: cannot read MLflow experiment 'exp'"):
        resolve_resume("last", tmp_path, "exp", tracking_uri=uri)
