"""Organization co-readout on images whose orientation and order are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from fibroclass.errors import FibroclassError
from fibroclass.measure import organization as org

N = 256


def _grid(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    return yy, xx


def parallel_lines(deg: float, n: int = N, period: float = 8.0) -> np.ndarray:
    """Sinusoidal fibres running at `deg` (counter-clockwise from x, y up)."""
    yy, xx = _grid(n)
    t = np.radians(deg)
    across = -np.sin(t) * xx + np.cos(t) * (-yy)  # coordinate perpendicular to the fibres
    return 500.0 + 500.0 * np.cos(2 * np.pi * across / period)  # raw-like counts


def rings(n: int = N, period: float = 8.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concentric rings around the centre; returns (image, radius, tangential orientation)."""
    yy, xx = _grid(n)
    c = (n - 1) / 2
    r = np.hypot(xx - c, yy - c)
    radial = np.arctan2(-(yy - c), xx - c)
    return 500.0 + 500.0 * np.cos(2 * np.pi * r / period), r, np.mod(radial + np.pi / 2, np.pi)


def axial_diff_deg(a_deg: np.ndarray | float, b_deg: np.ndarray | float) -> np.ndarray:
    """Smallest difference between axial angles (degrees, period 180)."""
    return np.abs((np.asarray(a_deg) - np.asarray(b_deg) + 90.0) % 180.0 - 90.0)


@pytest.mark.parametrize("deg", [0.0, 30.0, 45.0, 90.0, 135.0, 170.0])
def test_parallel_lines_are_coherent_and_angle_is_recovered(deg: float) -> None:
    img = parallel_lines(deg)
    coh = org.coherency(img)
    assert coh.shape == img.shape
    assert coh[8:-8, 8:-8].mean() > 0.9
    theta = org.orientation(img)
    assert theta.shape == img.shape
    assert np.all((theta >= -np.pi / 2) & (theta <= np.pi / 2))  # OrientationJ's range
    assert np.median(axial_diff_deg(np.degrees(theta[8:-8, 8:-8]), deg)) < 2.0

    feats = org.field_organization(img)
    assert feats[org.ORG_COHERENCY] > 0.9
    assert axial_diff_deg(feats[org.ORG_ORIENTATION_DEG], deg) < 2.0
    assert -90.0 <= feats[org.ORG_ORIENTATION_DEG] <= 90.0
    assert feats[org.ORG_ORDER] > 0.95
    assert feats[org.ORG_LOCAL_ORDER] > 0.95


def test_orientation_convention_on_single_bright_lines() -> None:
    """A horizontal line is 0 deg, a vertical one 90 deg, the upper-right diagonal 45 deg."""
    horizontal = np.zeros((64, 64))
    horizontal[32, :] = 1000.0
    vertical = horizontal.T.copy()
    diagonal = 1000.0 * np.fliplr(np.eye(64))  # runs from bottom-left to top-right on screen
    for img, deg in [(horizontal, 0.0), (vertical, 90.0), (diagonal, 45.0)]:
        feats = org.field_organization(img, sigma=2.0)
        assert axial_diff_deg(feats[org.ORG_ORIENTATION_DEG], deg) < 2.0


def test_isotropic_noise_has_low_coherency_and_order() -> None:
    noise = 1000.0 * np.random.default_rng(0).random((N, N))
    assert org.coherency(noise, sigma=10.0).mean() < 0.1
    # with a 1 px window noise looks locally oriented (≈ 0.22), so the window size matters
    assert org.coherency(noise, sigma=1.0).mean() > 0.18
    feats = org.field_organization(noise, sigma=10.0)
    assert feats[org.ORG_COHERENCY] < 0.15
    assert feats[org.ORG_ORDER] < 0.3


def test_concentric_rings_are_locally_coherent_but_globally_unordered() -> None:
    img, r, tangent = rings()
    ring_zone = (r > 20) & (r < 120)
    coh = org.coherency(img, sigma=2.0)
    assert coh[ring_zone].mean() > 0.9
    theta = org.orientation(img, sigma=2.0)
    assert np.median(axial_diff_deg(np.degrees(theta[ring_zone]), np.degrees(tangent[ring_zone]))) < 2.0
    assert np.percentile(axial_diff_deg(np.degrees(theta[ring_zone]), np.degrees(tangent[ring_zone])), 95) < 5

    feats = org.field_organization(img)
    assert feats[org.ORG_COHERENCY] > 0.9
    assert feats[org.ORG_ORDER] < 0.05
    assert feats[org.ORG_LOCAL_ORDER] > 0.6


def test_coherency_is_zero_where_there_is_no_energy() -> None:
    """OrientationJ divides by energy + 0.001: no gradient gives 0, a barely visible pattern ~0."""
    assert np.all(org.coherency(np.zeros((32, 32))) == 0.0)
    assert np.all(org.coherency(np.full((32, 32), 7.0)) < 1e-6)
    faint = parallel_lines(0.0, n=64) * 1e-5  # amplitude 0.005 counts
    assert org.coherency(faint)[8:-8, 8:-8].max() < 0.05
    coh = org.coherency(parallel_lines(0.0, n=64))
    assert np.all((coh >= 0) & (coh <= 1))


