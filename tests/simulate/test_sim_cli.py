"""`fibroclass simulate train|screen` through the real console entry point."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from fibroclass.cli.app import app, main


def test_train_command_writes_a_training_set(tmp_path, capsys):
    out = tmp_path / "train"
    argv = ["simulate", "train", "--out", str(out), "--size", "32", "--fields", "1", "--plates", "1"]
    assert main([*argv, "--donors", "3", "--wells-per-donor", "2", "--no-progress"]) == 0
    pm = pd.read_csv(out / "platemap.csv")
    assert len(pm) == 12 and set(pm.donor) == {"HD1", "HD2", "HD3", "GoF1", "GoF2", "GoF3"}
    assert len(list((out / "images" / "TRAIN01").glob("TRAIN01_*_s1_w[12].tif"))) == 24
    printed = capsys.readouterr().out
    assert str(out / "images") in printed and str(out / "platemap.csv") in printed


def test_screen_command_with_operetta_names_and_progress_bar(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FIBROCLASS_PROGRESS", "1")
    out = tmp_path / "screen"
    argv = ["simulate", "screen", "--out", str(out), "--size", "32", "--fields", "1", "--naming", "operetta"]
    assert main(argv) == 0
    assert len(list((out / "images" / "SCREEN01").glob("r??c??f01p01-ch[12]sk1fk1fl1.tiff"))) == 192
    assert (out / "ground_truth_compounds.csv").exists()
    captured = capsys.readouterr()
    assert "96/96" in captured.err and "ground_truth_compounds.csv" in captured.out


def test_artefact_rates_and_vignetting_options(tmp_path):
    out = tmp_path / "s"
    argv = ["simulate", "train", "--out", str(out), "--size", "32", "--fields", "2", "--plates", "1"]
    assert main([*argv, "--artefacts", "0,0,1", "--vignetting", "0.5", "--no-progress"]) == 0
    fields = pd.read_csv(out / "ground_truth_fields.csv")
    assert set(fields.artefact) == {"debris"}
    assert fields.vignetting.between(0.3, 0.7).all() and fields.vignetting.mean() > 0.35


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "screen", "--format", "100"], "plate format must be 96 or 384"),
        (["simulate", "train", "--naming", "cellomics"], "unknown naming 'cellomics'"),
        (["simulate", "train", "--size", "8"], "size must be >= 16"),
        (["simulate", "train", "--artefacts", "0.5,0.2"], "must be three rates"),
        (["simulate", "screen", "--artefacts", "0.7,0.7,0"], "sum to <= 1"),
    ],
)
def test_user_mistakes_exit_1_with_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.parametrize("command", ["train", "screen"])
def test_help_shows_an_example(command):
    result = CliRunner().invoke(app, ["simulate", command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert f"Example: fibroclass simulate {command} --out" in result.output
