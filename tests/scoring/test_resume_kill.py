"""`kill -9` a real `fibroclass score` process mid-plate, re-run the same command: it resumes from the
finished chunks and the outputs equal those of an uninterrupted run; a further re-run changes nothing."""

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
    snapshot,
)

pytestmark = pytest.mark.slow  # three CLI processes (each imports torch + MLflow): ~1 min on 2 cores


def test_kill_9_mid_plate_then_rerun_equals_uninterrupted(tmp_path, kit, mlflow_uri):
    layout = plate_layout("K1", 96)
    kit.make_index(tmp_path / "images", layout, sites=2, size=(64, 64))  # 192 fields, 16 tiles each
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    config = tmp_path / "score.yaml"
    config.write_text("inference:\n  batch_size: 16\n  chunk_fields: 8\n")  # 24 chunks on one plate
    model_uri = register_tiny_model(mlflow_uri)
    env = cli_env(mlflow_uri)
    out, ref = tmp_path / "out", tmp_path / "ref"
    cmd = score_cmd(tmp_path / "images", platemap, model_uri, out, "--config", str(config))

    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while len(chunk_stamps(out)) < 2:
            assert proc.poll() is None, f"scoring ended before it could be killed: {proc.communicate()}"
            assert time.monotonic() < deadline, "no chunk written within 240 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = len(chunk_stamps(out))
    assert 2 <= done_at_kill < 24, "the kill must land mid-plate"
    assert not (out / "fields.parquet").exists()

    rerun = run_cli(cmd, env, tmp_path)
    assert f"resumed: reused {done_at_kill} finished chunk(s)" in " ".join(rerun.stdout.split())
    assert len(chunk_stamps(out)) == 24 and not list(out.rglob("*.tmp"))

    run_cli(score_cmd(tmp_path / "images", platemap, model_uri, ref, "--config", str(config)), env, tmp_path)
    assert_same_outputs(out, ref)

    before = snapshot(out)
    again = run_cli(cmd, env, tmp_path)
    assert "outputs already up to date" in again.stdout
    assert snapshot(out) == before
