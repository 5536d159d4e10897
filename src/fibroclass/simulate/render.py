"""Rendering one 2-channel field (actin, nuclei) as uint16 arrays from a well's biological state.

Each cell carries a fixed amount of actin and DNA stain (times a per-cell factor), spread over its
shape and summed where cells overlap, as fluorescence does. A field's mean intensity therefore
depends on how many cells it holds and on plate/well/donor brightness, never on severity: larger GoF
cells are dimmer per pixel. Pixels depend only on the state and the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage, signal

from fibroclass.errors import FibroclassError
from fibroclass.simulate import artefacts as art
from fibroclass.simulate.cells import CELLS_PER_FIELD, MARGIN_REF, N_HARMONICS, REF_SIZE, Cells, sample_cells

MIN_SIZE = 16
PUNCTA_SHARE = 0.6  # fraction of a cell's actin moved into puncta at full off-target strength


@dataclass(frozen=True)
class FieldState:
    """Everything that decides one field's pixels (besides the random generator)."""

    severity: float = 0.0  # 0 healthy ... 1 GoF
    viability: float = 1.0  # fraction of cells left (toxicity)
    offtarget: float = 0.0  # off-target morphology strength in [0, 1]
    density: float = 1.0  # multiplier of the expected cell count (donor, well)
    cell_scale: float = 1.0  # linear cell size factor (donor)
    actin_mean: float = 2000.0  # mean actin signal (counts above background) per CELLS_PER_FIELD cells
    nuclei_mean: float = 500.0  # same for the nuclear stain
    artefact: str = "none"  # one of artefacts.ARTEFACTS
    vignetting: float = 0.15  # relative fall-off at the field corners


@dataclass(frozen=True)
class RenderedField:
    actin: np.ndarray  # (H, W) uint16
    nuclei: np.ndarray  # (H, W) uint16
    n_cells: int  # cells whose centre lies in the field

    def stack(self) -> np.ndarray:
        """(2, H, W) uint16 in model channel order (actin, nuclei)."""
        return np.stack([self.actin, self.nuclei])


def _box(cx: float, cy: float, hx: float, hy: float, shape: tuple[int, int]) -> tuple[slice, slice]:
    y0, y1 = max(int(cy - hy), 0), min(int(np.ceil(cy + hy)) + 1, shape[0])
    x0, x1 = max(int(cx - hx), 0), min(int(np.ceil(cx + hx)) + 1, shape[1])
    return slice(y0, y1), slice(x0, x1)


