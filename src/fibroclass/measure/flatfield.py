"""Flat-field (vignetting) surfaces: low-order 2-D polynomials fitted to per-field grid means (numpy only).

`data.illumination` estimates one per plate and channel from its control fields and divides fields by it.
"""

from __future__ import annotations

import numpy as np

TRIM = 0.05  # fraction of field ranks cut at each end when estimating the flat-field (debris, empty fields)


# -- flat-field surface ------------------------------------------------------------------------------
def _terms(degree: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]


def n_terms(degree: int) -> int:
    """Number of coefficients of a 2-D polynomial surface of total `degree`."""
    return len(_terms(degree))


def _design(yy: np.ndarray, xx: np.ndarray, degree: int) -> np.ndarray:
    return np.stack([(xx**i) * (yy**j) for i, j in _terms(degree)], axis=-1)


def _coords(n: int) -> np.ndarray:
    """Normalized [-1, 1] coordinates of the centres of n cells/pixels along one axis."""
    return (np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0


def evaluate_surface(coef: np.ndarray, degree: int, shape: tuple[int, int]) -> np.ndarray:
    """A polynomial surface (coefficients of `_terms(degree)`) on an (H, W) pixel grid, float32."""
    h, w = shape
    yy, xx = _coords(h)[:, None], _coords(w)[None, :]
    out = np.zeros((h, w), dtype=np.float64)
    for c, (i, j) in zip(coef, _terms(degree), strict=True):
        out += c * (xx**i) * (yy**j)
    return out.astype(np.float32)


def fit_surface(values: np.ndarray, degree: int, iterations: int = 3) -> np.ndarray:
    """Robust least-squares polynomial fit of a (g, g) grid (cells farther than 3 MADs are dropped)."""
    g_h, g_w = values.shape
    yy, xx = np.meshgrid(_coords(g_h), _coords(g_w), indexing="ij")
    a = _design(yy.ravel(), xx.ravel(), degree)
    v = values.ravel().astype(np.float64)
    keep = np.isfinite(v)
    coef = np.zeros(a.shape[1])
    for _ in range(iterations):
        coef, *_ = np.linalg.lstsq(a[keep], v[keep], rcond=None)
        resid = v - a @ coef
        mad = np.median(np.abs(resid[keep])) * 1.4826
        if mad <= 0:
            break
        keep = np.isfinite(v) & (np.abs(resid) <= 3 * mad)
    return coef


def grid_means(plane: np.ndarray, grid: int) -> np.ndarray:
    """Mean of each of grid x grid cells of an (H, W) plane (cells as equal as the size allows)."""
    h, w = plane.shape
    gh, gw = min(grid, h), min(grid, w)
    rows = np.linspace(0, h, gh + 1).astype(int)
    cols = np.linspace(0, w, gw + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(plane.astype(np.float64), rows[:-1], axis=0), cols[:-1], axis=1)
    counts = np.diff(rows)[:, None] * np.diff(cols)[None, :]
    return sums / counts


def estimate_flatfield(grids: np.ndarray, degree: int, trim: float = TRIM) -> tuple[np.ndarray, np.ndarray]:
    """Flat-field coefficients (C, terms) and dark levels (C,) from (n_fields, C, g, g) grid means.

    Per cell, the values of all fields sorted (ranks `trim` from either end dropped: debris, empty fields)
    are regressed on the cell-averaged sorted curve: with `x = d + F·s`, the slope is `F / mean(F)` whatever
    `d`, and the intercept is `d·(1 - slope)`.
    """
    n, n_c = grids.shape[:2]
    cut = int(n * trim) if n - 2 * int(n * trim) >= 3 else 0
    coefs, darks = [], []
    for c in range(n_c):
        shape = grids.shape[2:]
        ranked = np.sort(grids[:, c].reshape(n, -1).astype(np.float64), axis=0)[cut : n - cut]
        ref = ranked.mean(axis=1)
        ref_c = ref - ref.mean()
        if not np.isfinite(ranked).all() or float(ref_c @ ref_c) <= 0:
            coef = np.zeros(len(_terms(degree)))
            coef[0] = 1.0
            coefs.append(coef)
            darks.append(0.0)
            continue
        slopes = ref_c @ (ranked - ranked.mean(axis=0)) / float(ref_c @ ref_c)
        coef = fit_surface(slopes.reshape(shape), degree)
        surface = evaluate_surface(coef, degree, shape).astype(np.float64).ravel()
        coef = coef / surface.mean()
        flat = surface / surface.mean()
        away = 1.0 - flat
        dark = 0.0
        if float(away @ away) / away.size > 0.05**2:  # enough fall-off to separate the offset from the signal
            intercepts = ranked.mean(axis=0) - flat * ref.mean()
            dark = float(np.clip((intercepts @ away) / (away @ away), 0.0, ranked[0].min()))
        coefs.append(coef)
        darks.append(dark)
    return np.stack(coefs), np.asarray(darks)
