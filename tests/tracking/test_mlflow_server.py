"""Train and score against a real `mlflow server` started on loopback by `scripts/mlflow_server.sh`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import tinyplate  # tests/data/tinyplate.py, on sys.path via tests/conftest.py
from mlflow.tracking import MlflowClient

from fibroclass.cli.app import main

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "mlflow_server.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses (hex, as in /proc/net/tcp) with a socket listening on `port`."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
            found.add(addr)
    return found


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    """A real tracking server on 127.0.0.1:<free port> with its store in tmp; stopped afterwards."""
    port = _free_port()
    store = tmp_path / "server store"  # a space in the path, as on lab shares
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "FIBROCLASS_MLFLOW_PORT": str(port),
        "FIBROCLASS_MLFLOW_WORKERS": "1",
        "MLFLOW": str(Path(sys.executable).with_name("mlflow")),
    }
    env.pop("FIBROCLASS_MLFLOW_HOST", None)  # the recipe's default binding is under test
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            ["bash", str(SCRIPT), str(store)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url, store, port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers: the group this test started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_train_and_score_against_a_loopback_server(mlflow_server, tmp_path, capsys):
    url, store, port = mlflow_server
    assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, not 0.0.0.0

    split = tinyplate.make_tiny_split(tmp_path / "plate", size=40, fields=2)
    argv = [
        "train",
        "--config", str(REPO / "configs" / "train" / "default.yaml"),
        "--data.split", str(split),
        "--data.crop_size", "16",
        "--data.crops_per_field", "4",
        "--data.batch_size", "16",
        "--trainer.max_epochs", "1",
        "--mlflow.experiment", "served",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"in {url}" in printed and "registered models:/fibroclass/1" in printed

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    (run,) = client.search_runs([client.get_experiment_by_name("served").experiment_id])
    assert run.info.status == "FINISHED" and "val/auroc" in run.data.metrics
    assert client.get_model_version_by_alias("fibroclass", "challenger").run_id == run.info.run_id
    # runs and registry live in the server's database, artifacts behind its proxy in the store folder
    assert (store / "mlflow.db").is_file() and not (tmp_path / "mlruns.db").exists()
    assert any(p.name == "state_dict.pt" for p in (store / "artifacts").rglob("*"))

    out = tmp_path / "scores"
    rc = main(
        ["score", str(tmp_path / "plate" / "images"), "--platemap", str(tmp_path / "plate" / "platemap.csv"),
         "--model", "models:/fibroclass@challenger", "--out", str(out), "--device", "cpu", "--no-progress"]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    wells = pd.read_csv(out / "wells.csv")
    assert len(wells) == 12 and wells["disease_score"].notna().all()
    assert wells.loc[wells["role"] == "healthy", "rescue_pct"].mean() == pytest.approx(100.0)