def _local(cx: float, cy: float, th: float, sl: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (float32) of a box in a frame centred on (cx, cy) with u along angle th."""
    yy = np.arange(sl[0].start, sl[0].stop, dtype=np.float32)[:, None] - np.float32(cy)
    xx = np.arange(sl[1].start, sl[1].stop, dtype=np.float32)[None, :] - np.float32(cx)
    c, s = np.float32(np.cos(th)), np.float32(np.sin(th))
    return xx * c + yy * s, yy * c - xx * s


def _outline_level(cells: Cells, i: int, un: np.ndarray, vn: np.ndarray) -> np.ndarray:
    """Level function of cell i's outline in normalized coordinates (< 1 inside).

    A superellipse of exponent m whose radius is modulated by cos(k*angle + phase) harmonics,
    evaluated with the Chebyshev recurrence (no trigonometry per pixel).
    """
    m = float(cells.m[i])
    au, av = np.abs(un), np.abs(vn)
    rho = (au**m + av**m) ** (1.0 / m) if abs(m - 2.0) > 1e-3 else np.sqrt(au * au + av * av)
    r2 = np.sqrt(un * un + vn * vn) + np.float32(1e-6)
    c1, s1 = un / r2, vn / r2
    ck, sk = c1, s1
    radius = np.ones_like(rho)
    for j in range(N_HARMONICS):
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1  # cos/sin of (j + 2) * angle
        amp, ph = float(cells.harm_amp[i, j]), float(cells.harm_phase[i, j])
        radius += (amp * np.cos(ph)) * ck - (amp * np.sin(ph)) * sk
    return rho / np.maximum(radius, np.float32(0.3))


def _fibres(v: np.ndarray, period: float, phase: np.ndarray, seed: float, presence: float) -> np.ndarray:
    """Parallel stress fibres along u, `period` px apart, each with its own random brightness.

    `phase` (in periods) bends the fibres smoothly; about `presence` of the fibre slots hold a fibre.
    """
    pos = v * np.float32(1.0 / period) + phase
    slot = np.floor(pos)
    t = np.float32(0.5) + np.float32(0.5) * np.cos(np.float32(2 * np.pi) * pos)
    t = t * t
    weight = np.sin(slot * np.float32(78.233) + np.float32(seed)) * np.float32(43758.547)
    weight = weight - np.floor(weight)  # hash of the fibre slot, uniform in [0, 1)
    weight = np.clip((weight - (1.0 - presence)) / presence, 0.0, 1.0)
    return t * t * np.float32(0.3) + t * t * weight * np.float32(0.7 / max(presence, 0.1))


def _draw_actin(
    cells: Cells, canvas: np.ndarray, warp: np.ndarray, texture: np.ndarray, fibre_gain: float
) -> None:
    """Add every cell's actin (cytoplasm, cortex, stress fibres) into `canvas`, each summing to its total."""
    for i in range(len(cells)):
        a, b = float(cells.a[i]), float(cells.b[i])
        th = float(cells.theta[i])
        reach = 1.0 + float(np.abs(cells.harm_amp[i]).sum())
        c, s = abs(np.cos(th)), abs(np.sin(th))
        sl = _box(
            cells.x[i], cells.y[i], reach * (a * c + b * s) + 2, reach * (a * s + b * c) + 2, canvas.shape
        )
        u, v = _local(cells.x[i], cells.y[i], th, sl)
        g = _outline_level(cells, i, u * np.float32(1 / a), v * np.float32(1 / b))
        depth = (np.float32(1.0) - g) * np.float32(b)  # approximate distance to the outline, px
        inside = depth > -0.5
        if not inside.any():
            continue
        rows, cols = np.nonzero(inside)
        u, v, depth = u[rows, cols], v[rows, cols], depth[rows, cols]
        box_rows, box_cols = rows + sl[0].start, cols + sl[1].start
        alpha = np.minimum(depth + np.float32(0.5), np.float32(1.0))
        cortex = np.exp(-((depth * np.float32(1.0 / max(0.24 * b, 0.7))) ** 2))
        body = np.float32(0.3) + np.float32(cells.cortex_weight[i]) * cortex
        if fibre_gain > 0:
            period = float(cells.fibre_period[i])
            phase = (
                np.float32(cells.fibre_phase[i] / (2 * np.pi)) + np.float32(0.3) * warp[box_rows, box_cols]
            )
            fib = np.float32(cells.main_weight[i]) * _fibres(v, period, phase, float(i), 0.7)
            for j in range(cells.cross_weight.shape[1]):
                w = float(cells.cross_weight[i, j])
                if w > 1e-3:
                    ang = float(cells.cross_angle[i, j])
                    vj = v * np.float32(np.cos(ang)) - u * np.float32(np.sin(ang))
                    fib += np.float32(w) * _fibres(vj, 1.6 * period, phase, 17.0 * j + i, 0.4)
            body += (
                np.float32(fibre_gain)
                * fib
                * (np.float32(1.0) + np.float32(0.35) * texture[box_rows, box_cols])
            )
        img = alpha * np.maximum(body, np.float32(0.0))
        total = float(img.sum())
        if total > 0:
            canvas[box_rows, box_cols] += img * np.float32(cells.actin_total[i] / total)


def _ellipse(
    canvas: np.ndarray, cx: float, cy: float, a: float, b: float, th: float, total: float, texture: np.ndarray
) -> None:
    """Add a soft-edged textured ellipse whose pixels sum to `total`."""
    sl = _box(cx, cy, a + 2, a + 2, canvas.shape)
    u, v = _local(cx, cy, th, sl)
    depth = (1.0 - np.sqrt((u / a) ** 2 + (v / b) ** 2)) * b
    img = np.clip(depth + 0.5, 0.0, 1.0) * (1.0 + 0.15 * texture[sl])
    s = float(img.sum())
    if s > 0:
        canvas[sl] += img * (total / s)


def _draw_nuclei(cells: Cells, canvas: np.ndarray, texture: np.ndarray, rng: np.random.Generator) -> None:
    """Add every nucleus (intact, pyknotic or fragmented into lobes), each summing to its DNA total."""
    for i in range(len(cells)):
        th = cells.nuc_theta[i]
        cx = cells.x[i] + cells.nuc_dx[i] * np.cos(cells.theta[i])
        cy = cells.y[i] + cells.nuc_dx[i] * np.sin(cells.theta[i])
        a, b, total = max(cells.nuc_a[i], 0.8), max(cells.nuc_b[i], 0.8), cells.nuc_total[i]
        lobes = int(cells.nuc_lobes[i])
        if lobes == 1:
            _ellipse(canvas, cx, cy, a, b, th, total, texture)
            continue
        r = np.sqrt(a * b)
        angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(lobes) / lobes
        sizes = rng.uniform(0.4, 0.75, lobes)
        for ang, f in zip(angles, sizes, strict=True):
            dist = r * (0.6 + 0.5 * f)
            _ellipse(
                canvas,
                cx + dist * np.cos(ang),
                cy + dist * np.sin(ang),
                r * f,
                r * f * 0.85,
                ang,
                total / lobes,
                texture,
            )


def _ring_kernel(radius: float) -> np.ndarray:
    """Normalized ring (hollow actin aggregate) of the given radius."""
    h = int(np.ceil(radius * 2 + 2))
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    d = np.sqrt(xx * xx + yy * yy)
    k = np.exp(-((d - radius) ** 2) / (2 * max(0.35 * radius, 0.5) ** 2))
    return k / k.sum()


def _draw_puncta(cells: Cells, canvas: np.ndarray, scale: float, rng: np.random.Generator) -> None:
    """Move part of each off-target cell's actin into dots and rings inside the cell."""
    dots = np.zeros_like(canvas)
    rings = np.zeros_like(canvas)
    h, w = canvas.shape
    for i in np.flatnonzero(cells.n_puncta > 0):
        k = int(cells.n_puncta[i])
        un, vn = rng.uniform(-1, 1, (2, 4 * k + 8))
        keep = _outline_level(cells, i, un, vn) < 0.8
        un, vn = un[keep][:k], vn[keep][:k]
        if un.size == 0:
            continue
        u, v = un * cells.a[i], vn * cells.b[i]
        c, s = np.cos(cells.theta[i]), np.sin(cells.theta[i])
        px = np.clip(np.rint(cells.x[i] + u * c - v * s).astype(int), 0, w - 1)
        py = np.clip(np.rint(cells.y[i] + u * s + v * c).astype(int), 0, h - 1)
        share = cells.actin_total[i] * PUNCTA_SHARE * min(k / 30.0, 1.0)
        is_ring = rng.random(un.size) < 0.4
        np.add.at(rings, (py[is_ring], px[is_ring]), share / un.size)
        np.add.at(dots, (py[~is_ring], px[~is_ring]), share / un.size)
    if dots.any():
        canvas += ndimage.gaussian_filter(dots, max(0.9 * scale, 0.5))
    if rings.any():
        canvas += np.maximum(signal.fftconvolve(rings, _ring_kernel(max(2.2 * scale, 1.0)), mode="same"), 0)


def _rebalance_puncta(cells: Cells) -> Cells:
    """Take the actin given to puncta away from the cell bodies so each cell's total is unchanged."""
    moved = PUNCTA_SHARE * np.minimum(cells.n_puncta / 30.0, 1.0)
    body = cells.actin_total * (1.0 - moved)
    return replace(cells, actin_total=body)


def render_field(state: FieldState, size: int, rng: np.random.Generator) -> RenderedField:
    """Render one field of `size` x `size` pixels; identical output for an identical generator state."""
    if size < MIN_SIZE:
        raise FibroclassError(f"field size {size} px is too small (minimum {MIN_SIZE})")
    if state.artefact not in art.ARTEFACTS:
        raise FibroclassError(f"unknown artefact {state.artefact!r}; expected one of {art.ARTEFACTS}")
    scale = size / REF_SIZE
    margin = int(round(MARGIN_REF * scale))
    padded = size + 2 * margin
    n_expected = 1.5 * rng.random() if state.artefact == "empty" else None
    cells = sample_cells(
        rng,
        size,
        state.severity,
        viability=state.viability,
        offtarget=state.offtarget,
        density=state.density,
        cell_scale=state.cell_scale,
        n_expected=n_expected,
    )
    shape = (padded, padded)
    warp = art.smooth_noise(rng, shape, 8.0 * scale)
    texture = art.smooth_noise(rng, shape, max(1.5 * scale, 0.7))
    fibre_gain = float(np.clip((cells.fibre_period.mean() if len(cells) else 3.0) - 1.8, 0.0, 1.0))

    actin = np.zeros(shape, np.float32)
    nuclei = np.zeros(shape, np.float32)
    off = cells.n_puncta.any()
    _draw_actin(_rebalance_puncta(cells) if off else cells, actin, warp, texture, fibre_gain)
    if off:
        _draw_puncta(cells, actin, scale, rng)
    _draw_nuclei(cells, nuclei, texture, rng)

    # Optics: a small point-spread function, then crop the padding away.
    psf = max(0.6 * scale, 0.4)
    crop = (slice(margin, margin + size), slice(margin, margin + size))
    per_cell_px = size * size / CELLS_PER_FIELD
    actin = ndimage.gaussian_filter(actin, psf)[crop] * (state.actin_mean * per_cell_px)
    nuclei = ndimage.gaussian_filter(nuclei, psf)[crop] * (state.nuclei_mean * per_cell_px)

    bg = 1.0 + 0.1 * art.smooth_noise(rng, (size, size), 40.0 * scale)
    actin += 0.06 * state.actin_mean * bg
    nuclei += 0.04 * state.nuclei_mean * bg
    if state.artefact == "blur":
        actin, nuclei = art.defocus(actin, scale), art.defocus(nuclei, scale)
    vig = art.vignette((size, size), state.vignetting, rng)
    actin *= vig
    nuclei *= vig
    if state.artefact == "debris":
        mask = art.debris_mask(rng, (size, size), scale)
        actin += mask * 1.5 * art.SATURATION
        nuclei += mask * rng.uniform(0.3, 1.2) * art.SATURATION
    return RenderedField(
        actin=art.camera(rng, actin), nuclei=art.camera(rng, nuclei), n_cells=int(cells.in_field.sum())
    )
