"""Four-parameter logistic dose response fitted in log10 dose, with a bootstrap CI on the EC50.

Model (x in µM, increasing when top > bottom):
    y = bottom + (top − bottom) / (1 + 10^(hill · (log10 EC50 − log10 x)))
so `bottom` is the response without drug and `top` the plateau at saturating dose. The fit uses bounded
least squares (scipy `least_squares`, trf) from several starts. The EC50 CI comes from a bootstrap over
wells (wells resampled with replacement within each dose, fixed seed). An EC50 beyond the tested range
is not extrapolated: it is reported as the range bound with qualifier `>` or `<`. A response without a
real trend (amplitude below `flat_min_amplitude` or no better than a constant, F-test) has no EC50.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import least_squares

from fibroclass.errors import FibroclassError
from fibroclass.schema import COMPOUND, CONC, RESCUE_PCT, ROLE, ROLE_REFERENCE, ROLE_TREATMENT, VIABILITY_PCT
from fibroclass.scoring.config import DoseResponseParams


def _params(config: DoseResponseParams | Mapping | None) -> DoseResponseParams:
    return config if isinstance(config, DoseResponseParams) else DoseResponseParams.from_dict(config)


@dataclass
class Fit4PL:
    """Result of `fit_4pl`. EC50s in µM; `ec50_qualifier` is '', '<' or '>' (then EC50 = range bound)."""

    ec50_uM: float = math.nan
    ec50_ci_low_uM: float = math.nan
    ec50_ci_high_uM: float = math.nan
    emax_pct: float = math.nan
    hill: float = math.nan
    bottom: float = math.nan
    top: float = math.nan
    ec50_qualifier: str = ""
    converged: bool = False
    r2: float = math.nan
    flat: bool = False
    n_wells: int = 0
    n_doses: int = 0
    conc_min_uM: float = math.nan
    conc_max_uM: float = math.nan
    log10_ec50_fit: float = math.nan  # raw fitted value (may lie outside the range): for drawing only
    message: str = ""
    boot_params: np.ndarray = field(default_factory=lambda: np.empty((0, 4)), repr=False)

    @property
    def params(self) -> tuple[float, float, float, float]:
        """(bottom, top, log10 EC50, hill) of the fitted curve."""
        return self.bottom, self.top, self.log10_ec50_fit, self.hill

    @property
    def has_curve(self) -> bool:
        return self.converged and all(math.isfinite(v) for v in self.params)

    def ec50_label(self) -> str:
        """Human-readable EC50, e.g. '1.2 µM', '> 10 µM' or 'n/a'."""
        if not math.isfinite(self.ec50_uM):
            return "n/a"
        prefix = f"{self.ec50_qualifier} " if self.ec50_qualifier else ""
        return f"{prefix}{self.ec50_uM:.3g} µM"

    def to_dict(self) -> dict:
        """Scalar fields (no bootstrap draws), e.g. for compounds.csv."""
        d = asdict(self)
        d.pop("boot_params")
        return d


def _curve(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    bottom, top, logec50, hill = p
    return bottom + (top - bottom) / (1.0 + np.power(10.0, np.clip(hill * (logec50 - x), -30, 30)))


def _jac(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    bottom, top, logec50, hill = p
    e = np.power(10.0, np.clip(hill * (logec50 - x), -30, 30))
    s = 1.0 / (1.0 + e)
    ds = -(s**2) * e * np.log(10.0)  # d s / d (hill·(logec50 − x))
    return np.column_stack([1.0 - s, s, (top - bottom) * ds * hill, (top - bottom) * ds * (logec50 - x)])


def predict_4pl(conc_uM: np.ndarray | float, fit: Fit4PL | tuple | np.ndarray) -> np.ndarray:
    """Model response at `conc_uM` for a `Fit4PL` or (bottom, top, log10 EC50, hill)."""
    p = np.asarray(fit.params if isinstance(fit, Fit4PL) else fit, dtype=float)
    x = np.log10(np.asarray(conc_uM, dtype=float))
    return _curve(p, x)


def _least_squares(
    x, y, p0, lo, hi, prior: tuple[float, float] | None = None
) -> tuple[np.ndarray, float, bool]:
    """Bounded fit; `prior` = (reference top, weight) adds the residual weight·(top − reference).
    Returns (params, SSE of the data residuals, success)."""
    p0 = np.clip(p0, lo + 1e-9, hi - 1e-9)
    n = len(y)
    if prior is None:
        fun, jac = (lambda q: _curve(q, x) - y), (lambda q: _jac(q, x))
    else:
        ref, w = prior
        row = np.array([[0.0, w, 0.0, 0.0]])
        fun = lambda q: np.append(_curve(q, x) - y, w * (q[1] - ref))  # noqa: E731
        jac = lambda q: np.vstack([_jac(q, x), row])  # noqa: E731
    res = least_squares(fun, p0, jac=jac, bounds=(lo, hi), method="trf", x_scale="jac", ftol=1e-7, xtol=1e-7)
    return res.x, float(np.sum(res.fun[:n] ** 2)), bool(res.success)


def _best_fit(x, y, lo, hi, prior: tuple[float, float] | None = None) -> tuple[np.ndarray, float, bool]:
    """Multi-start fit over a few EC50 positions and Hill slopes (lowest penalized cost wins)."""
    doses = np.unique(x)
    first, last = y[x == doses[0]].mean(), y[x == doses[-1]].mean()
    best, best_cost = (np.clip(np.array([first, last, doses.mean(), 1.0]), lo, hi), np.inf, False), np.inf
    for logec50 in np.linspace(doses[0], doses[-1], 4):
        for hill in (1.0, 2.5):
            p, sse, ok = _least_squares(x, y, np.array([first, last, logec50, hill]), lo, hi, prior)
            cost = sse + (0.0 if prior is None else (prior[1] * (p[1] - prior[0])) ** 2)
            if cost < best_cost:
                best, best_cost = (p, sse, ok), cost
    return best


def _noise_sd(x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Replicate SD pooled over doses (or, without replicates, the residual SD of an unpenalized fit)."""
    ss, dof = 0.0, 0
    for d in np.unique(x):
        v = y[x == d]
        if len(v) > 1:
            ss += float(np.sum((v - v.mean()) ** 2))
            dof += len(v) - 1
    if dof == 0:
        ss, dof = _best_fit(x, y, lo, hi)[1], max(len(y) - 4, 1)
    return max(math.sqrt(ss / dof), 1.0)