def test_disordered_field_scores_below_aligned_field() -> None:
    """Random short fibres (GoF-like) vs parallel fibres (healthy-like) on the same brightness."""
    rng = np.random.default_rng(1)
    yy, xx = _grid(N)
    random_fibres = np.zeros((N, N))
    for _ in range(150):
        cy, cx, t = rng.uniform(0, N), rng.uniform(0, N), rng.uniform(0, np.pi)
        dx, dy_up = xx - cx, -(yy - cy)
        along = dx * np.cos(t) + dy_up * np.sin(t)
        across = -dx * np.sin(t) + dy_up * np.cos(t)
        random_fibres += 1000.0 * np.exp(-(across**2) / 2.0) * (np.abs(along) < 30)
    aligned = parallel_lines(20.0)
    f_rand = org.field_organization(random_fibres)
    f_al = org.field_organization(aligned)
    assert f_al[org.ORG_COHERENCY] > f_rand[org.ORG_COHERENCY] + 0.2
    assert f_al[org.ORG_ORDER] > f_rand[org.ORG_ORDER] + 0.5


def test_background_is_excluded_from_foreground() -> None:
    img = np.zeros((128, 128))
    img[:, :64] = parallel_lines(90.0, n=128)[:, :64]
    mask = org.foreground_mask(img)
    assert mask[:, :56].mean() > 0.95
    assert mask[:, 80:].mean() < 0.05
    feats = org.field_organization(img)
    assert 0.4 < feats[org.ORG_ACTIN_FRACTION] < 0.65


def test_nuclei_count_shape_and_orientation() -> None:
    nuc = np.zeros((256, 256))
    yy, xx = _grid(256)
    centres = [(40, 40), (40, 140), (140, 60), (200, 200), (120, 200)]
    for cy, cx in centres:  # horizontal ellipses, semi-axes 12 x 5 px
        nuc += (((xx - cx) / 12.0) ** 2 + ((yy - cy) / 5.0) ** 2) <= 1.0
    stats = org.nuclei_stats(nuc)
    assert stats[org.ORG_NUCLEI_COUNT] == len(centres)
    assert stats[org.ORG_NUCLEI_PER_MPX] == pytest.approx(1e6 * len(centres) / 256**2)
    assert stats[org.ORG_NUCLEI_AREA] == pytest.approx(np.pi * 12 * 5, rel=0.3)
    assert stats[org.ORG_NUCLEI_ASPECT] == pytest.approx(12 / 5, rel=0.25)
    assert stats[org.ORG_NUCLEI_ECC] > 0.8
    assert stats[org.ORG_NUCLEI_ORDER] > 0.99

    feats = org.field_organization(parallel_lines(0.0), nuclei=nuc)
    assert set(org.ACTIN_KEYS + org.NUCLEI_KEYS) == set(feats)
    assert feats[org.ORG_NUCLEI_COUNT] == len(centres)


def test_empty_field_gives_nan_organization_and_zero_nuclei() -> None:
    feats = org.field_organization(np.zeros((64, 64)), nuclei=np.zeros((64, 64)))
    assert feats[org.ORG_ACTIN_FRACTION] == 0.0
    assert np.isnan(feats[org.ORG_COHERENCY]) and np.isnan(feats[org.ORG_ORDER])
    assert feats[org.ORG_NUCLEI_COUNT] == 0.0
    assert np.isnan(feats[org.ORG_NUCLEI_AREA])


def test_uint16_input_matches_scaled_float_input() -> None:
    """A [0, 1]-scaled plane with its full scale gives the raw file's numbers (OrientationJ's ε is absolute)."""
    img = parallel_lines(60.0) / 1000.0
    as_u16 = (img * 600).astype(np.uint16)  # a faint 16-bit pattern: ε matters on the [0, 1] scale
    a = org.field_organization(as_u16)
    b = org.field_organization(as_u16.astype(np.float32) / 65535, intensity_scale=65535)
    for key in org.ACTIN_KEYS:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6)
    unscaled = org.field_organization(as_u16.astype(np.float32) / 65535)
    assert unscaled[org.ORG_COHERENCY] < a[org.ORG_COHERENCY] - 0.1


def test_window_in_micrometres_is_converted_per_pixel_size() -> None:
    assert org.window_px(3.0, 0.65) == pytest.approx(3.0 / 0.65)
    assert org.window_px(3.0, 0.65, factor=2) == pytest.approx(3.0 / 1.3)
    for unknown in (None, float("nan"), 0.0, "n/a"):
        assert org.window_px(3.0, unknown) == org.FIELD_SIGMA  # unknown pixel size: the px window


