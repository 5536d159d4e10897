"""Image measures for simulator tests, computed independently of the renderer."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import filters, measure
from skimage.feature import hessian_matrix, hessian_matrix_eigvals


def coherency(img: np.ndarray) -> float:
    """Global orientation coherency of image gradients (structure tensor): 1 = one direction, 0 = isotropic."""
    g = ndimage.gaussian_filter(img.astype(np.float64), 1.0)
    gy, gx = np.gradient(g)
    jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
    return float(np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy))


def nuclei_regions(nuclei: np.ndarray) -> list:
    """Otsu-segmented nuclei (regions of at least 3 px)."""
    img = ndimage.gaussian_filter(nuclei.astype(np.float64), 0.7)
    labels = measure.label(img > filters.threshold_otsu(img))
    return [r for r in measure.regionprops(labels, intensity_image=nuclei) if r.area >= 3]


def blobness(img: np.ndarray, sigma: float = 1.0) -> float:
    """Share of Hessian curvature in bright isotropic spots (both eigenvalues < 0) rather than lines."""
    hess = hessian_matrix(img.astype(np.float64), sigma=sigma, order="rc", use_gaussian_derivatives=True)
    l1, l2 = hessian_matrix_eigvals(hess)  # l1 >= l2
    return float((np.abs(l1) * (l1 < 0)).sum() / np.abs(l2).sum())
