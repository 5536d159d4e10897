"""Classical nuclei counting on the nuclei channel (scikit-image, no learning).

Pipeline: Gaussian smoothing → local background removal → Otsu threshold guarded by a noise-based
floor (so an empty field yields 0, not noise blobs) → distance-transform peaks + watershed to split
touching nuclei → size filter. Condensed (pyknotic) nuclei are small *and* bright compared with the
field's normal nuclei (or a reference given by the caller). Everything is relative to the image's own
background and noise, so counts do not change when the intensity is scaled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from fibroclass.errors import FibroclassError
from fibroclass.settings import Section


@dataclass(frozen=True)
class NucleiParams(Section):
    """Tunables of `count_nuclei` (pixel sizes at the resolution of the image passed in)."""

    SECTION: ClassVar[str] = "nuclei"

    smooth_sigma: float = 1.0  # Gaussian sigma before thresholding
    background_size: int = 32  # side of the blocks used for the local background estimate
    min_snr: float = 6.0  # threshold must sit this many (smoothed) noise SDs above background
    min_area_px: int = 12  # objects smaller than this are noise/debris
    split_min_distance_px: int = 3  # minimum distance between two nucleus centres
    split_rel_height: float = 0.35  # a centre needs a distance-transform peak >= this x median radius
    pyknotic_area_frac: float = 0.5  # pyknotic: area <= this x reference area ...
    pyknotic_intensity_ratio: float = 1.4  # ... and mean intensity >= this x reference intensity


@dataclass(frozen=True)
class NucleiCounts:
    """Nuclei found in one field."""

    n: int
    n_pyknotic: int
    mean_area_px: float
    median_area_px: float
    mean_intensity: float  # mean nucleus intensity, in the image's units

    @property
    def pyknotic_frac(self) -> float:
        return self.n_pyknotic / self.n if self.n else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pyknotic_frac"] = self.pyknotic_frac
        return d


EMPTY = NucleiCounts(0, 0, float("nan"), float("nan"), float("nan"))


def noise_sigma(img: np.ndarray, max_samples: int = 40_000) -> float:
    """Robust pixel-noise SD from horizontal neighbour differences (MAD, structure-tolerant)."""
    d = np.diff(img, axis=1).ravel()
    if d.size > max_samples:
        d = d[:: d.size // max_samples]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def local_background(img: np.ndarray, block: int, q: float = 10.0) -> np.ndarray:
    """Smooth background: `q`-th percentile per block (edges reflected), bilinearly upsampled."""
    h, w = img.shape
    by, bx = max(1, int(np.ceil(h / block))), max(1, int(np.ceil(w / block)))
    padded = np.pad(img, ((0, by * block - h), (0, bx * block - w)), mode="symmetric")
    blocks = padded.reshape(by, block, bx, block).transpose(0, 2, 1, 3).reshape(by, bx, -1)
    grid = np.percentile(blocks, q, axis=-1).astype(np.float32)
    if grid.size == 1:
        return np.full(img.shape, grid[0, 0], dtype=np.float32)
    zoomed = ndi.zoom(grid, (by * block / by, bx * block / bx), order=1, mode="nearest", grid_mode=True)
    return zoomed[:h, :w].astype(np.float32)


def background_subtracted(img: np.ndarray, p: NucleiParams) -> tuple[np.ndarray, float]:
    """Smoothed, background-subtracted image and the SD of its noise."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 2:
        raise FibroclassError(f"nuclei image must be 2-D, got shape {img.shape}")
    img = np.where(np.isfinite(img), img, 0.0).astype(np.float32)
    sigma_n = noise_sigma(img)
    smooth = ndi.gaussian_filter(img, p.smooth_sigma)
    fg = smooth - local_background(smooth, p.background_size)
    # White noise SD after a Gaussian of sigma s shrinks by 1 / (2 sqrt(pi) s).
    return fg, sigma_n / (2.0 * np.sqrt(np.pi) * max(p.smooth_sigma, 0.5))


def segment_nuclei(img: np.ndarray, params: NucleiParams | None = None) -> np.ndarray:
    """Label image of nuclei (0 = background) from a 2-D nuclei-channel image."""
    return _segment(*background_subtracted(img, params or NucleiParams()), params or NucleiParams())


