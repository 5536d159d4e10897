"""Plate layouts, donors, compound pharmacology and per-well truth (no pixels)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from fibroclass import schema
from fibroclass.errors import FibroclassError
from fibroclass.simulate import ArtefactRates, dilution_series, hill, library
from fibroclass.simulate import compounds as cpd
from fibroclass.simulate import plates as pl
from fibroclass.simulate.seeding import rng_for

DOSES = dilution_series()


def test_dilution_series_is_8_points_3_fold_from_10_uM():
    assert len(DOSES) == 8 and DOSES[0] == 10.0
    assert np.allclose(np.array(DOSES[:-1]) / np.array(DOSES[1:]), 3.0)


def test_hill_is_half_at_ec50_and_monotone():
    assert hill(0.0, 0.2, 1.3) == 0.0
    assert hill(0.2, 0.2, 1.3) == pytest.approx(0.5)
    assert np.all(np.diff(hill(np.array(DOSES[::-1]), 0.2, 1.3)) > 0)
    assert hill(5.0, math.nan, 1.0) == 0.0


@pytest.mark.parametrize("plate_format", [96, 384])
def test_primary_ec50s_lie_inside_the_tested_range(plate_format):
    for c in library(plate_format):
        primary = {
            cpd.RESCUE: c.ec50_uM,
            cpd.TOXIC: c.tox_ec50_uM,
            cpd.OFF_TARGET: c.offtarget_ec50_uM,
        }.get(c.kind)
        if c.kind == cpd.INERT:
            assert math.isnan(c.ec50_uM) and math.isnan(c.tox_ec50_uM) and math.isnan(c.offtarget_ec50_uM)
        else:
            assert pl.in_tested_range(primary, DOSES, margin=2), c.name


@pytest.mark.parametrize("plate_format", [96, 384])
def test_library_covers_every_kind_and_graded_jak_potency(plate_format):
    lib = {c.name: c for c in library(plate_format)}
    assert set(Counter(c.kind for c in lib.values())) == set(cpd.KINDS)
    assert lib["ruxolitinib"].ec50_uM < lib["tofacitinib"].ec50_uM
    assert sum(c.kind == cpd.RESCUE for c in lib.values()) >= 2


@pytest.mark.parametrize("plate_format, ctrl_cols", [(96, {1, 12}), (384, {1, 2, 23, 24})])
def test_screen_layout(plate_format, ctrl_cols):
    specs = pl.screen_layout(plate_format, DOSES)
    rows, cols = pl.PLATE_SHAPES[plate_format]
    assert len({s.well for s in specs}) == len(specs) == rows * cols
    roles = Counter(s.role for s in specs)
    assert (
        roles[schema.ROLE_HEALTHY] >= 6
        and roles[schema.ROLE_DISEASE] >= 6
        and roles[schema.ROLE_REFERENCE] >= 4
    )
    for s in specs:
        col = pl.parse_well(s.well)[1] + 1
        assert (s.role != schema.ROLE_TREATMENT) == (col in ctrl_cols), s
        assert s.genotype == (pl.HEALTHY if s.role == schema.ROLE_HEALTHY else pl.GOF)
        if s.role == schema.ROLE_REFERENCE:
            assert (s.compound, s.concentration_uM) == ("ruxolitinib", 1.0)
        elif s.role != schema.ROLE_TREATMENT:
            assert (s.compound, s.concentration_uM) == (cpd.VEHICLE, 0.0)
    treated = [s for s in specs if s.role == schema.ROLE_TREATMENT]
    assert {s.compound for s in treated} == {c.name for c in library(plate_format)}
    for name in {s.compound for s in treated}:
        per_dose = Counter(s.concentration_uM for s in treated if s.compound == name)
        assert sorted(per_dose, reverse=True) == DOSES and set(per_dose.values()) == {2}


def test_donor_nuisance_is_paired_across_classes_and_severity_is_not():
    for i in range(1, 5):
        hd, gof = pl.make_donor(0, pl.HEALTHY, i), pl.make_donor(0, pl.GOF, i)
        assert (hd.name, gof.name) == (f"HD{i}", f"GoF{i}")
        assert (hd.density, hd.cell_scale, hd.brightness) == (gof.density, gof.cell_scale, gof.brightness)
        assert 0.0 <= hd.severity <= 0.15 and 0.85 <= gof.severity <= 1.0
    assert len({pl.make_donor(0, pl.HEALTHY, i).brightness for i in range(1, 5)}) == 4
    assert pl.make_donor(0, pl.GOF, 1) == pl.make_donor(0, pl.GOF, 1)
    assert pl.make_donor(1, pl.GOF, 1) != pl.make_donor(0, pl.GOF, 1)


def test_training_layout_puts_every_donor_on_every_plate_at_varying_positions():
    donors = [pl.make_donor(0, g, i) for g in (pl.HEALTHY, pl.GOF) for i in range(1, 5)]
    layouts = {p: pl.training_layout(0, p, donors, 3) for p in ("TRAIN01", "TRAIN02")}
    for layout in layouts.values():
        assert Counter(d.name for _, d in layout) == {d.name: 3 for d in donors}
        assert len({w for w, _ in layout}) == 24
    assert layouts["TRAIN01"] != layouts["TRAIN02"]
    # Donors are not confined to blocks of rows: healthy wells span most rows.
    healthy_rows = {w[0] for w, d in layouts["TRAIN01"] if d.genotype == pl.HEALTHY}
    assert len(healthy_rows) >= 4
    with pytest.raises(FibroclassError, match="do not fit"):
        pl.training_layout(0, "TRAIN01", donors, 13)


def test_well_truth_follows_the_compound():
    gof = pl.make_donor(0, pl.GOF, 1)
    rng = np.random.default_rng(0)

    def truth(name: str, conc: float) -> dict:
        return pl.well_truth(pl.WellSpec("B02", schema.ROLE_TREATMENT, name, conc), gof, rng)

    assert truth("ruxolitinib", 10.0)["severity"] < 0.15
    assert truth("ruxolitinib", DOSES[-1])["severity"] > 0.8
    for name, conc in (("mannitol", 10.0), ("staurosporine", 10.0), ("cytochalasinD", 10.0)):
        assert truth(name, conc)["severity"] == pytest.approx(gof.severity, abs=0.15)
    assert truth("staurosporine", 10.0)["viability"] < 0.05
    assert truth("staurosporine", DOSES[-1])["viability"] > 0.95
    assert truth("cytochalasinD", 10.0)[schema.OFFTARGET] > 0.9
    assert truth("mannitol", 10.0) | {"severity": 0} == {
        "severity": 0,
        "viability": 1.0,
        schema.OFFTARGET: 0.0,
    }


def test_artefact_rates_are_honoured_and_validated():
    rng = rng_for(0, "rates")
    rates = ArtefactRates(blur=0.2, empty=0.1, debris=0.05)
    freq = Counter(rates.choose(rng) for _ in range(20000))
    assert freq["blur"] / 20000 == pytest.approx(0.2, abs=0.02)
    assert freq["empty"] / 20000 == pytest.approx(0.1, abs=0.015)
    assert freq["debris"] / 20000 == pytest.approx(0.05, abs=0.01)
    assert Counter(ArtefactRates(0, 0, 0).choose(rng) for _ in range(100)) == {"none": 100}
    with pytest.raises(FibroclassError):
        ArtefactRates(blur=0.7, empty=0.5)


def test_rng_for_depends_only_on_its_keys():
    a = rng_for(1, "P1", "A01", 2).random(3)
    assert np.array_equal(a, rng_for(1, "P1", "A01", 2).random(3))
    assert not np.array_equal(a, rng_for(1, "P1", "A01", 3).random(3))
    assert not np.array_equal(a, rng_for(2, "P1", "A01", 2).random(3))
