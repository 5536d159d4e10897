"""Shared test setup: one torch thread, no network calls, each test's MLflow store in its tmp dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Shared helpers in tests/data importable by name: `import tinyplate` (generated plates), `import browser_kit`
# (headless Chromium for the report tests).
sys.path.insert(0, str(Path(__file__).parent / "data"))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import pytest  # noqa: E402

try:
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:  # io/evaluation tests must not need torch
    pass


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    """A real embedded MLflow sqlite store in tmp, with the working directory moved there."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    # Pin this process's tracking AND registry URIs too: an earlier test's in-process
    # `mlflow.set_tracking_uri` would otherwise leave registry look-ups pointing at its store.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
