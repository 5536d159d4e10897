"""Classical actin-organization co-readout (numpy/scipy/scikit-image only, no torch).

Structure tensor, OrientationJ style:
  1. gradients ``gx = d/dx`` and ``gy = d/dy`` with a small Gaussian-derivative filter
     (``gradient_sigma``, default 1 px) -- the *derivative* scale;
  2. tensor components ``Jxx = G_sigma * gx^2``, ``Jyy = G_sigma * gy^2``, ``Jxy = G_sigma * gx*gy``
     smoothed by a Gaussian window of standard deviation ``sigma`` (px) -- the *tensor window*;
  3. per pixel: energy ``Jxx + Jyy = l1 + l2``; coherency ``(l1 - l2) / (l1 + l2)`` in [0, 1]
     (0 where the energy is ~0); orientation of the structure (fibre direction, perpendicular to
     the dominant gradient).

Angle convention: radians/degrees counter-clockwise from the image x axis (columns, to the right)
with y pointing *up* (i.e. towards row 0), as on screen; orientations are axial, so they live in
[0, pi) -- a fibre at 0 deg is horizontal, at 90 deg vertical, at 45 deg runs to the upper right.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from fibroclass.errors import FibroclassError

# Keys of `field_organization` (columns of the organization co-readout in fields tables).
ORG_PREFIX = "org_"  # every organization column starts with this
ORG_COHERENCY = "org_coherency"
ORG_ORIENTATION_DEG = "org_orientation_deg"
ORG_ORDER = "org_order_parameter"
ORG_LOCAL_ORDER = "org_local_order"
ORG_ACTIN_FRACTION = "org_actin_fraction"
ORG_NUCLEI_COUNT = "org_nuclei_count"
ORG_NUCLEI_PER_MPX = "org_nuclei_per_mpx"
ORG_NUCLEI_AREA = "org_nuclei_area_mean"
ORG_NUCLEI_ECC = "org_nuclei_eccentricity_mean"
ORG_NUCLEI_ASPECT = "org_nuclei_aspect_mean"
ORG_NUCLEI_ORDER = "org_nuclei_order"
ACTIN_KEYS = (ORG_COHERENCY, ORG_ORIENTATION_DEG, ORG_ORDER, ORG_LOCAL_ORDER, ORG_ACTIN_FRACTION)
NUCLEI_KEYS = (
    ORG_NUCLEI_COUNT,
    ORG_NUCLEI_PER_MPX,
    ORG_NUCLEI_AREA,
    ORG_NUCLEI_ECC,
    ORG_NUCLEI_ASPECT,
    ORG_NUCLEI_ORDER,
)

# Tensor window of the field readout (px): about half a cell width. On simulated 256 px fields it
# gives the widest healthy -> GoF range of mean coherency (0.80 -> 0.25; a 2 px window: 0.89 -> 0.64,
# because fibres stay parallel *within* a GoF cell). Scale it with the pixel size of real images.
FIELD_SIGMA = 8.0
_EPS_REL = 1e-6  # energy below this fraction of the image maximum counts as "no structure"


def _as_plane(image: np.ndarray, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise FibroclassError(f"{name} must be a 2-D plane, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise FibroclassError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def structure_tensor(
    image: np.ndarray, sigma: float = 1.0, gradient_sigma: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed structure tensor ``(Jxx, Jxy, Jyy)`` of a 2-D image (x = columns, y = up).

    `gradient_sigma` is the Gaussian-derivative scale of the gradient; `sigma` the Gaussian
    window over which the tensor components are averaged (0 = no averaging).
    """
    img = _as_plane(image)
    if sigma < 0 or gradient_sigma <= 0:
        raise FibroclassError(f"sigma must be >= 0 and gradient_sigma > 0, got {sigma}, {gradient_sigma}")
    # Coherency and orientation are scale-free: normalise, then work in float32 (faster filters).
    peak = float(np.abs(img).max()) if img.size else 0.0
    img = (img / peak if peak > 0 else img).astype(np.float32)
    gx = ndi.gaussian_filter(img, gradient_sigma, order=(0, 1), mode="reflect")
    gy = -ndi.gaussian_filter(img, gradient_sigma, order=(1, 0), mode="reflect")  # y up = -rows

    def smooth(a: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(a, sigma, mode="reflect", truncate=3.0) if sigma > 0 else a

    return smooth(gx * gx), smooth(gx * gy), smooth(gy * gy)


def _coherency_from_tensor(jxx: np.ndarray, jxy: np.ndarray, jyy: np.ndarray) -> np.ndarray:
    energy = jxx + jyy
    aniso = np.sqrt((jyy - jxx) ** 2 + 4.0 * jxy**2)
    emax = float(energy.max()) if energy.size else 0.0
    valid = energy > max(emax * _EPS_REL, float(np.finfo(energy.dtype).tiny))
    out = np.zeros_like(energy)
    np.divide(aniso, energy, out=out, where=valid)
    return np.clip(out, 0.0, 1.0)


def _orientation_from_tensor(jxx: np.ndarray, jxy: np.ndarray, jyy: np.ndarray) -> np.ndarray:
    # Dominant gradient direction is 0.5*atan2(2Jxy, Jxx - Jyy); structures run perpendicular to it.
    theta = 0.5 * np.arctan2(-2.0 * jxy, jyy - jxx)
    return np.mod(theta, np.pi)


def coherency(image: np.ndarray, sigma: float = 1.0, gradient_sigma: float = 1.0) -> np.ndarray:
    """Per-pixel OrientationJ coherency ``(l1 - l2)/(l1 + l2)`` in [0, 1], same shape as `image`.

    `sigma`: Gaussian tensor window (px); `gradient_sigma`: derivative filter scale (px).
    Pixels with ~0 gradient energy get 0.
    """
    return _coherency_from_tensor(*structure_tensor(image, sigma, gradient_sigma))


def orientation(image: np.ndarray, sigma: float = 1.0, gradient_sigma: float = 1.0) -> np.ndarray:
    """Per-pixel dominant structure orientation in radians, [0, pi), counter-clockwise from x, y up."""
    return _orientation_from_tensor(*structure_tensor(image, sigma, gradient_sigma))


def foreground_mask(actin: np.ndarray, mask_sigma: float = 4.0, min_density: float = 0.1) -> np.ndarray:
    """Pixels near actin: the local density (Gaussian `mask_sigma`) of above-Otsu pixels >= `min_density`.

    Bright pixels are those above the Otsu threshold of the lightly smoothed actin; a pixel is
    foreground when at least `min_density` of its neighbourhood is bright, so a field fully covered
    by fibres is all foreground and empty background away from cells is not. Flat image: empty mask.
    """
    img = _as_plane(actin, "actin")
    light = ndi.gaussian_filter(img.astype(np.float32), 1.0)
    if float(np.ptp(light)) <= 1e-12 * max(1.0, float(np.abs(light).max())):
        return np.zeros(img.shape, dtype=bool)
    bright = (light > threshold_otsu(light)).astype(np.float32)
    density = ndi.gaussian_filter(bright, mask_sigma) if mask_sigma > 0 else bright
    return density >= min_density


def _window_tensors(
    jxx: np.ndarray, jxy: np.ndarray, jyy: np.ndarray, weight: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum tensor components (masked) and mask fraction over non-overlapping window x window tiles."""
    h, w = jxx.shape
    ny, nx = max(1, h // window), max(1, w // window)
    wy, wx = min(window, h), min(window, w)

    def block(a: np.ndarray, reduce: str) -> np.ndarray:
        a = a[: ny * wy, : nx * wx].reshape(ny, wy, nx, wx)
        return a.sum(axis=(1, 3)) if reduce == "sum" else a.mean(axis=(1, 3))

    return (
        block(jxx * weight, "sum"),
        block(jxy * weight, "sum"),
        block(jyy * weight, "sum"),
        block(weight, "mean"),
    )


def _order(theta: np.ndarray) -> float:
    """Nematic order parameter |<exp(2i theta)>| of axial angles (nan for none)."""
    if theta.size == 0:
        return float("nan")
    return float(np.abs(np.mean(np.exp(2j * theta))))


def _local_order(theta: np.ndarray, valid: np.ndarray) -> float:
    """Mean over valid windows of the order parameter of their 3x3 window neighbourhood."""
    z = np.where(valid, np.exp(2j * theta), 0.0)
    n = ndi.uniform_filter(valid.astype(float), 3, mode="constant") * 9.0
    s = ndi.uniform_filter(z.real, 3, mode="constant") + 1j * ndi.uniform_filter(z.imag, 3, mode="constant")
    s = s * 9.0
    use = valid & (n >= 2.5)  # the window itself plus at least 2 neighbours
    if not use.any():
        return float("nan")
    return float(np.mean(np.abs(s[use]) / n[use]))


def nuclei_stats(nuclei: np.ndarray, min_area: int = 20, smooth_sigma: float = 1.0) -> dict[str, float]:
    """Count, density and shape of nuclei segmented by an Otsu threshold (touching nuclei are not split).

    Density is nuclei per million pixels; aspect is major/minor axis length; the nuclei order
    parameter is |<exp(2i theta)>| of the nuclei long axes (1 = all parallel).
    """
    img = _as_plane(nuclei, "nuclei")
    smooth = ndi.gaussian_filter(img, smooth_sigma) if smooth_sigma > 0 else img
    nan = float("nan")
    out = {k: nan for k in NUCLEI_KEYS}
    out[ORG_NUCLEI_COUNT] = 0.0
    out[ORG_NUCLEI_PER_MPX] = 0.0
    if float(np.ptp(smooth)) <= 1e-12 * max(1.0, float(np.abs(smooth).max())):
        return out
    labels, n = ndi.label(smooth > threshold_otsu(smooth), structure=np.ones((3, 3)))  # 8-connected
    if n == 0:
        return out
    # Per-object second moments in (x = column, y = up) coordinates, vectorized over labels.
    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols]
    x, y = cols.astype(float), -rows.astype(float)
    area = np.bincount(lab, minlength=n + 1)[1:].astype(float)
    keep = area >= min_area
    if not keep.any():
        return out
    safe = np.maximum(area, 1.0)

    def mean_of(v: np.ndarray) -> np.ndarray:
        return np.bincount(lab, weights=v, minlength=n + 1)[1:] / safe

    mx, my = mean_of(x), mean_of(y)
    cxx = mean_of(x * x) - mx**2  # central second moments / area, as skimage regionprops
    cyy = mean_of(y * y) - my**2
    cxy = mean_of(x * y) - mx * my
    cxx, cyy, cxy, area = cxx[keep], cyy[keep], cxy[keep], area[keep]
    half_tr, root = (cxx + cyy) / 2, np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    l1, l2 = half_tr + root, np.maximum(half_tr - root, 1e-12)
    theta = np.mod(0.5 * np.arctan2(2 * cxy, cxx - cyy), np.pi)  # long-axis direction
    count = int(keep.sum())
    out.update(
        {
            ORG_NUCLEI_COUNT: float(count),
            ORG_NUCLEI_PER_MPX: 1e6 * count / img.size,
            ORG_NUCLEI_AREA: float(area.mean()),
            ORG_NUCLEI_ECC: float(np.mean(np.sqrt(np.clip(1 - l2 / l1, 0, 1)))),
            ORG_NUCLEI_ASPECT: float(np.mean(np.sqrt(l1 / l2))),
            ORG_NUCLEI_ORDER: _order(theta) if count >= 2 else nan,
        }
    )
    return out


def field_organization(
    actin: np.ndarray,
    nuclei: np.ndarray | None = None,
    sigma: float = FIELD_SIGMA,
    gradient_sigma: float = 1.0,
    window: int = 32,
    mask: np.ndarray | None = None,
    mask_sigma: float = 4.0,
    min_window_fraction: float = 0.25,
    min_nucleus_area: int = 20,
) -> dict[str, float]:
    """Organization co-readout of one field (keys: the ``ORG_*`` constants of this module).

    - ``org_coherency``: energy-weighted mean coherency over foreground, sum(E*C)/sum(E).
    - ``org_orientation_deg``: dominant fibre orientation in [0, 180) deg, from the foreground-summed
      tensor (OrientationJ "dominant direction").
    - ``org_order_parameter``: nematic order |<exp(2i theta_w)>| over `window`-px tiles: theta_w is the
      orientation of the tile's summed (hence energy-weighted) tensor; tiles with at least
      `min_window_fraction` foreground count, each with equal weight. 1 = one direction across the
      field, ~0 = no field-wide direction (random, or e.g. concentric rings).
    - ``org_local_order``: the same over each tile's 3x3 tile neighbourhood, then averaged (AFT-like
      local alignment; high for rings, low for random fibres).
    - ``org_actin_fraction``: foreground fraction of the field.
    - with `nuclei`: count, per-megapixel density, mean area/eccentricity/aspect, nuclei order.
    `sigma` is the tensor window (default `FIELD_SIGMA`), `gradient_sigma` the derivative scale.
    Foreground is `mask` when given, else `foreground_mask(actin, mask_sigma)`.
    Actin values are NaN for an empty field.
    """
    img = _as_plane(actin, "actin")
    if mask is None:
        fg = foreground_mask(img, mask_sigma)
    else:
        fg = np.asarray(mask, dtype=bool)
        if fg.shape != img.shape:
            raise FibroclassError(f"mask shape {fg.shape} differs from actin shape {img.shape}")
    jxx, jxy, jyy = (a.astype(np.float64) for a in structure_tensor(img, sigma, gradient_sigma))
    nan = float("nan")
    out: dict[str, Any] = {k: nan for k in ACTIN_KEYS}
    out[ORG_ACTIN_FRACTION] = float(fg.mean()) if fg.size else 0.0
    energy = jxx + jyy
    e_fg = energy[fg]
    if fg.any() and float(e_fg.sum()) > 0:
        coh = _coherency_from_tensor(jxx, jxy, jyy)
        out[ORG_COHERENCY] = float(np.sum(e_fg * coh[fg]) / np.sum(e_fg))
        sxx, sxy, syy = float(jxx[fg].sum()), float(jxy[fg].sum()), float(jyy[fg].sum())
        theta = float(_orientation_from_tensor(np.array(sxx), np.array(sxy), np.array(syy)))
        out[ORG_ORIENTATION_DEG] = float(np.degrees(theta) % 180.0)
        wxx, wxy, wyy, frac = _window_tensors(jxx, jxy, jyy, fg.astype(float), window)
        valid = (frac >= min_window_fraction) & (wxx + wyy > 0)
        wtheta = _orientation_from_tensor(wxx, wxy, wyy)
        out[ORG_ORDER] = _order(wtheta[valid])
        out[ORG_LOCAL_ORDER] = _local_order(wtheta, valid)
    if nuclei is not None:
        nuc = _as_plane(nuclei, "nuclei")
        if nuc.shape != img.shape:
            raise FibroclassError(f"nuclei shape {nuc.shape} differs from actin shape {img.shape}")
        out.update(nuclei_stats(nuc, min_area=min_nucleus_area))
    return out
