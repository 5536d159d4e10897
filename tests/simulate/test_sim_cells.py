"""Cell geometry drawn per severity: the biology the renderer is asked to show."""

from __future__ import annotations

import numpy as np

from fibroclass.simulate.cells import sample_cells, superellipse_area


def cells_at(severity: float, **kw):
    return sample_cells(np.random.default_rng(0), 256, severity, n_expected=2000, **kw)


def axial_spread_deg(theta: np.ndarray) -> float:
    """Circular SD of axial angles (period pi), in degrees."""
    r = np.abs(np.mean(np.exp(2j * theta)))
    return float(np.degrees(np.sqrt(-2 * np.log(r)) / 2))


def test_healthy_cells_are_aligned_elongated_spindles():
    c = cells_at(0.0)
    assert 5.0 <= np.median(c.a / c.b) <= 8.0
    assert 6.0 <= axial_spread_deg(c.theta) <= 14.0
    assert np.median(c.nuc_a / c.nuc_b) > 1.8


def test_gof_cells_are_random_larger_and_rounder():
    h, g = cells_at(0.0), cells_at(1.0)
    assert 1.3 <= np.median(g.a / g.b) <= 2.0
    assert axial_spread_deg(g.theta) > 45.0
    area = lambda c: np.mean(c.a * c.b * superellipse_area(c.m))  # noqa: E731
    assert 1.5 <= area(g) / area(h) <= 2.0
    assert np.mean(g.cross_weight) > 0.5 and np.all(h.cross_weight == 0)
    assert np.median(g.nuc_a * g.nuc_b) > 1.5 * np.median(h.nuc_a * h.nuc_b)
    assert np.median(g.nuc_a / g.nuc_b) < 1.5
    assert np.mean(np.abs(g.harm_amp)) > 3 * np.mean(np.abs(h.harm_amp))  # irregular outlines


def test_severity_interpolates_every_property():
    steps = [cells_at(s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    for measure in (
        lambda c: -np.median(c.a / c.b),
        lambda c: axial_spread_deg(c.theta),
        lambda c: np.mean(c.a * c.b * superellipse_area(c.m)),
        lambda c: np.mean(c.cross_weight),
    ):
        values = [measure(c) for c in steps]
        assert np.all(np.diff(values) > 0), values


def test_toxicity_and_offtarget_leave_the_disease_axis_alone():
    base, tox, off = cells_at(1.0), cells_at(1.0, viability=0.2), cells_at(1.0, offtarget=1.0)
    assert np.mean(tox.pyknotic) > 0.4 > np.mean(base.pyknotic)
    assert np.mean(off.nuc_lobes > 1) > 0.5 and np.all(base.nuc_lobes == 1)
    assert np.mean(off.n_puncta) > 10 and np.all(base.n_puncta == 0)
    # Off-target keeps the shape distribution of its severity.
    assert np.median(off.a / off.b) == np.median(base.a / base.b)
