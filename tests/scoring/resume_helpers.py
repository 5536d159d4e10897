"""Helpers of the resume / distributed scoring tests: plates, a registered model, CLI subprocesses, and
comparison of two scoring output folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

FIELD_FILES = ("fields.parquet", "wells.csv", "compounds.csv")


def plate_layout(plate: str, n_wells: int, healthy: int = 8000, disease: int = 30000) -> list[dict]:
    """3 healthy + 3 disease control wells, then treatment wells with a range of actin levels."""
    names = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)][:n_wells]
    wells = []
    for i, name in enumerate(names):
        role = "healthy" if i < 3 else "disease" if i < 6 else "treatment"
        level = {"healthy": healthy, "disease": disease}.get(role, disease - (i % 7) * 2500)
        conc = 0.0 if role != "treatment" else [0.1, 1.0, 10.0][i % 3]
        wells.append({"plate": plate, "well": name, "role": role, "level": level + 97 * (i % 5)})
        if role == "treatment":
            wells[-1].update(compound=f"cmpd{i % 4}", conc=conc)
    return wells


def register_tiny_model(mlflow_uri: str) -> str:
    """A FibroClassifier (tiny CNN, 16 px tiles) registered in the sqlite store; returns its URI."""
    import mlflow
    import torch

    from fibroclass.models.classifier import FibroClassifier
    from fibroclass.models.spec import ModelSpec
    from fibroclass.tracking.models import log_classifier

    torch.manual_seed(0)
    model = FibroClassifier(ModelSpec(backbone="tiny", crop_size=16, mean=[0.2, 0.1], std=[0.1, 0.1]))
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run():
        logged = log_classifier(model, alias="champion")
    return f"models:/{logged.registered_name}@champion"


def score_cmd(images: Path, platemap: Path, model_uri: str, out: Path, *extra: str) -> list[str]:
    """`python -m fibroclass.cli score ...` for a subprocess."""
    return [
        sys.executable, "-m", "fibroclass.cli", "score", str(images), "--platemap", str(platemap),
        "--model", model_uri, "--out", str(out), "--device", "cpu", "--no-progress", *extra,
    ]  # fmt: skip


def cli_env(mlflow_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=mlflow_uri,
        NO_ALBUMENTATIONS_UPDATE="1",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def run_cli(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def chunk_stamps(out: Path) -> list[Path]:
    return sorted((out / "parts").glob("*/chunk-*.json"))


def assert_same_outputs(a: Path, b: Path, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Two scoring folders hold the same results (float tolerance; run.json up to time and folder)."""
    fa, fb = pd.read_parquet(a / "fields.parquet"), pd.read_parquet(b / "fields.parquet")
    pd.testing.assert_frame_equal(fa, fb, rtol=rtol, atol=atol)
    for name in ("wells.csv", "compounds.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(a / name), pd.read_csv(b / name), rtol=rtol, atol=atol)
    for name in ("embeddings.npy", "well_embeddings.npy"):
        np.testing.assert_allclose(np.load(a / name), np.load(b / name), rtol=rtol, atol=atol, equal_nan=True)
    qa, qb = (json.loads((d / "plate_qc.json").read_text()) for d in (a, b))
    assert json.dumps(qa, sort_keys=True) == json.dumps(qb, sort_keys=True) or _close(qa, qb, rtol, atol)
    ra, rb = (json.loads((d / "run.json").read_text()) for d in (a, b))
    for r in (ra, rb):
        r.pop("created"), r.pop("out_dir", None)
    assert ra == rb


def _close(x: object, y: object, rtol: float, atol: float) -> bool:
    if isinstance(x, dict) and isinstance(y, dict):
        assert x.keys() == y.keys()
        return all(_close(x[k], y[k], rtol, atol) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        assert len(x) == len(y)
        return all(_close(u, v, rtol, atol) for u, v in zip(x, y, strict=True))
    if isinstance(x, float) or isinstance(y, float):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
        return True
    assert x == y
    return True


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """(mtime_ns, bytes) of every file under `folder` (to prove a re-run changed nothing)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
