"""Temperature scaling fitted on one half of a synthetic set, judged on the other half."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from fibroclass.errors import FibroclassError
from fibroclass.evaluation import calibration as cal
from fibroclass.evaluation.metrics import auroc, expected_calibration_error


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True logits and labels drawn from them, so sigmoid(true logit) is perfectly calibrated."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.uniform(size=n) < expit(z)).astype(int)
    return z, y


def test_temperature_fixes_overconfident_logits_on_held_out_data() -> None:
    z_fit, y_fit = _synthetic(3000, 0)
    z_test, y_test = _synthetic(3000, 1)
    scale = 4.0  # the "model" reports 4x the true logit: overconfident
    t = cal.fit_temperature(scale * z_fit, y_fit)
    assert t == pytest.approx(scale, rel=0.15)
    before = expit(scale * z_test)
    after = cal.apply_temperature(scale * z_test, t)
    ece_before = expected_calibration_error(y_test, before)
    ece_after = expected_calibration_error(y_test, after)
    assert ece_after < ece_before / 2
    assert ece_after < 0.04
    assert cal.binary_nll(scale * z_test, y_test, t) < cal.binary_nll(scale * z_test, y_test)
    assert auroc(y_test, after) == pytest.approx(auroc(y_test, before))  # ranking unchanged


def test_underconfident_logits_get_temperature_below_one() -> None:
    z, y = _synthetic(3000, 2)
    assert cal.fit_temperature(0.5 * z, y) == pytest.approx(0.5, rel=0.15)


def test_separable_data_hits_the_lower_bound() -> None:
    z = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    y = np.array([0, 0, 0, 1, 1, 1])
    t = cal.fit_temperature(z, y)
    assert t == pytest.approx(cal.T_BOUNDS[0], rel=0.01)


def test_prob_to_logit_roundtrip_and_clipping() -> None:
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    z = cal.prob_to_logit(p)
    assert np.isfinite(z).all()
    assert cal.apply_temperature(z, 1.0)[1:4] == pytest.approx(p[1:4])


def test_bad_inputs_raise() -> None:
    with pytest.raises(FibroclassError, match="both"):
        cal.fit_temperature([1.0, 2.0], [1, 1])
    with pytest.raises(FibroclassError, match="equal length"):
        cal.fit_temperature([1.0, 2.0], [1])
    with pytest.raises(FibroclassError, match="finite"):
        cal.fit_temperature([np.inf, 2.0], [0, 1])
    with pytest.raises(FibroclassError, match="> 0"):
        cal.apply_temperature([1.0], 0.0)
