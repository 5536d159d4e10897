"""OrientationJ's structure tensor, coherency and orientation (numpy/scipy; no torch).

Written from the definitions of the OrientationJ plugin for Fiji/ImageJ (Biomedical Imaging Group, EPFL;
`orientation/Gradient.java`, `CubicSpline.java`, `filters/Gaussian.java`, `StructureTensor.java`), at
the plugin's defaults, so that a field checked in Fiji (*Plugins > OrientationJ > Analysis*, local window
σ = 1 px, gradient "Cubic Spline") gives the same maps:

1. gradient: each row (gx) and each column (gy) is turned into cubic B-spline coefficients (gain 6,
   pole √3 − 2, mirror boundaries) and differentiated at the samples, g[x] = (c[x−1] − c[x+1]) / 2;
   the first and last sample of a row/column get 0. No smoothing across the other axis.
2. window: Jxx = W∗gx², Jxy = W∗gx·gy, Jyy = W∗gy² with the plugin's recursive "Gaussian": 9 cascaded
   symmetric first-order passes whose pole is designed for 3, so the kernel has variance 3σ² (effective
   s.d. √3·σ ≈ 1.73 px at σ = 1), whole-sample mirror boundaries. σ ≤ 0: no window.
3. energy E = Jxx + Jyy; coherency √((Jyy − Jxx)² + 4Jxy²) / (E + ε) with ε = 0.001 **absolute**;
   orientation ½·atan2(2Jxy, Jyy − Jxx): the direction of the structures, counter-clockwise on screen
   from the horizontal (x to the right, y up), in [−π/2, π/2] (horizontal 0, "/" +45°, vertical ±90°).

Intensity scale: like the plugin, pixel values are used as they are. Because ε is absolute, pass the
values Fiji shows for the file (0..255 for 8-bit, 0..4095 / 0..65535 for 12/16-bit counts), not an image
rescaled to [0, 1]: on [0, 1] data faint structure loses coherency to ε.

The window is computed as one 9-fold causal and one 9-fold anticausal recursive filter on the
mirror-extended rows (identical to the plugin's pass-by-pass recursion except for its truncated
boundary initialisation, a ~1e-5 relative difference within a few window widths of the border).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter, sosfilt

from fibroclass.errors import FibroclassError

EPSILON = 1e-3  # OrientationJ's "smallest denominator" (absolute)
GRADIENTS = ("cubic_spline", "finite_difference")
_SPLINE_POLE = math.sqrt(3.0) - 2.0
_SPLINE_GAIN = 6.0
_SPLINE_TERMS = int(math.ceil(math.log(1e-6) / math.log(abs(_SPLINE_POLE))))  # 11, as CubicSpline.java
_PASSES = 9  # filters/Gaussian.java: convolveIIR_TriplePole runs N = 9 passes


def as_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """A real 2-D image with sides >= 3 as float64 (the one-line error names what is wrong)."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise FibroclassError(f"{name} must be a 2-D plane, got shape {arr.shape}")
    if arr.dtype != bool and (not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr)):
        raise FibroclassError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if min(arr.shape) < 3:
        raise FibroclassError(f"{name} needs at least 3 pixels per side, got shape {arr.shape}")
    return arr.astype(np.float64, copy=False)


def _along(func, a: np.ndarray, axis: int) -> np.ndarray:
    """Apply a filter of the last axis of a 2-D array along `axis`."""
    if axis == 1:
        return func(a)
    return func(np.ascontiguousarray(a.T)).T


# -- gradient ------------------------------------------------------------------------------------------
def _first_order(x: np.ndarray, pole: float, init: np.ndarray) -> np.ndarray:
    """y[k] = x[k] + pole·y[k−1] along the last axis, with y[0] = init."""
    out, _ = lfilter([1.0], [1.0, -pole], x, axis=-1, zi=(init - x[:, 0])[:, None])
    return out