def test_bad_inputs_raise_fibroclass_error() -> None:
    with pytest.raises(FibroclassError, match="2-D"):
        org.coherency(np.zeros((2, 8, 8)))
    with pytest.raises(FibroclassError, match="nuclei shape"):
        org.field_organization(np.zeros((16, 16)), nuclei=np.zeros((8, 8)))
    with pytest.raises(FibroclassError, match="mask shape"):
        org.field_organization(np.zeros((16, 16)), mask=np.ones((8, 8), bool))


def test_nuclei_shape_matches_skimage_regionprops() -> None:
    """The vectorized moments agree with scikit-image's regionprops on random blobs."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops

    rng = np.random.default_rng(5)
    nuc = ndi.gaussian_filter((rng.random((256, 256)) > 0.998).astype(float), 3.0)
    nuc = ndi.gaussian_filter(nuc + ndi.shift(nuc, (2, 5)), 1.0)
    stats = org.nuclei_stats(nuc, min_area=20)
    smooth = ndi.gaussian_filter(nuc, 1.0)
    props = [p for p in regionprops(label(smooth > threshold_otsu(smooth))) if p.area >= 20]
    assert stats[org.ORG_NUCLEI_COUNT] == len(props) > 10
    assert stats[org.ORG_NUCLEI_AREA] == pytest.approx(np.mean([p.area for p in props]))
    assert stats[org.ORG_NUCLEI_ECC] == pytest.approx(np.mean([p.eccentricity for p in props]), rel=1e-6)
    aspect = np.mean([p.axis_major_length / p.axis_minor_length for p in props])
    assert stats[org.ORG_NUCLEI_ASPECT] == pytest.approx(aspect, rel=1e-6)
    theta = np.array([p.orientation for p in props]) + np.pi / 2
    assert stats[org.ORG_NUCLEI_ORDER] == pytest.approx(np.abs(np.mean(np.exp(2j * theta))), abs=1e-9)


SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
SIM_SIZE = 128


@pytest.fixture(scope="module")
def simulated_organization() -> dict[float, list[dict[str, float]]]:
    """Co-readout of simulator fields (4 per severity, 128 px, tensor window scaled to the field size)."""
    from fibroclass.simulate import FieldState, render_field

    sigma = org.FIELD_SIGMA * SIM_SIZE / 256
    out: dict[float, list[dict[str, float]]] = {}
    for sev in SEVERITIES:
        fields = [
            render_field(FieldState(severity=sev), SIM_SIZE, np.random.default_rng(100 + s)) for s in range(4)
        ]
        out[sev] = [org.field_organization(f.actin, f.nuclei, sigma=sigma, window=16) for f in fields]
    return out


def test_simulated_coherency_falls_monotonically_from_healthy_to_gof(simulated_organization) -> None:
    from scipy.stats import spearmanr

    means = [np.mean([f[org.ORG_COHERENCY] for f in simulated_organization[s]]) for s in SEVERITIES]
    assert all(a > b for a, b in zip(means, means[1:], strict=False)), means
    sev = [s for s in SEVERITIES for _ in simulated_organization[s]]
    coh = [f[org.ORG_COHERENCY] for s in SEVERITIES for f in simulated_organization[s]]
    assert spearmanr(sev, coh).statistic < -0.9
    healthy = [f[org.ORG_COHERENCY] for f in simulated_organization[0.0]]
    gof = [f[org.ORG_COHERENCY] for f in simulated_organization[1.0]]
    assert min(healthy) > max(gof)


def test_simulated_order_and_nuclei_shape_follow_severity(simulated_organization) -> None:
    def mean(sev: float, key: str) -> float:
        return float(np.mean([f[key] for f in simulated_organization[sev]]))

    assert mean(0.0, org.ORG_ORDER) > 0.8 > 0.4 > mean(1.0, org.ORG_ORDER)
    assert mean(0.0, org.ORG_NUCLEI_ASPECT) > mean(1.0, org.ORG_NUCLEI_ASPECT)
    assert mean(0.0, org.ORG_NUCLEI_ORDER) > mean(1.0, org.ORG_NUCLEI_ORDER) + 0.3
    assert mean(0.0, org.ORG_NUCLEI_COUNT) > 20


def test_coherency_does_not_depend_on_brightness() -> None:
    from fibroclass.simulate import FieldState, render_field

    sigma = org.FIELD_SIGMA * SIM_SIZE / 256
    dim = render_field(FieldState(severity=0.5, actin_mean=1000.0), SIM_SIZE, np.random.default_rng(7))
    bright = render_field(FieldState(severity=0.5, actin_mean=4000.0), SIM_SIZE, np.random.default_rng(7))
    assert bright.actin.mean() > 2 * dim.actin.mean()
    c_dim = org.field_organization(dim.actin, sigma=sigma)[org.ORG_COHERENCY]
    c_bright = org.field_organization(bright.actin, sigma=sigma)[org.ORG_COHERENCY]
    assert c_bright == pytest.approx(c_dim, abs=0.03)