def _f_test_p(sse_small: float, sse_big: float, extra: int, dof: int) -> float:
    """p-value that the bigger model (``extra`` more parameters, ``dof`` residual dof) fits better."""
    if dof <= 0 or sse_small <= sse_big:
        return 1.0
    f_stat = ((sse_small - sse_big) / extra) / max(sse_big / dof, 1e-12)
    return float(stats.f.sf(f_stat, extra, dof))


def _resample_within_doses(groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])


def fit_4pl(
    conc_uM: np.ndarray, response: np.ndarray, config: DoseResponseParams | Mapping | None = None
) -> Fit4PL:
    """Fit the 4PL to per-well (concentration µM, response) pairs; concentrations ≤ 0 are ignored."""
    p = _params(config)
    conc = np.asarray(conc_uM, dtype=float)
    y = np.asarray(response, dtype=float)
    if conc.shape != y.shape:
        raise FibroclassError(f"dose response: {conc.shape} concentrations but {y.shape} responses")
    keep = np.isfinite(conc) & np.isfinite(y) & (conc > 0)
    conc, y = conc[keep], y[keep]
    doses = np.unique(conc)
    fit = Fit4PL(n_wells=int(len(y)), n_doses=int(len(doses)))
    if len(doses) == 0:
        fit.message = "no wells with a positive concentration and a finite response"
        return fit
    fit.conc_min_uM, fit.conc_max_uM = float(doses[0]), float(doses[-1])
    if len(doses) < p.min_doses:
        fit.message = f"{len(doses)} doses < {p.min_doses} needed for a 4PL fit"
        return fit

    x = np.log10(conc)
    xmin, xmax = float(x.min()), float(x.max())
    lo = np.array([p.bottom_min, p.top_min, xmin - p.ec50_margin_decades, p.hill_min])
    hi = np.array([p.bottom_max, p.top_max, xmax + p.ec50_margin_decades, p.hill_max])
    prior = None
    if p.top_reference is not None and p.top_prior_sd:
        # The plateau is pulled toward the full reference effect with a soft prior (SD top_prior_sd):
        # a plateau seen in the data wins, an incomplete curve (still rising at the top dose) does not
        # invent a low plateau inside the range, so its EC50 lands beyond the range.
        prior = (p.top_reference, _noise_sd(x, y, lo, hi) / p.top_prior_sd)
    params, sse, ok = _best_fit(x, y, lo, hi, prior)
    bottom, top, logec50, hill = (float(v) for v in params)
    sst = float(np.sum((y - y.mean()) ** 2))
    fit.r2 = 1.0 - sse / sst if sst > 0 else math.nan
    fit.converged = ok
    fit.bottom, fit.top, fit.hill, fit.log10_ec50_fit = bottom, top, hill, logec50

    # Drug effect = largest departure from the no-drug response within the tested range; "no effect"
    # is a constant held within the bottom bounds (rescue is 0 at the disease controls by construction).
    effect = float(np.max(np.abs(_curve(params, np.array([xmin, xmax])) - bottom)))
    sse_null = float(np.sum((y - np.clip(y.mean(), p.bottom_min, p.bottom_max)) ** 2))
    p_trend = _f_test_p(sse_null, sse, 3, len(y) - 4)
    fit.flat = effect < p.flat_min_amplitude or p_trend > p.flat_p_value
    if fit.flat:
        fit.hill = math.nan  # no slope without a response; top/bottom stay for drawing the fit
        fit.emax_pct = float(np.mean(y[conc == doses[-1]]))
        fit.message = f"flat response (effect {effect:.1f} in range, trend p={p_trend:.2g}): no EC50"
        return fit

    if logec50 > xmax:
        fit.ec50_qualifier, fit.ec50_uM = ">", fit.conc_max_uM
        fit.emax_pct = float(_curve(params, np.array([xmax]))[0])  # observed, not the extrapolated plateau
    elif logec50 < xmin:
        fit.ec50_qualifier, fit.ec50_uM = "<", fit.conc_min_uM
        fit.emax_pct = top
    else:
        fit.ec50_uM = float(10.0**logec50)
        fit.emax_pct = top

    rng = np.random.default_rng(p.seed)
    groups = [np.flatnonzero(conc == d) for d in doses]
    draws = []
    for _ in range(p.n_boot):
        idx = _resample_within_doses(groups, rng)
        bp, _, _ = _least_squares(x[idx], y[idx], params, lo, hi, prior)
        draws.append(bp)
    fit.boot_params = np.array(draws) if draws else np.empty((0, 4))
    if fit.ec50_qualifier == "" and len(draws) >= 10:
        alpha = (1.0 - p.ci_level) / 2.0
        q = np.quantile(fit.boot_params[:, 2], [alpha, 1.0 - alpha])
        # Resampling m wells shrinks the spread by sqrt((m-1)/m): widen the interval to compensate.
        m = float(np.median([len(g) for g in groups]))
        if m >= 2:
            q = logec50 + (q - logec50) * math.sqrt(m / (m - 1.0))
        q = np.clip(q, xmin, xmax)  # never claim potency outside the tested range
        fit.ec50_ci_low_uM, fit.ec50_ci_high_uM = (float(10.0**v) for v in q)
    return fit


