"""Simulator test fixtures: small plate sets written once per session."""

from __future__ import annotations

import pytest

from fibroclass.simulate import simulate_screen, simulate_training_set


@pytest.fixture(scope="session")
def train_set(tmp_path_factory):
    """A small ImageXpress-named training set (64 px, 2 fields per well)."""
    return simulate_training_set(tmp_path_factory.mktemp("sim") / "train", seed=3, size=64, fields=2)


@pytest.fixture(scope="session")
def screen_set(tmp_path_factory):
    """A small 96-well ImageXpress-named screen (64 px, 1 field per well)."""
    return simulate_screen(tmp_path_factory.mktemp("sim") / "screen", seed=5, size=64, fields=1)
