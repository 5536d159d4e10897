"""Robustness fixtures: a real tiny FibroClassifier, the clean screen scored once, a fresh screen to damage."""

from __future__ import annotations

import pytest
from robust_kit import PlateFiles, assert_rest_scored, make_screen, probe_model, run

from fibroclass.models.classifier import FibroClassifier
from fibroclass.scoring.outputs import ScoreResult


@pytest.fixture(scope="session")
def model() -> FibroClassifier:
    """`robust_kit.probe_model`: a real FibroClassifier with a head fitted on the control fields."""
    return probe_model()


@pytest.fixture(scope="session")
def clean(tmp_path_factory, model) -> ScoreResult:
    """The undamaged one-plate screen, scored once per session."""
    base = tmp_path_factory.mktemp("clean")
    return run(make_screen(base), model, base / "out")


@pytest.fixture
def screen(tmp_path) -> PlateFiles:
    """A fresh copy of the one-plate screen to damage."""
    return make_screen(tmp_path)


@pytest.fixture
def assert_rest():
    """`robust_kit.assert_rest_scored`."""
    return assert_rest_scored