def compound_mask(wells: pd.DataFrame) -> pd.Series:
    """Default selection of dose-response wells: treatment/reference roles with a positive concentration."""
    for col in (ROLE, COMPOUND, CONC):
        if col not in wells:
            raise FibroclassError(f"wells table lacks column '{col}'")
    return wells[ROLE].isin([ROLE_TREATMENT, ROLE_REFERENCE]) & (pd.to_numeric(wells[CONC]) > 0)


def viable_dose_mask(wells: pd.DataFrame, viability_min_pct: float) -> pd.Series:
    """Wells at compound doses whose median viability (over replicate wells) is acceptable.

    Doses without a viability readout count as viable.
    """
    if VIABILITY_PCT not in wells:
        return pd.Series(True, index=wells.index)
    med = wells.groupby([COMPOUND, CONC])[VIABILITY_PCT].transform("median")
    return med.isna() | (med >= viability_min_pct)


def fit_compounds(
    wells: pd.DataFrame,
    config: DoseResponseParams | Mapping | None = None,
    response_col: str = RESCUE_PCT,
    mask: pd.Series | None = None,
) -> dict[str, Fit4PL]:
    """One 4PL per compound on its wells at viable doses (rescue only counts where cells survive)."""
    p = _params(config)
    if response_col not in wells:
        raise FibroclassError(f"wells table lacks column '{response_col}'")
    sel = wells[compound_mask(wells) if mask is None else mask]
    sel = sel[viable_dose_mask(sel, p.viability_min_pct)]
    return {
        str(name): fit_4pl(g[CONC].to_numpy(float), g[response_col].to_numpy(float), p)
        for name, g in sel.groupby(COMPOUND, sort=True)
    }
