"""`inference.num_workers: auto` (the default): one reader per CPU but the model's, capped by memory."""

from __future__ import annotations

import pytest

from fibroclass.errors import FibroclassError
from fibroclass.scoring.config import ScoreConfig, load_score_config
from fibroclass.scoring.engines import local


def test_auto_is_the_default_everywhere_and_numbers_still_work():
    assert ScoreConfig().num_workers == "auto"
    assert load_score_config("default").num_workers == "auto"  # the shipped YAML says so too
    assert ScoreConfig().with_overrides(num_workers="3").num_workers == 3  # as the CLI passes it
    assert ScoreConfig().with_overrides(num_workers="AUTO").num_workers == "auto"
    with pytest.raises(FibroclassError, match="'num_workers' must be a number or auto, got 'many'"):
        ScoreConfig(num_workers="many")
    with pytest.raises(FibroclassError, match="num_workers must be >= 0"):
        ScoreConfig(num_workers=-1)


@pytest.mark.parametrize(
    ("cpus", "memory_gib", "expected"),
    [(2, 20, 1), (16, 64, 15), (16, 4.5, 4), (1, 20, 0), (8, None, 7)],
)
def test_auto_workers_use_the_cpus_capped_by_memory(monkeypatch, cpus, memory_gib, expected):
    monkeypatch.setattr(local, "usable_cpus", lambda: cpus)
    memory = None if memory_gib is None else int(memory_gib * local.WORKER_MEMORY)
    monkeypatch.setattr(local, "available_memory", lambda: memory)
    assert local.resolve_num_workers("auto") == expected
    assert local.resolve_num_workers(3) == 3


def test_this_machine_is_measured():
    assert local.usable_cpus() >= 1
    assert local.available_memory() is None or local.available_memory() > 0
    assert 0 <= local.auto_num_workers() < local.usable_cpus()
