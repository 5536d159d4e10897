"""`kill -9` a real `fibroclass score --engine ray` driver mid-plate (it started its own local Ray cluster),
re-run the same command: it takes over the dead run's lock, resumes from the finished chunks, shuts its
cluster down, and the outputs equal an uninterrupted local-engine run."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from resume_helpers import (
    assert_same_outputs,
    chunk_stamps,
    cli_env,
    plate_layout,
    register_tiny_model,
    run_cli,
    score_cmd,
)

pytest.importorskip("ray", reason="ray is not installed (pip install 'fibroclass[ray]')")
pytestmark = pytest.mark.slow  # two Ray clusters started by CLI drivers + a local run: ~3 min on 2 cores


def _group_alive(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except ProcessLookupError:
                pass
    return pids


def _kill_group(pgid: int) -> None:
    """Clean up what a killed driver's cluster left behind (only processes this test started)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_kill_9_ray_driver_then_rerun_resumes_and_equals_local(tmp_path, kit, mlflow_uri):
    layout = plate_layout("K1", 96)
    kit.make_index(tmp_path / "images", layout, sites=2, size=(64, 64))  # 192 fields
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    config = tmp_path / "score.yaml"
    config.write_text("inference:\n  batch_size: 16\n  chunk_fields: 8\nreport:\n  enabled: false\n")
    model_uri = register_tiny_model(mlflow_uri)
    env = {k: v for k, v in cli_env(mlflow_uri).items() if k != "RAY_ADDRESS"}  # a cluster of its own
    out, ref = tmp_path / "out", tmp_path / "ref"
    cmd = score_cmd(tmp_path / "images", platemap, model_uri, out, "--config", str(config), "--engine", "ray")

    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while len(chunk_stamps(out)) < 2:
            assert proc.poll() is None, f"scoring ended before it could be killed: {proc.communicate()}"
            assert time.monotonic() < deadline, "no chunk written within 300 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: Ray must cope with its cluster losing it
        proc.wait()
    finally:
        _kill_group(proc.pid)
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = len(chunk_stamps(out))
    assert 2 <= done_at_kill < 24, "the kill must land mid-plate"
    assert not (out / "fields.parquet").exists()

    rerun = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    stdout, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, f"{stdout}\n{stderr}"
    printed = " ".join(stdout.split())
    assert "took over the lock of output folder" in printed and "is no longer running" in printed
    assert "resumed: reused" in printed and "plate QC" in printed
    assert len(chunk_stamps(out)) == 24 and not list(out.rglob("*.tmp"))
    deadline = time.monotonic() + 60  # the cluster it started is shut down when it is done
    while _group_alive(rerun.pid) and time.monotonic() < deadline:
        time.sleep(1)
    leftover = _group_alive(rerun.pid)
    _kill_group(rerun.pid)
    assert not leftover, f"Ray processes left running after the command ended: {leftover}"

    run_cli(score_cmd(tmp_path / "images", platemap, model_uri, ref, "--config", str(config)), env, tmp_path)
    assert_same_outputs(out, ref)
