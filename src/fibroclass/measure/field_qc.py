"""Field quality control metrics: one (C, H, W) field in [0, 1] → numbers (no plate context).

`field_qc_metrics` measures one field; `scoring.fields.qc.flag_fields` judges a plate's table of those
metrics into `qc_pass` / `qc_reason`. Reasons (`;`-joined when several apply):

- `nonfinite`: NaN/inf pixels above `nonfinite_max_frac`.
- `empty`: (almost) no cells while the other fields of the same well have plenty — nuclei count (or
  nuclei foreground) at most `empty_rel_well` × the well's median, in a well whose median is at least
  `empty_well_min_nuclei`. A well whose fields are all sparse is biology (toxicity), not an artefact,
  and is left alone; wells with a single field fall back to an absolute rule (no nuclei, no actin).
- `blur`: sharpness far below the plate's own distribution (robust z on log sharpness, median/MAD over
  the plate's non-empty fields, with a floor on the spread) or below an absolute floor.
- `debris`: compact blobs that are several times brighter than the field's bright cell parts in *every*
  channel at once (nuclei glow in one channel, actin puncta in the other; dust and precipitate in all),
  over `debris_max_frac` of the field, or saturated pixels over `saturated_max_frac` (saturated blobs).

Sharpness is the ratio of fine-band (Gaussian σ 1–2 px) to coarse-band (σ 2–4 px) energy of the actin
channel with the white-noise contribution removed, so it depends little on brightness, noise level or
cell shape, and drops several-fold when a field is out of focus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage as ndi

from fibroclass.errors import FibroclassError
from fibroclass.measure.nuclei import local_background, noise_sigma
from fibroclass.measure.resample import downsample
from fibroclass.schema import CHANNELS
from fibroclass.settings import Section

# Metric columns written by `field_qc_metrics` (kept in fields.parquet).
SHARPNESS = "qc_sharpness"
FG_FRAC = "qc_fg_frac"
NUCLEI_FG_FRAC = "qc_nuclei_fg_frac"
DEBRIS_FRAC = "qc_debris_frac"
SATURATED_FRAC = "qc_saturated_frac"
NONFINITE_FRAC = "qc_nonfinite_frac"
METRIC_COLUMNS = (SHARPNESS, FG_FRAC, NUCLEI_FG_FRAC, DEBRIS_FRAC, SATURATED_FRAC, NONFINITE_FRAC)

REASON_NONFINITE = "nonfinite"
REASON_EMPTY = "empty"
REASON_BLUR = "blur"
REASON_DEBRIS = "debris"


@dataclass(frozen=True)
class FieldQCParams(Section):
    """Thresholds of the `field_qc` section of `configs/score/readout.yaml` (documented there)."""

    SECTION: ClassVar[str] = "field_qc"

    sharpness_channel: str = "actin"
    sharpness_max_side: int = 512
    fg_smooth_sigma: float = 2.0
    fg_background_px: int = 32
    fg_min_snr: float = 5.0
    fg_rel_level: float = 0.1
    fg_rel_background: float = 0.5
    saturation_level: float = 0.995
    debris_factor: float = 2.0
    debris_min_radius_px: int = 3
    debris_min_area_px: int = 30
    blur_robust_z: float = 3.5
    blur_min_log_spread: float = 0.15
    blur_abs_floor: float = 0.03
    min_fields_for_plate_stats: int = 8
    empty_rel_well: float = 0.25
    empty_well_min_nuclei: float = 8.0
    empty_well_min_nuclei_fg_frac: float = 0.02
    empty_fg_frac: float = 0.01
    debris_max_frac: float = 0.002
    saturated_max_frac: float = 0.0002
    nonfinite_max_frac: float = 0.0


def params_of(config: FieldQCParams | dict | None) -> FieldQCParams:
    return config if isinstance(config, FieldQCParams) else FieldQCParams.from_dict(config)


def sharpness(plane: np.ndarray, sigma_noise: float | None = None) -> float:
    """Noise-corrected fine/coarse band energy ratio (≈1 sharp, ≪1 blurred); NaN without structure."""
    plane = np.asarray(plane, dtype=np.float32)
    sn2 = (noise_sigma(plane) if sigma_noise is None else sigma_noise) ** 2
    g1, g2, g4 = (ndi.gaussian_filter(plane, s) for s in (1.0, 2.0, 4.0))
    # Variance of white noise (variance sn2) in each band: sn2/(2π)·Σ ±1/(a²+b²) over the Gaussian pairs.
    fine = float(np.var(g1 - g2)) - sn2 / (2 * np.pi) * (1 / 2 + 1 / 8 - 2 / 5)
    coarse = float(np.var(g2 - g4)) - sn2 / (2 * np.pi) * (1 / 8 + 1 / 32 - 2 / 20)
    if coarse <= 1e-12:
        return float("nan")
    return max(fine, 0.0) / coarse


def foreground(
    plane: np.ndarray, p: FieldQCParams, sigma_noise: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(background-subtracted smoothed plane, foreground mask) with a noise-based threshold."""
    sn = noise_sigma(plane) if sigma_noise is None else sigma_noise
    smooth = ndi.gaussian_filter(plane, p.fg_smooth_sigma)
    bg = local_background(smooth, p.fg_background_px, q=2.0)
    fg = smooth - bg
    # Cells may cover most of a field (no usable "background half"): the threshold is the largest of
    # the pixel noise, a fraction of the bright level, and a fraction of the local background itself
    # (uneven illumination and background texture scale with it).
    sigma_s = sn / (2 * np.sqrt(np.pi) * p.fg_smooth_sigma)
    thr = np.maximum(
        max(p.fg_min_snr * sigma_s, p.fg_rel_level * float(np.percentile(fg, 99.5)), 1e-6),
        p.fg_rel_background * bg,
    )
    return fg, fg > thr


