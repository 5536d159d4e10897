"""Safe model loading: scoring never unpickles a model file unless the user explicitly trusts it.

A crafted pickle whose payload writes a marker file stands in for a model shared by an unknown lab:
the marker must never appear unless `trust_pickle` / `--trust-pickle` is given (and then it does, which
proves the payload is live and the refusal is what kept it from running).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
import torch

from fibroclass.cli.app import main
from fibroclass.errors import FibroclassError
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.spec import ModelSpec
from fibroclass.tracking.models import PICKLE_FILE, SPEC_FILE, WEIGHTS_FILE, load_classifier
from fibroclass.tracking.store import ensure_experiment


class Payload:
    """Unpickling this object runs code: it writes `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def _model(seed: int = 0) -> FibroClassifier:
    torch.manual_seed(seed)
    return FibroClassifier(ModelSpec(crop_size=16, mean=[0.2, 0.1], std=[0.1, 0.1])).eval()


def _pickled_model_dir(tmp_path: Path, name: str) -> Path:
    """A real MLflow pytorch model folder in the (unsafe) pickle serialization, without spec/weights."""
    path = tmp_path / name
    mlflow.pytorch.save_model(_model(), str(path), serialization_format="pickle", pip_requirements=["torch"])
    assert (path / PICKLE_FILE).is_file() and not list(path.rglob(SPEC_FILE))
    return path


def _malicious_dir(tmp_path: Path, marker: Path) -> Path:
    """The same folder with its pickled network replaced by the payload."""
    path = _pickled_model_dir(tmp_path, "malicious")
    torch.save(Payload(marker), path / PICKLE_FILE)
    return path


def test_pickled_model_is_refused_without_trust_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    folder = _malicious_dir(tmp_path, marker)
    with pytest.raises(FibroclassError, match=r"pickled network.*--trust-pickle"):
        load_classifier(folder)
    assert not marker.exists()
    # The payload is live: trusting the folder runs it (then fails, as it is no classifier).
    with pytest.raises(Exception):  # noqa: B017 - whatever the payload object makes MLflow raise
        load_classifier(folder, trust_pickle=True)
    assert marker.read_text() == "pwned"


def test_weights_file_holding_pickled_code_is_rejected_by_weights_only_load(tmp_path):
    """A folder that looks declarative (spec + weights) but whose weights file is a code-running pickle."""
    marker = tmp_path / "marker.txt"
    folder = tmp_path / "looks_safe"
    folder.mkdir()
    _model().spec.save(folder / SPEC_FILE)
    torch.save({"backbone.weight": Payload(marker)}, folder / WEIGHTS_FILE)
    for trust in (False, True):  # the declarative path never unpickles, trusted or not
        with pytest.raises(FibroclassError, match=f"cannot load weights {WEIGHTS_FILE} of model"):
            load_classifier(folder, trust_pickle=trust)
    assert not marker.exists()


def test_spec_and_weights_win_over_a_pickle_in_the_same_folder(tmp_path):
    marker = tmp_path / "marker.txt"
    folder = _malicious_dir(tmp_path, marker)
    model = _model(3)
    model.spec.save(folder / SPEC_FILE)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    loaded = load_classifier(folder)
    x = torch.rand(3, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert not marker.exists()


def test_malicious_model_from_the_registry_is_refused(mlflow_uri, tmp_path):
    marker = tmp_path / "marker.txt"
    folder = _malicious_dir(tmp_path, marker)
    exp = ensure_experiment("shared-models")
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifacts(str(folder), "model")
    mlflow.register_model(f"runs:/{run.info.run_id}/model", "from-another-lab")
    for uri in (f"runs:/{run.info.run_id}/model", "models:/from-another-lab/1"):
        with pytest.raises(FibroclassError, match=f"model {uri} has no {SPEC_FILE}"):
            load_classifier(uri)
    assert not marker.exists()


def _plate(tmp_path: Path, kit_rows: int = 2) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd
    import tifffile

    images = tmp_path / "images" / "P1"
    images.mkdir(parents=True)
    rows = []
    for i, role in enumerate(["healthy"] * kit_rows + ["disease"] * kit_rows + ["treatment"]):
        well = f"B{i + 1:02d}"
        level = 8000 if role == "healthy" else 30000
        for w in (1, 2):
            tifffile.imwrite(images / f"P1_{well}_s1_w{w}.tif", np.full((32, 32), level, np.uint16))
        rows.append({"well": well, "role": role, "compound": "drugA" if role == "treatment" else "DMSO",
                     "concentration_uM": 1.0 if role == "treatment" else 0.0})  # fmt: skip
    platemap = tmp_path / "platemap.csv"
    pd.DataFrame(rows).to_csv(platemap, index=False)
    return tmp_path / "images", platemap


def test_score_cli_refuses_pickle_unless_trust_pickle(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    images, platemap = _plate(tmp_path)
    marker = tmp_path / "marker.txt"
    evil = _malicious_dir(tmp_path, marker)
    pickled = _pickled_model_dir(tmp_path, "trusted_pickle")
    argv = [
        "score",
        str(images),
        "--platemap",
        str(platemap),
        "--no-progress",
        "--device",
        "cpu",
        "--no-mlflow",
    ]
    capsys.readouterr()  # drop MLflow's warnings from writing the folders

    rc = main([*argv, "--model", str(evil), "--out", str(tmp_path / "out_evil")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert "--trust-pickle" in err and str(evil) in err
    assert not marker.exists() and not (tmp_path / "out_evil" / "wells.csv").exists()

    assert main([*argv, "--model", str(pickled), "--out", str(tmp_path / "refused")]) == 1
    assert "--trust-pickle" in capsys.readouterr().err
    out = tmp_path / "out_trusted"
    assert main([*argv, "--model", str(pickled), "--out", str(out), "--trust-pickle"]) == 0
    assert (out / "wells.csv").is_file() and (out / "fields.parquet").is_file()
    shutil.rmtree(out)
