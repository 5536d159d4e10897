"""Sampling the cells of one field from a well's biological state (vectorised numpy, no drawing).

Lengths are in reference pixels of a 256 px field; `scale = size / 256` converts them, so a field
shows the same biology whatever its pixel size (a 1080 px field is a finer-sampled 256 px field).
Severity 0 = healthy (aligned elongated spindles), 1 = STAT4 GoF (random, large, irregular).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gamma

REF_SIZE = 256
CELLS_PER_FIELD = 45  # expected cells whose centre lies in a field, at density 1 and viability 1
MARGIN_REF = 48  # cells are seeded this far outside the field so edges are as dense as the middle
N_HARMONICS = 6  # outline irregularity: cos(k*theta) terms, k = 2..7
N_CROSS = 2  # extra stress-fibre families at random angles (weighted by severity)

# Healthy -> GoF endpoints (interpolated by severity).
ASPECT = (6.5, 1.6)
AREA = (560.0, 1000.0)  # reference px^2 (about 1.8x larger when GoF)
SHAPE_EXPONENT = (1.1, 2.0)  # superellipse exponent: 1 = pointed spindle, 2 = ellipse
IRREGULARITY = (0.04, 0.26)
ORIENTATION_COHERENCE = 0.94  # mean resultant length of doubled cell angles when healthy (~ +/-10 deg)
NUCLEUS_AXES = ((8.5, 3.6), (9.0, 7.0))  # semi-axes, reference px
FIBRE_PERIOD = 2.8  # stress-fibre spacing, reference px
MIN_FIBRE_PX = 2.4  # small fields keep resolvable (relatively coarser) fibres instead of aliasing


@dataclass
class Cells:
    """Per-cell parameters in pixels of the padded canvas (arrays of length n)."""

    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray  # long-axis angle (radians)
    a: np.ndarray  # semi-axes of the outline (px)
    b: np.ndarray
    m: np.ndarray  # superellipse exponent
    harm_amp: np.ndarray  # (n, N_HARMONICS)
    harm_phase: np.ndarray
    fibre_period: np.ndarray  # px
    fibre_phase: np.ndarray
    cross_angle: np.ndarray  # (n, N_CROSS), relative to the long axis
    cross_weight: np.ndarray  # (n, N_CROSS)
    main_weight: np.ndarray
    cortex_weight: np.ndarray
    actin_total: np.ndarray  # relative integrated actin per cell
    nuc_dx: np.ndarray  # nucleus centre offset along the long axis (px)
    nuc_a: np.ndarray
    nuc_b: np.ndarray
    nuc_theta: np.ndarray
    nuc_total: np.ndarray  # relative integrated DNA stain per cell
    nuc_lobes: np.ndarray  # 1 = intact, 2-4 = fragmented (off-target)
    pyknotic: np.ndarray  # bool
    n_puncta: np.ndarray  # off-target actin dots/rings per cell
    in_field: np.ndarray  # bool: centre inside the unpadded field

    def __len__(self) -> int:
        return len(self.x)


def superellipse_area(m: np.ndarray | float) -> np.ndarray:
    """Area of |x|^m + |y|^m <= 1 (pi for m = 2, 2 for m = 1)."""
    m = np.asarray(m, dtype=float)
    return 4.0 * gamma(1.0 + 1.0 / m) ** 2 / gamma(1.0 + 2.0 / m)


def vonmises_kappa(r: float) -> float:
    """Concentration giving mean resultant length `r` (Banerjee et al. approximation)."""
    r = float(np.clip(r, 0.0, 0.999))
    return r * (2.0 - r * r) / (1.0 - r * r)


def _lerp(pair: tuple[float, float], s: float) -> float:
    return pair[0] + (pair[1] - pair[0]) * s


def sample_cells(
    rng: np.random.Generator,
    size: int,
    severity: float,
    viability: float = 1.0,
    offtarget: float = 0.0,
    density: float = 1.0,
    cell_scale: float = 1.0,
    n_expected: float | None = None,
) -> Cells:
    """Draw the cells of one field; positions are in the padded canvas of side size + 2*margin."""
    s = float(np.clip(severity, 0.0, 1.0))
    o = float(np.clip(offtarget, 0.0, 1.0))
    scale = size / REF_SIZE
    margin = MARGIN_REF * scale
    padded = size + 2 * margin
    if n_expected is None:
        n_expected = CELLS_PER_FIELD * density * max(viability, 0.0)
    n = int(rng.poisson(n_expected * (padded / size) ** 2))

    x = rng.uniform(0, padded, n)
    y = rng.uniform(0, padded, n)
    in_field = (x >= margin) & (x < margin + size) & (y >= margin) & (y < margin + size)

    # Orientation: doubled angles ~ von Mises around a per-field direction; coherence falls with severity.
    field_dir = rng.uniform(0, np.pi)
    kappa = vonmises_kappa(ORIENTATION_COHERENCE * (1.0 - s))
    theta = field_dir + 0.5 * rng.vonmises(0.0, kappa, n) if kappa > 0 else rng.uniform(0, np.pi, n)

    pyknotic = rng.random(n) < 0.02 + 0.6 * (1.0 - np.clip(viability, 0.0, 1.0))
    aspect = np.exp(np.log(_lerp(ASPECT, s)) + 0.15 * rng.standard_normal(n))
    area = _lerp(AREA, s) * cell_scale**2 * np.exp(0.25 * rng.standard_normal(n))
    m = np.full(n, _lerp(SHAPE_EXPONENT, s)) + 0.1 * rng.standard_normal(n)
    irregularity = np.full(n, _lerp(IRREGULARITY, s))
    # Dying cells round up and shrink.
    aspect = np.where(pyknotic, 1.2, np.maximum(aspect, 1.05))
    area = np.where(pyknotic, area * 0.3, area)
    m = np.where(pyknotic, 2.0, np.clip(m, 0.8, 2.2))
    irregularity = np.where(pyknotic, 0.03, irregularity)
    ab = area / superellipse_area(m)
    b = np.sqrt(ab / aspect) * scale
    a = aspect * b

    k = np.arange(2, 2 + N_HARMONICS)
    harm_amp = irregularity[:, None] * rng.standard_normal((n, N_HARMONICS)) / (k / 2.0) ** 1.4
    harm_phase = rng.uniform(0, 2 * np.pi, (n, N_HARMONICS))

    fibre_period = max(FIBRE_PERIOD * scale, MIN_FIBRE_PX) * np.exp(0.12 * rng.standard_normal(n))
    fibre_phase = rng.uniform(0, 2 * np.pi, n)
    cross_angle = rng.uniform(0.25 * np.pi, 0.75 * np.pi, (n, N_CROSS))
    cross_weight = s * rng.uniform(0.6, 1.0, (n, N_CROSS))
    fibre_loss = 1.0 - 0.8 * o  # off-target: filaments collapse into puncta
    main_weight = np.where(pyknotic, 0.0, (1.0 - 0.4 * s) * fibre_loss)
    cross_weight = np.where(pyknotic[:, None], 0.0, cross_weight * fibre_loss)
    cortex_weight = np.where(pyknotic, 0.5, 0.25 + 0.35 * s)
    actin_total = np.exp(0.25 * rng.standard_normal(n))

    nuc_a0, nuc_b0 = (_lerp((h, g), s) for h, g in zip(*NUCLEUS_AXES, strict=True))
    nuc_size = cell_scale * np.exp(0.12 * rng.standard_normal(n)) * np.sqrt(1.0 + 0.6 * o)
    nuc_a = nuc_a0 * nuc_size * scale
    nuc_b = nuc_b0 * nuc_size * scale * np.exp(0.08 * rng.standard_normal(n))
    nuc_r_pyk = 3.2 * scale * np.exp(0.1 * rng.standard_normal(n))
    nuc_a = np.where(pyknotic, nuc_r_pyk, nuc_a)
    nuc_b = np.where(pyknotic, nuc_r_pyk * 0.9, np.minimum(nuc_b, nuc_a))
    nuc_theta = theta + 0.12 * rng.standard_normal(n)
    nuc_dx = np.where(pyknotic, 0.0, 0.08 * a * rng.standard_normal(n))
    nuc_total = np.exp(0.15 * rng.standard_normal(n))
    fragmented = (rng.random(n) < 0.7 * o) & ~pyknotic
    nuc_lobes = np.where(fragmented, rng.integers(2, 5, n), 1)

    rel_area = (a * b) / ((AREA[0] / superellipse_area(SHAPE_EXPONENT[0])) * scale**2)
    n_puncta = np.where(pyknotic, 0, rng.poisson(30.0 * o * np.clip(rel_area, 0.3, 3.0)))

    return Cells(
        x=x,
        y=y,
        theta=theta,
        a=a,
        b=b,
        m=m,
        harm_amp=harm_amp,
        harm_phase=harm_phase,
        fibre_period=fibre_period,
        fibre_phase=fibre_phase,
        cross_angle=cross_angle,
        cross_weight=cross_weight,
        main_weight=main_weight,
        cortex_weight=cortex_weight,
        actin_total=actin_total,
        nuc_dx=nuc_dx,
        nuc_a=nuc_a,
        nuc_b=nuc_b,
        nuc_theta=nuc_theta,
        nuc_total=nuc_total,
        nuc_lobes=nuc_lobes,
        pyknotic=pyknotic,
        n_puncta=n_puncta,
        in_field=in_field,
    )
