"""The scheduler path: one real `fibroclass score --plate P` process per plate running at the same time
into one OUT, then one explicit `--merge`, equals a single-process run; a second whole run into an OUT
that a live `fibroclass score` is writing is refused."""

from __future__ import annotations

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

from fibroclass.cli.app import main
from fibroclass.scoring.runlock import OUT_LOCK

pytestmark = pytest.mark.slow  # concurrent CLI processes (torch + MLflow imports): ~2 min on 2 cores


def test_plate_jobs_at_once_then_explicit_merge_equal_single_process(tmp_path, kit, mlflow_uri, capsys):
    layout = plate_layout("S1", 8) + plate_layout("S2", 7) + plate_layout("S3", 9) + plate_layout("S4", 6)
    kit.make_index(tmp_path / "images", layout, sites=2, size=(40, 40))
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    config = tmp_path / "score.yaml"
    config.write_text("inference:\n  batch_size: 8\n  chunk_fields: 5\nreport:\n  enabled: false\n")
    model_uri = register_tiny_model(mlflow_uri)
    env = cli_env(mlflow_uri)
    out, ref = tmp_path / "out", tmp_path / "ref"
    args = (tmp_path / "images", platemap, model_uri, out, "--config", str(config))

    jobs = [("S1", "S3"), ("S2", "S4")]
    procs = [
        subprocess.Popen(
            score_cmd(*args, *(f"--plate={p}" for p in job)), env=env, cwd=tmp_path, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for job in jobs
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"{stdout}\n{stderr}"
    printed = " ".join(" ".join(o[0] for o in outputs).split())
    assert "plate QC" not in printed and "merge with the same command, --merge instead of --plate" in printed
    assert len(chunk_stamps(out)) == 4 + 3 + 4 + 3 and not (out / "fields.parquet").exists()

    merged = run_cli(score_cmd(*args, "--merge"), env, tmp_path)
    assert "plate QC" in merged.stdout
    rc = main([*score_cmd(tmp_path / "images", platemap, model_uri, ref, "--config", str(config))[3:]])
    assert rc == 0
    capsys.readouterr()
    assert_same_outputs(out, ref)
    again = run_cli(score_cmd(*args, "--merge"), env, tmp_path)
    assert "outputs already up to date" in again.stdout


def test_second_run_into_a_folder_a_live_run_writes_is_refused(tmp_path, kit, mlflow_uri, capsys):
    layout = plate_layout("L1", 96)
    kit.make_index(tmp_path / "images", layout, sites=2, size=(64, 64))  # long enough to overlap
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    model_uri = register_tiny_model(mlflow_uri)
    out = tmp_path / "out"
    cmd = score_cmd(tmp_path / "images", platemap, model_uri, out, "--no-mlflow")
    first = subprocess.Popen(cmd, env=cli_env(mlflow_uri), cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / OUT_LOCK).exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.05)
        capsys.readouterr()
        assert main(cmd[3:]) == 1  # this process: a second `fibroclass score` into the same --out
        assert first.poll() is None, "the first run finished before the second was refused"
        err = " ".join(capsys.readouterr().err.split())
        assert f"is being written by another fibroclass process (pid {first.pid} on host" in err
        assert "-m fibroclass.cli score" in err  # the holder's command, as recorded in its lock file
    finally:
        stdout, _ = first.communicate(timeout=300)
    assert first.returncode == 0 and "plate QC" in stdout  # the first run was not disturbed
    assert not (out / OUT_LOCK).exists()
