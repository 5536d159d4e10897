"""Evaluation figures render to real PNG files from realistic inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from fibroclass.errors import FibroclassError
from fibroclass.evaluation import plots
from fibroclass.evaluation.calibration import apply_temperature, fit_temperature

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    donors = np.repeat([f"d{i}" for i in range(6)], 40)
    y = np.repeat([0, 1, 0, 1, 0, 1], 40)
    z = 1.2 * (2 * y - 1) + rng.normal(0, 1.2, y.size)
    return y, z, donors, rng.uniform(size=y.size)


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5000


def test_all_figures_write_pngs(tmp_path: Path) -> None:
    y, z, donors, _ = _data()
    p = expit(3 * z)  # overconfident model
    folds = np.where(np.isin(donors, ["d0", "d1", "d2"]), "A", "B")  # two folds holding both classes

    _assert_png(plots.save_figure(plots.plot_roc(y, p, folds=folds), tmp_path / "roc.png"))
    _assert_png(plots.save_figure(plots.plot_roc(y, p, folds=donors), tmp_path / "roc_lodo.png"))
    _assert_png(plots.save_figure(plots.plot_confusion(y, p), tmp_path / "confusion.png"))
    t = fit_temperature(3 * z, y)
    fig = plots.plot_reliability(y, p, apply_temperature(3 * z, t))
    _assert_png(plots.save_figure(fig, tmp_path / "sub" / "reliability.png"))
    coh = 0.7 - 0.3 * p + np.random.default_rng(1).normal(0, 0.05, p.size)
    coh[:3] = np.nan  # empty fields have no coherency
    fig = plots.plot_score_vs_coherency(coh, p, groups=np.where(y == 1, "GoF", "healthy"))
    _assert_png(plots.save_figure(fig, tmp_path / "coherency.png"))
    assert "ρ = -" in fig.axes[0].get_title()


def test_roc_figure_lists_skipped_single_class_folds() -> None:
    y, z, donors, _ = _data()
    fig = plots.plot_roc(y, expit(z), folds=donors)
    assert "skipped" in fig.axes[0].get_title()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 1 and labels[0].startswith("pooled")


def test_plot_inputs_are_checked() -> None:
    with pytest.raises(FibroclassError, match="differ in length"):
        plots.plot_score_vs_coherency([0.1, 0.2], [0.3])
    with pytest.raises(FibroclassError, match="folds"):
        plots.plot_roc([0, 1], [0.2, 0.8], folds=["a"])
