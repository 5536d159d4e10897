"""Classical actin-organization co-readout (numpy/scipy/scikit-image only, no torch).

The structure tensor is OrientationJ's (`measure.structure_tensor`: cubic-spline gradient, the plugin's
recursive Gaussian window of "local window σ" px, ε = 0.001 absolute), so `coherency(image, sigma)`
and `orientation(image, sigma)` give the maps Fiji's *OrientationJ Analysis* shows for the same file
and σ. Pass the file's raw pixel values (0..255 / 0..4095 / 0..65535): ε is absolute, so a [0, 1]-scaled
image reads less coherent where the structure is faint (`field_organization` takes `intensity_scale`
for images already divided by their full scale).

Angle convention (OrientationJ's): radians counter-clockwise on screen from the horizontal (x to the
right, y up), axial, in [−π/2, π/2]: a fibre at 0 is horizontal, at ±π/2 vertical, at +π/4 it runs to
the upper right. `org_orientation_deg` is the same angle in degrees, [−90, 90].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from fibroclass.errors import FibroclassError
from fibroclass.measure.structure_tensor import (
    EPSILON,
    as_image,
    coherency,
    coherency_from_tensor,
    energy,
    orientation,
    orientation_from_tensor,
    structure_tensor,
)

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
ORG_NUCLEI_LOG_ASPECT = "org_nuclei_log_aspect"
ACTIN_KEYS = (ORG_COHERENCY, ORG_ORIENTATION_DEG, ORG_ORDER, ORG_LOCAL_ORDER, ORG_ACTIN_FRACTION)
NUCLEI_KEYS = (
    ORG_NUCLEI_COUNT,
    ORG_NUCLEI_PER_MPX,
    ORG_NUCLEI_AREA,
    ORG_NUCLEI_ECC,
    ORG_NUCLEI_ASPECT,
    ORG_NUCLEI_ORDER,
    ORG_NUCLEI_LOG_ASPECT,
)
SHAPE_MIN_AREA = 4  # px: objects the intensity-moment shape (org_nuclei_log_aspect) is measured on

# Tensor window of the field readout: OrientationJ's local window σ. In µm (`WINDOW_UM`, the
# `organization.window_um` setting) when the pixel size is known, else `FIELD_SIGMA` px of the analysed
# (possibly downsampled) field. The plugin's window has an effective s.d. of √3·σ, so 4.6 px ≈ the 8 px
# Gaussian window of earlier versions (about half a cell width on simulated 256 px fields); 3 µm is
# that window at 0.65 µm/px (20x objective, 6.5 µm camera pixels).
FIELD_SIGMA = 4.6
WINDOW_UM = 3.0


def _as_plane(image: np.ndarray, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise FibroclassError(f"{name} must be a 2-D plane, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise FibroclassError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def window_px(window_um: float, pixel_size_um: float | None, factor: int = 1, fallback_px: float = FIELD_SIGMA) -> float:
    """The tensor window σ in pixels of a field analysed at `factor`× downsampling: `window_um` over the
    pixel size when that is known (finite, > 0), else `fallback_px` (pixels of the analysed field)."""
    try:
        size = float(pixel_size_um) if pixel_size_um is not None else float("nan")
    except (TypeError, ValueError):
        size = float("nan")
    if np.isfinite(size) and size > 0 and window_um > 0:
        return float(window_um) / (size * max(int(factor), 1))
    return float(fallback_px)


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
    parameter is |<exp(2i theta)>| of the nuclei long axes (1 = all parallel). Count, area, eccentricity,
    aspect and order use objects of at least `min_area` px. `org_nuclei_log_aspect` is the median over
    every object of at least `SHAPE_MIN_AREA` px of ½·log(λ1/λ2), the eigenvalues of its background-
    subtracted intensity-weighted second moments less the pixel's own variance (1/12 px²): a robust,
    sub-pixel shape measure that small or merged objects cannot drag (0 = round).
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
    out[ORG_NUCLEI_LOG_ASPECT] = _log_aspect_median(img, labels, lab, x, y, area, n)
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


def _log_aspect_median(
    img: np.ndarray, labels: np.ndarray, lab: np.ndarray, x: np.ndarray, y: np.ndarray, area: np.ndarray, n: int
) -> float:
    """Median ½·log(λ1/λ2) of the intensity-weighted moments of objects >= SHAPE_MIN_AREA px (NaN: none)."""
    background = float(np.median(img[labels == 0])) if (labels == 0).any() else 0.0
    wgt = np.maximum(img[labels > 0] - background, 0.0)  # same pixel order as np.nonzero(labels)
    total = np.bincount(lab, weights=wgt, minlength=n + 1)[1:]
    keep = (area >= SHAPE_MIN_AREA) & (total > 0)
    if not keep.any():
        return float("nan")
    safe = np.where(total > 0, total, 1.0)

    def wmean(v: np.ndarray) -> np.ndarray:
        return np.bincount(lab, weights=wgt * v, minlength=n + 1)[1:] / safe

    mx, my = wmean(x), wmean(y)
    cxx, cyy, cxy = wmean(x * x) - mx**2, wmean(y * y) - my**2, wmean(x * y) - mx * my
    half_tr, root = (cxx + cyy) / 2, np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    l1 = np.maximum(half_tr + root - 1.0 / 12.0, 1e-3)
    l2 = np.maximum(half_tr - root - 1.0 / 12.0, 1e-3)
    return float(np.median(0.5 * np.log(l1[keep] / l2[keep])))


def field_organization(
    actin: np.ndarray,
    nuclei: np.ndarray | None = None,
    sigma: float = FIELD_SIGMA,
    window: int = 32,
    mask: np.ndarray | None = None,
    mask_sigma: float = 4.0,
    min_window_fraction: float = 0.25,
    min_nucleus_area: int = 20,
    intensity_scale: float = 1.0,
) -> dict[str, float]:
    """Organization co-readout of one field (keys: the ``ORG_*`` constants of this module).

    - ``org_coherency``: mean OrientationJ coherency (window σ = `sigma` px) over the actin foreground,
      what Fiji gives as the mean of the coherency map inside the same mask.
    - ``org_orientation_deg``: dominant fibre orientation in [-90, 90] deg, from the foreground-summed
      tensor (OrientationJ "dominant direction").
    - ``org_order_parameter``: nematic order |<exp(2i theta_w)>| over `window`-px tiles: theta_w is the
      orientation of the tile's summed (hence energy-weighted) tensor; tiles with at least
      `min_window_fraction` foreground count, each with equal weight. 1 = one direction across the
      field, ~0 = no field-wide direction (random, or e.g. concentric rings).
    - ``org_local_order``: the same over each tile's 3x3 tile neighbourhood, then averaged (AFT-like
      local alignment; high for rings, low for random fibres).
    - ``org_actin_fraction``: foreground fraction of the field.
    - with `nuclei`: count, per-megapixel density, mean area/eccentricity/aspect, nuclei order.
    `sigma` is OrientationJ's local window σ in px (default `FIELD_SIGMA`). `actin` holds the file's raw
    values, or those values divided by `intensity_scale` (e.g. 65535 for 16-bit data scaled to [0, 1]):
    the absolute ε is rescaled to match, so both give Fiji's numbers. Foreground is `mask` when given,
    else `foreground_mask(actin, mask_sigma)`. Actin values are NaN for an empty field.
    """
    img = _as_plane(actin, "actin")
    if mask is None:
        fg = foreground_mask(img, mask_sigma)
    else:
        fg = np.asarray(mask, dtype=bool)
        if fg.shape != img.shape:
            raise FibroclassError(f"mask shape {fg.shape} differs from actin shape {img.shape}")
    if not intensity_scale > 0:
        raise FibroclassError(f"intensity_scale must be > 0, got {intensity_scale}")
    jxx, jxy, jyy = structure_tensor(img, sigma)
    nan = float("nan")
    out: dict[str, Any] = {k: nan for k in ACTIN_KEYS}
    out[ORG_ACTIN_FRACTION] = float(fg.mean()) if fg.size else 0.0
    energy = jxx + jyy
    e_fg = energy[fg]
    if fg.any() and float(e_fg.sum()) > 0:
        coh = coherency_from_tensor(jxx, jxy, jyy, EPSILON / float(intensity_scale) ** 2)
        out[ORG_COHERENCY] = float(coh[fg].mean())
        sxx, sxy, syy = float(jxx[fg].sum()), float(jxy[fg].sum()), float(jyy[fg].sum())
        theta = float(orientation_from_tensor(np.array(sxx), np.array(sxy), np.array(syy)))
        out[ORG_ORIENTATION_DEG] = float(np.degrees(theta))
        wxx, wxy, wyy, frac = _window_tensors(jxx, jxy, jyy, fg.astype(float), window)
        valid = (frac >= min_window_fraction) & (wxx + wyy > 0)
        wtheta = orientation_from_tensor(wxx, wxy, wyy)
        out[ORG_ORDER] = _order(wtheta[valid])
        out[ORG_LOCAL_ORDER] = _local_order(wtheta, valid)
    if nuclei is not None:
        nuc = _as_plane(nuclei, "nuclei")
        if nuc.shape != img.shape:
            raise FibroclassError(f"nuclei shape {nuc.shape} differs from actin shape {img.shape}")
        out.update(nuclei_stats(nuc, min_area=min_nucleus_area))
    return out


__all__ = [
    "ACTIN_KEYS",
    "FIELD_SIGMA",
    "NUCLEI_KEYS",
    "WINDOW_UM",
    "as_image",
    "coherency",
    "energy",
    "field_organization",
    "foreground_mask",
    "nuclei_stats",
    "orientation",
    "structure_tensor",
    "window_px",
]
