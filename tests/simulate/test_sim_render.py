"""One rendered field: determinism, biology along the severity axis, toxicity, off-target, artefacts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sim_measures import blobness, coherency, nuclei_regions

from fibroclass.errors import FibroclassError
from fibroclass.simulate import FieldState, render_field

SEEDS = range(6)


def render(seed: int, size: int = 128, **state) -> tuple[np.ndarray, np.ndarray, int]:
    f = render_field(FieldState(**state), size, np.random.default_rng(seed))
    return f.actin, f.nuclei, f.n_cells


def test_same_generator_same_pixels_and_uint16_planes():
    a1, n1, c1 = render(7, size=96, severity=0.4)
    a2, n2, c2 = render(7, size=96, severity=0.4)
    a3, _, _ = render(8, size=96, severity=0.4)
    assert a1.dtype == n1.dtype == np.uint16 and a1.shape == n1.shape == (96, 96)
    assert np.array_equal(a1, a2) and np.array_equal(n1, n2) and c1 == c2
    assert not np.array_equal(a1, a3)


def test_healthy_fields_are_aligned_and_gof_fields_are_not():
    """Structure-tensor coherency of actin falls monotonically from healthy to mid to GoF severity."""
    coh = {s: [coherency(render(seed, severity=s)[0]) for seed in SEEDS] for s in (0.0, 0.5, 1.0)}
    assert min(coh[0.0]) > 0.5
    assert max(coh[1.0]) < 0.25
    assert np.mean(coh[0.0]) > np.mean(coh[0.5]) > np.mean(coh[1.0])


def test_gof_nuclei_are_larger_and_rounder():
    healthy = [r for seed in SEEDS for r in nuclei_regions(render(seed, size=256, severity=0.0)[1])]
    gof = [r for seed in SEEDS for r in nuclei_regions(render(seed, size=256, severity=1.0)[1])]
    area = lambda rs: np.median([r.area for r in rs])  # noqa: E731
    ecc = lambda rs: np.median([r.eccentricity for r in rs])  # noqa: E731
    assert area(gof) > 1.4 * area(healthy)
    assert ecc(gof) < ecc(healthy) - 0.15


def test_mean_brightness_does_not_follow_severity():
    """Cells carry the same stain whatever their shape: field means of healthy and GoF overlap."""
    healthy = [render(seed, severity=0.0)[0].mean() for seed in SEEDS]
    gof = [render(seed, severity=1.0)[0].mean() for seed in SEEDS]
    assert abs(np.mean(gof) / np.mean(healthy) - 1.0) < 0.1


def test_toxicity_removes_cells_and_condenses_nuclei():
    alive = [render(seed, size=192, severity=1.0) for seed in SEEDS]
    toxic = [render(seed, size=192, severity=1.0, viability=0.3) for seed in SEEDS]
    assert np.mean([c for *_, c in toxic]) < 0.45 * np.mean([c for *_, c in alive])
    # Counted from the image, not the ground truth.
    assert np.mean([len(nuclei_regions(n)) for _, n, _ in toxic]) < 0.6 * np.mean(
        [len(nuclei_regions(n)) for _, n, _ in alive]
    )
    # Pyknotic nuclei: small and bright.
    alive_regions = [r for _, n, _ in alive for r in nuclei_regions(n)]
    toxic_regions = [r for _, n, _ in toxic for r in nuclei_regions(n)]
    assert np.median([r.area for r in toxic_regions]) < np.median([r.area for r in alive_regions])
    assert np.median([r.intensity_max for r in toxic_regions]) > np.median(
        [r.intensity_max for r in alive_regions]
    )


def test_offtarget_adds_actin_puncta_without_changing_alignment():
    for seed in SEEDS[:3]:
        for severity in (0.0, 1.0):
            plain = render(seed, size=256, severity=severity)[0]
            off = render(seed, size=256, severity=severity, offtarget=1.0)[0]
            assert blobness(off) > 1.3 * blobness(plain)
        # Still aligned healthy-shaped cells: not a move along the healthy -> GoF axis.
        off_actin, off_nuclei, _ = render(seed, size=256, severity=0.0, offtarget=1.0)
        assert coherency(off_actin) > 0.4
        # Fragmented nuclei: more, smaller nuclear objects for the same cells.
        plain_nuclei = render(seed, size=256, severity=0.0)[1]
        assert len(nuclei_regions(off_nuclei)) > 1.3 * len(nuclei_regions(plain_nuclei))


def test_blur_field_loses_sharpness():
    for seed in SEEDS[:3]:
        sharp = render(seed, severity=0.0)[0].astype(np.float64)
        blurred = render(seed, severity=0.0, artefact="blur")[0].astype(np.float64)
        assert ndimage.laplace(blurred).var() < 0.1 * ndimage.laplace(sharp).var()


def test_empty_field_has_almost_no_cells():
    for seed in SEEDS:
        actin, nuclei, n = render(seed, severity=0.5, artefact="empty")
        assert n <= 2
        full = render(seed, severity=0.5)[0]
        assert actin.mean() < 0.3 * full.mean()


def test_debris_is_saturated():
    actin, _, _ = render(1, severity=0.0, artefact="debris")
    clean, _, _ = render(1, severity=0.0)
    assert (actin == 65535).sum() > 5
    assert (clean == 65535).sum() == 0


def test_vignetting_darkens_the_corners():
    actin, _, _ = render(2, size=128, artefact="empty", vignetting=0.6)
    centre = actin[48:80, 48:80].mean()
    corners = np.mean(
        [actin[:16, :16].mean(), actin[:16, -16:].mean(), actin[-16:, :16].mean(), actin[-16:, -16:].mean()]
    )
    assert corners < 0.9 * centre


def test_large_fields_render():
    actin, nuclei, n = render(0, size=1080, severity=0.3)
    assert actin.shape == (1080, 1080) and n > 10


@pytest.mark.parametrize("state, size", [(FieldState(), 8), (FieldState(artefact="smudge"), 64)])
def test_bad_render_requests_raise(state, size):
    with pytest.raises(FibroclassError):
        render_field(state, size, np.random.default_rng(0))
