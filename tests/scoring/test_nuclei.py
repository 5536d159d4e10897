"""Nuclei counting on generated disc images: accuracy, touching nuclei, pyknosis, empty fields, scaling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from fibroclass.errors import FibroclassError
from fibroclass.measure.nuclei import NucleiParams, count_nuclei, segment_nuclei


def disc_field(
    n: int,
    seed: int = 0,
    size: int = 256,
    r: float = 7.0,
    touching: int = 0,
    pyknotic: int = 0,
    noise: float = 0.01,
    vignetting: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Nuclei-like discs (radius ~r) on a noisy background; `touching` of them get a touching twin.

    Returns the image and the true number of nuclei.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size), np.float32)
    # Jittered grid positions: discs (and their twins) never touch unless asked to.
    step = 4.5 * r
    grid = [
        (y, x)
        for y in np.arange(2.5 * r, size - 2.5 * r, step)
        for x in np.arange(2.5 * r, size - 2.5 * r, step)
    ]
    if n > len(grid):
        raise ValueError(f"{n} discs do not fit a {size} px field")
    picks = rng.choice(len(grid), size=n, replace=False)
    centres = [np.array(grid[i]) + rng.uniform(-0.4 * r, 0.4 * r, 2) for i in picks]
    for k, (cy, cx) in enumerate(centres):
        rr, amp = r * rng.uniform(0.85, 1.15), 0.35
        if k < pyknotic:
            rr, amp = rr * 0.5, amp * 2.5
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= rr**2] = amp
        if k >= pyknotic and k < pyknotic + touching:
            ang = rng.uniform(0, 2 * np.pi)
            ty, tx = cy + 1.7 * r * np.sin(ang), cx + 1.7 * r * np.cos(ang)
            img[(yy - ty) ** 2 + (xx - tx) ** 2 <= rr**2] = amp
    img = ndi.gaussian_filter(img, 1.0) + 0.05
    vig = 1 - vignetting * ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 2) ** 2)
    img = img * vig + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 1).astype(np.float32), n + touching


@pytest.mark.parametrize(("n", "seed"), [(5, 1), (25, 2), (45, 3)])
def test_counts_separate_discs_within_10_percent(n: int, seed: int) -> None:
    img, truth = disc_field(n, seed=seed)
    assert abs(count_nuclei(img).n - truth) <= max(1, 0.1 * truth)


def test_touching_nuclei_are_split() -> None:
    img, truth = disc_field(30, seed=4, touching=12)
    labels = segment_nuclei(img)
    n_blobs = ndi.label(labels > 0)[1]
    assert n_blobs < truth  # the pairs really touch
    assert abs(count_nuclei(img).n - truth) <= 0.1 * truth


@pytest.mark.parametrize("vignetting", [0.0, 0.4])
@pytest.mark.parametrize("noise", [0.002, 0.01, 0.05])
def test_empty_field_gives_zero(noise: float, vignetting: float) -> None:
    img, _ = disc_field(0, seed=5, noise=noise, vignetting=vignetting)
    counts = count_nuclei(img)
    assert counts.n == 0 and counts.n_pyknotic == 0
    assert count_nuclei(np.zeros((64, 64), np.float32)).n == 0


def test_counts_do_not_depend_on_intensity_scale() -> None:
    img, _ = disc_field(20, seed=6, touching=5, vignetting=0.3)
    counts = [count_nuclei(img * s).n for s in (1.0, 0.1, 0.01)]
    assert len(set(counts)) == 1


def test_pyknotic_nuclei_counted_separately() -> None:
    img, truth = disc_field(30, seed=7, pyknotic=8)
    counts = count_nuclei(img)
    assert abs(counts.n - truth) <= 2
    assert 6 <= counts.n_pyknotic <= 10
    assert count_nuclei(disc_field(30, seed=7)[0]).n_pyknotic == 0


def test_reference_area_from_plate_controls() -> None:
    """With a plate reference, a field of only small bright nuclei is recognised as pyknotic."""
    img, _ = disc_field(20, seed=8, pyknotic=20)
    normal = count_nuclei(disc_field(20, seed=9)[0])
    own = count_nuclei(img)
    ref = count_nuclei(img, ref_area_px=normal.median_area_px, ref_intensity=normal.mean_intensity)
    assert own.n_pyknotic < 5  # against itself, a uniform field looks normal
    assert ref.n_pyknotic >= 18


def test_non_finite_pixels_are_tolerated() -> None:
    img, truth = disc_field(15, seed=10)
    img[:10, :10] = np.nan
    assert abs(count_nuclei(img).n - truth) <= 1


def test_bad_input_and_config_raise() -> None:
    with pytest.raises(FibroclassError, match="2-D"):
        count_nuclei(np.zeros((2, 32, 32), np.float32))
    with pytest.raises(FibroclassError, match="nuclei"):
        NucleiParams.from_dict({"min_area": 3})
