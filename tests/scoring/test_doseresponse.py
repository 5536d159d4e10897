"""4PL fits: known EC50/Hill recovered from noisy wells, CI covers the truth, out-of-range and flat cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fibroclass.errors import FibroclassError
from fibroclass.scoring.compounds.doseresponse import fit_4pl, fit_compounds, predict_4pl
from fibroclass.scoring.config import DoseResponseParams

DOSES = np.array([10.0 / 3**i for i in range(8)])  # the screen's 8-point 3-fold series from 10 µM


def wells(ec50: float, hill: float, top: float = 100.0, noise: float = 8.0, reps: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    conc = np.repeat(DOSES, reps)
    y = predict_4pl(conc, (0.0, top, math.log10(ec50), hill)) + rng.normal(0, noise, conc.size)
    return conc, y


@pytest.mark.parametrize(("ec50", "hill", "seed"), [(0.15, 1.2, 1), (0.8, 1.0, 2), (0.05, 2.0, 3)])
def test_recovers_known_ec50_and_hill(ec50: float, hill: float, seed: int) -> None:
    fit = fit_4pl(*wells(ec50, hill, seed=seed))
    assert fit.converged and not fit.flat and fit.ec50_qualifier == ""
    assert 0.67 < fit.ec50_uM / ec50 < 1.5
    assert fit.hill == pytest.approx(hill, rel=0.4)
    assert fit.ec50_ci_low_uM <= ec50 <= fit.ec50_ci_high_uM
    assert fit.ec50_ci_low_uM < fit.ec50_uM < fit.ec50_ci_high_uM
    assert fit.emax_pct == pytest.approx(100, abs=15)
    assert fit.r2 > 0.8
    assert fit.boot_params.shape == (200, 4)


def test_partial_efficacy_keeps_its_plateau() -> None:
    fit = fit_4pl(*wells(0.3, 1.2, top=55.0, noise=5.0, seed=4))
    assert fit.emax_pct == pytest.approx(55, abs=10)
    assert 0.5 < fit.ec50_uM / 0.3 < 2


def test_ci_coverage_is_near_nominal() -> None:
    hits, n = 0, 12
    for seed in range(n):
        ec50 = 10 ** np.random.default_rng(100 + seed).uniform(-1.5, 0)
        fit = fit_4pl(*wells(ec50, 1.3, noise=10, seed=100 + seed), {"n_boot": 100})
        hits += fit.ec50_ci_low_uM <= ec50 <= fit.ec50_ci_high_uM
    assert hits / n >= 0.75


def test_potency_order_is_kept() -> None:
    ec50s = [fit_4pl(*wells(e, 1.2, seed=5)).ec50_uM for e in (0.06, 0.3, 1.5)]
    assert ec50s == sorted(ec50s)


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_ec50_above_range_is_reported_as_bound(seed: int) -> None:
    """EC50 = 2x the top dose: the curve is still rising at 10 µM, so the EC50 is '> 10 µM'."""
    fit = fit_4pl(*wells(20.0, 1.5, noise=5.0, seed=seed), {"n_boot": 50})
    assert fit.ec50_qualifier == ">" and fit.ec50_uM == pytest.approx(DOSES.max())
    assert math.isnan(fit.ec50_ci_low_uM) and fit.ec50_label() == "> 10 µM"
    assert fit.emax_pct < 50  # observed at the top dose, not an extrapolated plateau


def test_ec50_below_range_is_reported_as_bound() -> None:
    fit = fit_4pl(*wells(1e-4, 1.5, noise=5.0, seed=7), {"n_boot": 50})
    assert fit.ec50_qualifier == "<" and fit.ec50_uM == pytest.approx(DOSES.min())
    assert fit.emax_pct == pytest.approx(100, abs=10)


@pytest.mark.parametrize("seed", range(5))
def test_flat_response_has_no_ec50(seed: int) -> None:
    conc = np.repeat(DOSES, 3)
    y = np.random.default_rng(seed).normal(0, 10, conc.size)
    fit = fit_4pl(conc, y)
    assert fit.flat and math.isnan(fit.ec50_uM) and fit.ec50_label() == "n/a"


def test_too_few_doses_and_bad_input() -> None:
    fit = fit_4pl([0.1, 1.0, 10.0, 0.0], [0.0, 50.0, 100.0, 0.0])
    assert not fit.converged and "doses" in fit.message and fit.n_doses == 3
    with pytest.raises(FibroclassError, match="concentrations"):
        fit_4pl([1.0, 2.0], [1.0])
    with pytest.raises(FibroclassError, match="dose_response"):
        DoseResponseParams.from_dict({"nboot": 5})


def test_fit_compounds_uses_viable_doses_only() -> None:
    conc, y = wells(0.3, 1.2, seed=8)
    df = pd.DataFrame({"compound": "A", "concentration_uM": conc, "rescue_pct": y, "role": "treatment"})
    df["viability_pct"] = np.where(df["concentration_uM"] >= 3.0, 20.0, 95.0)
    df.loc[df["concentration_uM"] >= 3.0, "rescue_pct"] = -80.0  # dead wells score oddly
    vehicle = pd.DataFrame(
        {"compound": ["DMSO"], "concentration_uM": [0.0], "rescue_pct": [0.0], "role": ["disease"]}
    )
    fits = fit_compounds(pd.concat([df, vehicle], ignore_index=True), {"n_boot": 50})
    assert list(fits) == ["A"]
    assert fits["A"].n_doses == 6 and fits["A"].conc_max_uM < 3.0
    assert 0.5 < fits["A"].ec50_uM / 0.3 < 2
