"""Temperature scaling of binary logits (numpy/scipy): ``p = sigmoid(logit / T)``.

Fit T on a held-out (validation) set, apply it to new scores; T > 1 softens an overconfident model,
T < 1 sharpens an underconfident one. Ranking (AUROC) is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from fibroclass.errors import FibroclassError
from fibroclass.evaluation.metrics import expected_calibration_error

T_BOUNDS = (0.05, 20.0)
PRIOR_SD = 1.0  # prior sd of log T when calibrating a trained model (`calibration_summary`)


def prob_to_logit(p: Sequence[float] | np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Logits of probabilities, clipped to [eps, 1 - eps] so that 0 and 1 stay finite."""
    arr = np.asarray(p, dtype=float)
    if np.isnan(arr).any() or (arr < 0).any() or (arr > 1).any():
        raise FibroclassError("probabilities must be finite and in [0, 1]")
    return logit(np.clip(arr, eps, 1 - eps))


def binary_nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels `y` under ``sigmoid(logits / temperature)`` (stable)."""
    s = np.asarray(logits, dtype=float) / temperature
    return float(np.mean(np.logaddexp(0.0, s) - np.asarray(y, dtype=float) * s))


def fit_temperature(
    logits: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    bounds: tuple[float, float] = T_BOUNDS,
    prior_sd: float | None = None,
) -> float:
    """Temperature T in `bounds` minimising the NLL of ``sigmoid(logits / T)`` (searched in log T).

    With `prior_sd`, T is the MAP estimate under a normal prior on log T centred at 0 (T = 1) with that
    standard deviation: the NLL (a mean over the n fields) gets ``(log T)^2 / (2 prior_sd^2 n)`` added.
    Separable validation fields (common with one donor per class) then give a finite T near 1 instead
    of the lower bound, while clear over- or underconfidence still moves T.
    """
    z = np.asarray(logits, dtype=float).ravel()
    y_arr = np.asarray(y, dtype=float).ravel()
    if z.shape != y_arr.shape or z.size == 0:
        raise FibroclassError(
            f"logits ({z.size}) and labels ({y_arr.size}) must be non-empty and equal length"
        )
    if not np.isfinite(z).all():
        raise FibroclassError("logits must be finite")
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise FibroclassError("labels must be 0 (healthy) or 1 (disease)")
    if np.unique(y_arr).size < 2:
        raise FibroclassError("temperature fitting needs both healthy (0) and disease (1) labels")
    lo, hi = bounds
    if not 0 < lo < hi:
        raise FibroclassError(f"temperature bounds must satisfy 0 < low < high, got {bounds}")
    if prior_sd is not None and not prior_sd > 0:
        raise FibroclassError(f"prior_sd must be > 0, got {prior_sd}")
    weight = 0.0 if prior_sd is None else 1.0 / (2.0 * prior_sd**2 * z.size)
    res = minimize_scalar(
        lambda log_t: binary_nll(z, y_arr, float(np.exp(log_t))) + weight * log_t**2,
        bounds=(np.log(lo), np.log(hi)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.clip(np.exp(res.x), lo, hi))


def apply_temperature(logits: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logits / temperature)``."""
    if not temperature > 0:
        raise FibroclassError(f"temperature must be > 0, got {temperature}")
    return expit(np.asarray(logits, dtype=float) / temperature)


@dataclass
class CalibrationSummary:
    """A temperature fitted on validation field logits and ECE before/after on validation and test."""

    temperature: float
    ece: dict[str, float]  # "val/ece_before", "val/ece_after", "test/ece_before", "test/ece_after"
    n_val: int
    n_test: int

    @property
    def metrics(self) -> dict[str, float]:
        """MLflow metrics: the ECEs and ``calibration/temperature``."""
        return {**self.ece, "calibration/temperature": self.temperature}


def calibration_summary(
    val_y: Sequence[float] | np.ndarray,
    val_logits: Sequence[float] | np.ndarray,
    test_y: Sequence[float] | np.ndarray | None = None,
    test_logits: Sequence[float] | np.ndarray | None = None,
    n_bins: int = 10,
    prior_sd: float | None = PRIOR_SD,
) -> CalibrationSummary:
    """Fit T on the validation fields (`fit_temperature`, MAP with `prior_sd`) and measure ECE before
    (T = 1) and after."""
    temperature = fit_temperature(val_logits, val_y, prior_sd=prior_sd)
    ece: dict[str, float] = {}
    sets = [("val", val_y, val_logits)]
    if test_y is not None and test_logits is not None and len(test_y):
        sets.append(("test", test_y, test_logits))
    for name, y, z in sets:
        ece[f"{name}/ece_before"] = expected_calibration_error(y, apply_temperature(z, 1.0), n_bins)
        ece[f"{name}/ece_after"] = expected_calibration_error(y, apply_temperature(z, temperature), n_bins)
    n_test = len(test_y) if test_y is not None and len(sets) > 1 else 0
    return CalibrationSummary(temperature, ece, n_val=len(val_y), n_test=n_test)