def bright_blobs(fg: np.ndarray, mask: np.ndarray, p: FieldQCParams) -> np.ndarray:
    """Pixels of one channel far brighter (`debris_factor` ×) than the field's bright cell level (p90)."""
    if not mask.any():
        return np.zeros_like(mask)
    level = float(np.percentile(fg[mask], 90))
    return mask & (fg > p.debris_factor * max(level, 1e-6))


def compact(mask: np.ndarray, p: FieldQCParams) -> np.ndarray:
    """Blobs of `mask` that survive an opening by a disk (thin fibres go) and are large enough."""
    if not mask.any():
        return mask
    opened = ndi.binary_opening(mask, structure=_disk(p.debris_min_radius_px))
    labels, _ = ndi.label(opened)
    areas = np.bincount(labels.ravel())
    keep = areas >= p.debris_min_area_px
    keep[0] = False
    return keep[labels]


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 1)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx**2 + yy**2 <= r**2


def field_qc_metrics(
    img: np.ndarray, channels: Sequence[str] = CHANNELS, config: FieldQCParams | dict | None = None
) -> dict[str, float]:
    """QC metrics of one (C, H, W) field in [0, 1]; `channels` names the planes (needs the actin one)."""
    p = params_of(config)
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 3 or img.shape[0] != len(channels):
        raise FibroclassError(f"field has shape {img.shape}, expected ({len(channels)}, H, W) for {channels}")
    if p.sharpness_channel not in channels:
        raise FibroclassError(f"QC channel '{p.sharpness_channel}' not among field channels {list(channels)}")
    finite = np.isfinite(img)
    nonfinite = float(1.0 - finite.mean())
    img = np.where(finite, img, 0.0).astype(np.float32)
    saturated = float((img >= p.saturation_level).any(axis=0).mean())
    factor = int(np.ceil(max(img.shape[1:]) / p.sharpness_max_side))
    small = downsample(img, factor) if factor > 1 else img
    debris = np.ones(small.shape[1:], dtype=bool)
    fg_fracs = {}
    noise = {}
    for name, plane in zip(channels, small, strict=True):
        noise[name] = noise_sigma(plane)
        fg, mask = foreground(plane, p, noise[name])
        fg_fracs[name] = float(mask.mean())
        debris &= bright_blobs(fg, mask, p)  # debris glows in every channel; cell parts do not
    actin = small[list(channels).index(p.sharpness_channel)]
    return {
        SHARPNESS: sharpness(actin, noise[p.sharpness_channel]),
        FG_FRAC: fg_fracs[p.sharpness_channel],
        NUCLEI_FG_FRAC: fg_fracs.get("nuclei", float("nan")),
        DEBRIS_FRAC: float(compact(debris, p).mean()),
        SATURATED_FRAC: saturated,
        NONFINITE_FRAC: nonfinite,
    }