def _segment(fg: np.ndarray, sigma_s: float, p: NucleiParams) -> np.ndarray:
    # Background level and spread from the lower half of the histogram (nuclei cover < half a field):
    # the spread includes uneven illumination left after background removal, not just pixel noise.
    lo, med, span = (float(v) for v in np.percentile(fg, [15.87, 50.0, 99.9]))
    spread = max(med - lo, sigma_s)
    floor = max(med + p.min_snr * spread, 1e-6)
    if span <= floor:
        return np.zeros(fg.shape, dtype=np.int32)
    # Otsu in log intensity among pixels above the noise floor: bright condensed nuclei then do not
    # pull the threshold above the normal ones (they differ ~5x in brightness, not in kind).
    candidates = fg[fg > floor]
    if candidates.size < p.min_area_px:
        return np.zeros(fg.shape, dtype=np.int32)
    logs = np.log(candidates)
    thr = floor if np.ptp(logs) == 0 else max(float(np.exp(threshold_otsu(logs))), floor)
    mask = fg > thr
    mask = ndi.binary_opening(mask, iterations=1)
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask)
    if n == 0:
        return labels.astype(np.int32)
    areas = np.bincount(labels.ravel())
    small = areas < p.min_area_px
    small[0] = False
    mask &= ~small[labels]
    return _split_touching(mask, p)


def _split_touching(mask: np.ndarray, p: NucleiParams) -> np.ndarray:
    """Watershed on the distance transform, seeded at peaks tall enough to be nucleus centres."""
    labels, n = ndi.label(mask)
    if n == 0:
        return labels.astype(np.int32)
    areas = np.bincount(labels.ravel())[1:]
    r_med = float(np.sqrt(np.median(areas) / np.pi))
    dist = ndi.distance_transform_edt(mask)
    dist_s = ndi.gaussian_filter(dist, 0.7)
    min_dist = max(p.split_min_distance_px, int(round(0.6 * r_med)))
    # Without `labels` peak_local_max works on the whole image at once (per-label loops are slow);
    # the distance map is 0 between objects, so peaks stay inside them.
    peaks = peak_local_max(
        dist_s,
        min_distance=min_dist,
        threshold_abs=max(1.0, p.split_rel_height * r_med),
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Objects without a tall-enough peak still count once: seed them at their own label.
    seeded = np.unique(labels[markers > 0])
    unseeded = np.setdiff1d(np.arange(1, n + 1), seeded)
    if unseeded.size:
        extra = np.isin(labels, unseeded)
        markers[extra] = labels[extra] + len(peaks)
    out = watershed(-dist_s, markers, mask=mask)
    return out.astype(np.int32)


def count_nuclei(
    nuclei_img: np.ndarray,
    params: NucleiParams | dict | None = None,
    ref_area_px: float | None = None,
    ref_intensity: float | None = None,
) -> NucleiCounts:
    """Count nuclei in a 2-D nuclei-channel field (float, any intensity scale).

    `ref_area_px`/`ref_intensity` describe a normal nucleus (e.g. plate disease-control medians);
    without them the field's own large nuclei are the reference. A nucleus is pyknotic when it is
    both small (area <= pyknotic_area_frac x ref) and bright (mean >= pyknotic_intensity_ratio x ref).
    """
    p = params if isinstance(params, NucleiParams) else NucleiParams.from_dict(params)
    fg, sigma_s = background_subtracted(nuclei_img, p)
    labels = _segment(fg, sigma_s, p)
    n = int(labels.max())
    if n == 0:
        return EMPTY
    idx = np.arange(1, n + 1)
    areas = ndi.sum_labels(np.ones_like(fg), labels, idx)
    keep = areas >= p.min_area_px
    if not keep.any():
        return EMPTY
    idx, areas = idx[keep], areas[keep]
    means = ndi.mean(fg, labels, idx)  # background-subtracted, so offsets do not bias the ratio
    ref_a = float(ref_area_px) if ref_area_px else float(np.percentile(areas, 75))
    if ref_intensity:
        ref_i = float(ref_intensity)
    else:
        normal = areas > p.pyknotic_area_frac * ref_a
        ref_i = float(np.median(means[normal] if normal.any() else means))
    pyk = (areas <= p.pyknotic_area_frac * ref_a) & (means >= p.pyknotic_intensity_ratio * ref_i)
    return NucleiCounts(
        n=int(len(idx)),
        n_pyknotic=int(pyk.sum()),
        mean_area_px=float(areas.mean()),
        median_area_px=float(np.median(areas)),
        mean_intensity=float(means.mean()),
    )
