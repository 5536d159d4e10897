"""Rendering one 2-channel field (actin, nuclei) as uint16 arrays from a well's biological state.

Each cell carries a fixed amount of actin and DNA stain (times a per-cell factor), spread over its
shape and summed where cells overlap, as fluorescence does. A field's mean intensity therefore
depends on how many cells it holds and on plate/well/donor brightness, never on severity: larger GoF
cells are dimmer per pixel. Pixels depend only on the state and the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from fibroclass.errors import FibroclassError
from fibroclass.simulate import artefacts as art
from fibroclass.simulate import draw
from fibroclass.simulate.cells import CELLS_PER_FIELD, MARGIN_REF, REF_SIZE, Cells, sample_cells

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


def _ring_kernel(radius: float) -> np.ndarray:
    """Normalized ring (hollow actin aggregate) of the given radius."""
    h = int(np.ceil(radius * 2 + 2))
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
    d = np.sqrt(xx * xx + yy * yy)
    k = np.exp(-((d - radius) ** 2) / (2 * max(0.35 * radius, 0.5) ** 2))
    return k / k.sum()


def _add_puncta(cells: Cells, canvas: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Draw off-target actin dots and rings; returns the actin each cell gave to them."""
    share = cells.actin_total * PUNCTA_SHARE * np.minimum(cells.n_puncta / 30.0, 1.0)
    owner, px, py, is_ring, value = draw.puncta(cells, share, rng)
    h, w = canvas.shape
    px = np.clip(np.rint(px).astype(int), 0, w - 1)
    py = np.clip(np.rint(py).astype(int), 0, h - 1)
    for ring, blur in ((False, None), (True, _ring_kernel(max(2.2 * scale, 1.0)))):
        pick = is_ring == ring
        if not pick.any():
            continue
        imp = np.bincount(py[pick] * w + px[pick], weights=value[pick], minlength=h * w).reshape(h, w)
        if blur is None:
            canvas += ndimage.gaussian_filter(imp, max(0.9 * scale, 0.5)).astype(np.float32)
        else:
            canvas += np.maximum(signal.fftconvolve(imp, blur, mode="same"), 0).astype(np.float32)
    return np.bincount(owner, weights=value, minlength=len(cells))


def render_field(state: FieldState, size: int, rng: np.random.Generator) -> RenderedField:
    """Render one field of `size` x `size` pixels; identical output for an identical generator state.

    Cell dimensions scale with size / 256 (see `cells`), so every size shows the same biology at a
    different sampling, except stress fibres, kept >= 2.4 px apart so small fields do not alias them.
    """
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

    actin = np.zeros(shape, np.float32)
    nuclei = np.zeros(shape, np.float32)
    given = _add_puncta(cells, actin, scale, rng) if cells.n_puncta.any() else 0.0
    draw.draw_actin(cells, cells.actin_total - given, actin, warp, texture)
    draw.draw_ellipses(*draw.nucleus_ellipses(cells, rng), nuclei, texture)

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