def _spline_coefficients(rows: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients of each row (CubicSpline.doSymmetricalExponentialFilter)."""
    a = _SPLINE_POLE
    k0 = min(rows.shape[-1], _SPLINE_TERMS)
    cplus = _first_order(rows, a, rows[:, :k0] @ (a ** np.arange(k0)))
    init = (a / (a * a - 1.0)) * (cplus[:, -1] + a * cplus[:, -2])
    # anticausal y[k] = a·(y[k+1] − c⁺[k]): a causal recursion on the reversed row
    rev = -a * cplus[:, ::-1]
    out = _first_order(rev, a, init)
    return _SPLINE_GAIN * out[:, ::-1]


def _spline_rows(rows: np.ndarray) -> np.ndarray:
    c = _spline_coefficients(rows)
    g = np.zeros_like(rows)
    g[:, 1:-1] = 0.5 * (c[:, :-2] - c[:, 2:])
    return g


def _difference_rows(rows: np.ndarray) -> np.ndarray:
    g = np.zeros_like(rows)
    g[:, 1:-1] = rows[:, :-2] - rows[:, 2:]  # the plugin's finite difference has no 1/2
    return g


def gradient(image: np.ndarray, method: str = "cubic_spline") -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy) as OrientationJ computes them: minus the derivative along x (columns) and y (rows, down).

    `method`: "cubic_spline" (the plugin's default) or "finite_difference" (g[x] = s[x−1] − s[x+1]).
    The signs cancel in the tensor.
    """
    img = as_image(image)
    if method not in GRADIENTS:
        raise FibroclassError(f"gradient must be one of {', '.join(GRADIENTS)}, got {method!r}")
    rows = _spline_rows if method == "cubic_spline" else _difference_rows
    return _along(rows, img, 1), _along(rows, img, 0)


# -- window ---------------------------------------------------------------------------------------------
def window_pole(sigma: float) -> float:
    """Pole of one pass of the plugin's recursive Gaussian (variance σ²/3 per symmetric pass)."""
    s2 = float(sigma) ** 2
    return 1.0 + 3.0 / s2 - math.sqrt(9.0 + 6.0 * s2) / s2


def _window_sections(z: float) -> np.ndarray:
    """Second-order sections of 1/(1 − z·q⁻¹)⁹ (4 double poles + 1 single pole)."""
    double = [1.0, 0.0, 0.0, 1.0, -2.0 * z, z * z]
    single = [1.0, 0.0, 0.0, 1.0, -z, 0.0]
    return np.array([double] * (_PASSES // 2) + [single] * (_PASSES % 2))


def _window_rows(rows: np.ndarray, sigma: float) -> np.ndarray:
    z = window_pole(sigma)
    n = rows.shape[-1]
    # The kernel has s.d. √3σ and exponential tails (pole z): 8 s.d. leave < 1e-12 of its mass outside.
    pad = int(math.ceil(8.0 * math.sqrt(3.0) * sigma)) + _PASSES
    ext = np.pad(rows, ((0, 0), (pad, pad)), mode="reflect")  # whole-sample mirror, repeated if needed
    sos = _window_sections(z)
    y = sosfilt(sos, ext, axis=-1)
    y = sosfilt(sos, y[:, ::-1], axis=-1)[:, ::-1]
    return y[:, pad : pad + n] * (1.0 - z) ** (2 * _PASSES)


def window(values: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """The plugin's tensor window (variance 3σ² per axis, unit gain, mirror boundaries) of a 2-D array."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise FibroclassError(f"window needs a 2-D array, got shape {arr.shape}")
    if not sigma > 0:
        return arr.copy()
    out = _along(lambda r: _window_rows(r, sigma), arr, 0)  # columns first, as the plugin
    return _along(lambda r: _window_rows(r, sigma), out, 1)


# -- tensor and features --------------------------------------------------------------------------------
def structure_tensor(
    image: np.ndarray, sigma: float = 1.0, gradient_method: str = "cubic_spline"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Jxx, Jxy, Jyy): OrientationJ's structure tensor with local window σ (px) of the raw pixel values."""
    if not math.isfinite(sigma) or sigma < 0:
        raise FibroclassError(f"window sigma must be a finite number >= 0 (px), got {sigma}")
    gx, gy = gradient(image, gradient_method)
    stacked = np.concatenate([gx * gx, gx * gy, gy * gy], axis=0)  # one filter call for all three
    jxx, jxy, jyy = np.split(window_stacked(stacked, sigma, len(gx)), 3, axis=0)
    return jxx, jxy, jyy


def window_stacked(stacked: np.ndarray, sigma: float, height: int) -> np.ndarray:
    """`window` of k images of `height` rows stacked along axis 0 (columns filtered per image)."""
    if not sigma > 0:
        return stacked.copy()
    k = len(stacked) // height
    cols = stacked.reshape(k, height, -1).transpose(0, 2, 1).reshape(-1, height)  # every column as a row
    cols = _window_rows(np.ascontiguousarray(cols), sigma)
    out = cols.reshape(k, -1, height).transpose(0, 2, 1).reshape(stacked.shape)
    return _window_rows(np.ascontiguousarray(out), sigma)


def coherency_from_tensor(
    jxx: np.ndarray, jxy: np.ndarray, jyy: np.ndarray, epsilon: float = EPSILON
) -> np.ndarray:
    """√((Jyy − Jxx)² + 4Jxy²) / (Jxx + Jyy + ε); 0 where the denominator is 0 (only with ε = 0)."""
    num = np.sqrt((jyy - jxx) ** 2 + 4.0 * jxy * jxy)
    den = jxx + jyy + epsilon
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def orientation_from_tensor(jxx: np.ndarray, jxy: np.ndarray, jyy: np.ndarray) -> np.ndarray:
    """½·atan2(2Jxy, Jyy − Jxx) in radians, [−π/2, π/2] (0 where the tensor vanishes)."""
    return 0.5 * np.arctan2(2.0 * jxy, jyy - jxx)


def coherency(
    image: np.ndarray, sigma: float = 1.0, epsilon: float = EPSILON, gradient_method: str = "cubic_spline"
) -> np.ndarray:
    """Per-pixel OrientationJ coherency in [0, 1) of a 2-D image in its raw pixel values (module docstring).

    `sigma`: the plugin's "local window σ" in pixels (default 1, as the plugin). 1 on perfectly parallel
    lines, ~0 on isotropic structure (white noise: ≈ 0.22 at σ = 1, falling as 1/σ), |cos δ| for two
    equal line families at an angle δ seen through a window much larger than their beat period.
    """
    return coherency_from_tensor(*structure_tensor(image, sigma, gradient_method), epsilon)


def orientation(
    image: np.ndarray, sigma: float = 1.0, degrees: bool = False, gradient_method: str = "cubic_spline"
) -> np.ndarray:
    """Per-pixel orientation of the structures, counter-clockwise on screen from the horizontal, in
    [−π/2, π/2] (or [−90, 90] with `degrees`), as OrientationJ's orientation map."""
    theta = orientation_from_tensor(*structure_tensor(image, sigma, gradient_method))
    return np.degrees(theta) if degrees else theta


def energy(
    image: np.ndarray, sigma: float = 1.0, rescale: bool = False, gradient_method: str = "cubic_spline"
) -> np.ndarray:
    """Jxx + Jyy; `rescale` min-max scales it to [0, 1] like the plugin's Energy window."""
    jxx, _, jyy = structure_tensor(image, sigma, gradient_method)
    e = jxx + jyy
    if rescale:
        lo, hi = float(e.min()), float(e.max())
        e = (e - lo) / (hi - lo) if hi > lo else np.zeros_like(e)
    return e


__all__ = [
    "EPSILON",
    "GRADIENTS",
    "coherency",
    "coherency_from_tensor",
    "energy",
    "gradient",
    "orientation",
    "orientation_from_tensor",
    "structure_tensor",
    "window",
    "window_pole",
]
