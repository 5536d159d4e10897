"""Distributed scoring: two real `fibroclass score --shard K/2` processes running at the same time
share the plates; the last to finish merges; the outputs equal a single-process run."""

from __future__ import annotations

import subprocess

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
from fibroclass.scoring.fields.parts import parse_shard, shard_plates


@pytest.mark.slow  # two concurrent CLI processes (torch + MLflow imports): ~1 min on 2 cores
def test_two_shard_processes_equal_single_process(tmp_path, kit, mlflow_uri, capsys):
    layout = plate_layout("S1", 8) + plate_layout("S2", 7) + plate_layout("S3", 9) + plate_layout("S4", 6)
    kit.make_index(tmp_path / "images", layout, sites=2, size=(40, 40))
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    config = tmp_path / "score.yaml"
    config.write_text("inference:\n  batch_size: 8\n  chunk_fields: 5\nreport:\n  enabled: false\n")
    model_uri = register_tiny_model(mlflow_uri)
    env = cli_env(mlflow_uri)
    out, ref = tmp_path / "out", tmp_path / "ref"
    args = (tmp_path / "images", platemap, model_uri, out, "--config", str(config))

    procs = [
        subprocess.Popen(
            score_cmd(*args, "--shard", f"{k}/2"), env=env, cwd=tmp_path, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for k in range(2)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"{stdout}\n{stderr}"
    printed = " ".join(" ".join(o[0] for o in outputs).split())
    assert "plate QC" in printed  # whichever finished last merged
    assert len(chunk_stamps(out)) == 4 + 3 + 4 + 3

    rc = main([*score_cmd(tmp_path / "images", platemap, model_uri, ref, "--config", str(config))[3:]])
    assert rc == 0
    capsys.readouterr()
    assert_same_outputs(out, ref)

    merged = run_cli(score_cmd(*args, "--merge"), env, tmp_path)  # explicit merge: already up to date
    assert "outputs already up to date" in merged.stdout


def test_shard_argument_and_plate_assignment():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(Exception, match="K/N"):
            parse_shard(bad)
    plates = [f"P{i:02d}" for i in range(10)]
    parts = [shard_plates(plates, (k, 3)) for k in range(3)]
    assert set().union(*parts) == set(plates) and sum(map(len, parts)) == 10
    assert parts[0] == {"P00", "P03", "P06", "P09"}
