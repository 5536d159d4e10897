"""OrientationJ's structure tensor: building blocks against the plugin's algorithm, known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy.signal import lfilter

from fibroclass import organization as public
from fibroclass.errors import FibroclassError
from fibroclass.measure import structure_tensor as st


def grating(theta_deg: float, period: float, n: int = 128, amp: float = 100.0, phase: float = 0.3) -> np.ndarray:
    """Lines at theta_deg counter-clockwise on screen from the horizontal (image[y, x], y down)."""
    t = np.deg2rad(theta_deg)
    y, x = np.mgrid[0:n, 0:n].astype(float)
    return amp * np.cos(2 * np.pi / period * (x * np.sin(t) + y * np.cos(t)) + phase)


def angdiff(a, b) -> np.ndarray:
    """Difference of axial angles in degrees, in [-90, 90)."""
    return (np.asarray(a) - b + 90.0) % 180.0 - 90.0


def plugin_window_rows(rows: np.ndarray, sigma: float) -> np.ndarray:
    """filters/Gaussian.java transcribed pass by pass: 9 causal + anticausal first-order passes with the
    plugin's mirror initialisations (causal: mirror sum truncated at a 1e-5 horizon)."""
    z = st.window_pole(sigma)
    n = rows.shape[-1]
    horizon = min(n, 2 + int(np.log(1e-5) / np.log(abs(z))))
    w = np.zeros(n)
    w[0] = 1.0
    w[n - 1] += z ** (n - 1)
    k = np.arange(1, horizon - 1)
    w[k] += z**k + z ** (2 * n - 2 - k)
    w /= 1.0 - z ** (2 * n - 2)
    y = rows * ((1.0 - z) * (1.0 - 1.0 / z)) ** 9
    for _ in range(9):
        init = y @ w
        y, _ = lfilter([1.0], [1.0, -z], y, axis=-1, zi=(init - y[:, 0])[:, None])
        last = (z * y[:, -2] + y[:, -1]) * z / (z * z - 1.0)
        rev = -z * y[:, ::-1]
        out, _ = lfilter([1.0], [1.0, -z], rev, axis=-1, zi=(last - rev[:, 0])[:, None])
        y = out[:, ::-1]
    return y


def plugin_window(a: np.ndarray, sigma: float) -> np.ndarray:
    cols = plugin_window_rows(np.ascontiguousarray(a.T), sigma).T
    return plugin_window_rows(np.ascontiguousarray(cols), sigma)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 12.0])
def test_window_equals_the_plugins_nine_pass_recursion(sigma: float) -> None:
    a = np.random.default_rng(0).normal(size=(40, 90)) * 100
    ours, ref = st.window(a, sigma), plugin_window(a, sigma)
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() / scale < 1e-4  # the plugin truncates its causal init at 1e-5
    b = int(6 * np.sqrt(3) * sigma)
    if min(a.shape) > 2 * b + 4:
        assert np.abs(ours - ref)[b:-b, b:-b].max() / scale < 1e-7


@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0])
def test_window_has_unit_gain_and_variance_3_sigma2(sigma: float) -> None:
    n = 201
    d = np.zeros((n, n))
    d[n // 2, n // 2] = 1.0
    h = st.window(d, sigma)
    x = np.arange(n) - n // 2
    assert h.sum() == pytest.approx(1.0, abs=1e-10)
    assert (h.sum(0) * x**2).sum() == pytest.approx(3 * sigma**2, rel=1e-8)
    assert np.allclose(h, h.T) and np.allclose(h, h[::-1, ::-1])
    assert np.array_equal(st.window(d, 0), d)


def test_spline_gradient_is_the_cubic_spline_derivative_with_the_plugins_sign() -> None:
    f = np.random.default_rng(2).normal(size=(30, 90))
    c = st._spline_coefficients(f)
    assert np.abs(c - ndi.spline_filter1d(f, order=3, axis=1, mode="mirror"))[:, 20:].max() < 1e-10
    w = 0.4
    x = np.arange(256.0)
    gx, gy = st.gradient(np.tile(np.sin(w * x), (16, 1)))
    h = 3 * np.sin(w) / (2 + np.cos(w))  # frequency response of the spline derivative
    assert np.abs(gx[:, 20:-20] + h * np.cos(w * x[20:-20])).max() < 1e-9
    assert np.all(gx[:, [0, -1]] == 0) and np.abs(gy).max() < 1e-5
    gx, _ = st.gradient(np.tile(3.0 * np.arange(20.0), (5, 1)), "finite_difference")
    assert np.allclose(gx[:, 1:-1], -6.0)  # s[x-1] - s[x+1], no 1/2


def test_orientation_convention_counter_clockwise_on_screen() -> None:
    n = 64
    y, x = np.mgrid[0:n, 0:n]
    up_right = 100.0 * np.exp(-0.5 * ((x + y - n) / 2.0) ** 2)  # "/" on screen
    down_right = 100.0 * np.exp(-0.5 * ((x - y) / 2.0) ** 2)  # "\" on screen
    horizontal = 100.0 * np.exp(-0.5 * ((y - n / 2) / 2.0) ** 2)
    c = (slice(24, 40), slice(24, 40))
    assert np.abs(angdiff(st.orientation(up_right, degrees=True)[c], 45)).max() < 1e-6
    assert np.abs(angdiff(st.orientation(down_right, degrees=True)[c], -45)).max() < 1e-6
    assert np.abs(st.orientation(horizontal)[c]).max() < 1e-6
    assert np.abs(angdiff(st.orientation(horizontal.T, degrees=True)[c], 90)).max() < 1e-6
    theta = st.orientation(up_right)
    assert theta[32, 32] == pytest.approx(np.pi / 4) and np.all(np.abs(theta) <= np.pi / 2)


@pytest.mark.parametrize("theta", [0, 30, 45, 75, 90, -20, -60, 120])
def test_parallel_lines_have_coherency_one_and_their_angle(theta: float) -> None:
    img = grating(theta, 8)
    c = st.coherency(img)[12:-12, 12:-12]
    o = st.orientation(img, degrees=True)[12:-12, 12:-12]
    assert c.min() > 0.999
    assert np.abs(angdiff(o, theta)).max() < 0.15


@pytest.mark.parametrize(("a", "b"), [(0, 30), (10, 55), (20, 95), (0, 120), (-70, -10)])
def test_two_line_families_through_a_large_window_give_abs_cos_delta(a: float, b: float) -> None:
    """Over a window much larger than the beat period the cross terms average out: J = E(uₐuₐᵀ + u_bu_bᵀ),
    eigenvalues E(1 ± |cos δ|), so coherency = |cos δ| and the orientation is the acute bisector."""
    f = grating(a, 16, n=400, phase=0.1) + grating(b, 16, n=400, phase=1.3)
    c = st.coherency(f, sigma=16.0)[150:250, 150:250]
    o = st.orientation(f, sigma=16.0, degrees=True)[150:250, 150:250]
    delta = np.deg2rad(a - b)
    bisector = (a + b) / 2 if np.cos(delta) > 0 else (a + b) / 2 + 90
    assert np.abs(c - abs(np.cos(delta))).max() < 2e-3
    assert np.abs(angdiff(o, bisector)).max() < 0.05
    orthogonal = grating(-40, 16, n=400, phase=0.1) + grating(50, 16, n=400, phase=1.3)
    assert st.coherency(orthogonal, sigma=16.0)[150:250, 150:250].max() < 1e-3


@pytest.mark.parametrize(("sigma", "lo", "hi"), [(1.0, 0.19, 0.24), (4.0, 0.05, 0.063)])
def test_isotropic_noise_is_nearly_incoherent(sigma: float, lo: float, hi: float) -> None:
    """White noise: ≈ 0.22 at the default 1 px window, falling as 1/σ (isotropic → ~0 with a large window)."""
    f = np.random.default_rng(4).normal(scale=50.0, size=(512, 512))
    m = st.coherency(f, sigma)[32:-32, 32:-32].mean()
    assert lo < m < hi
    assert st.coherency(f, 16.0)[64:-64, 64:-64].mean() < 0.02


def test_epsilon_is_absolute_so_the_raw_scale_matters() -> None:
    f = ndi.gaussian_filter(np.random.default_rng(6).normal(size=(128, 128)), 1)
    f = (f - f.min()) / (f.max() - f.min())
    c01 = st.coherency(f)[10:-10, 10:-10].mean()
    c255 = st.coherency(255 * f)[10:-10, 10:-10].mean()
    assert c255 == pytest.approx(st.coherency(f, epsilon=0)[10:-10, 10:-10].mean(), abs=1e-4)
    assert c01 < c255 - 0.01
    # the raw scale is recovered by scaling epsilon: C(k·I, ε) = C(I, ε/k²)
    assert np.allclose(st.coherency(255 * f), st.coherency(f, epsilon=st.EPSILON / 255**2))


def test_zero_and_constant_images_and_bad_input() -> None:
    z = np.zeros((32, 40))
    assert np.all(st.coherency(z) == 0) and np.all(st.orientation(z) == 0) and np.all(st.energy(z) == 0)
    assert np.all(st.coherency(z, epsilon=0.0) == 0)
    assert st.coherency(np.full((32, 40), 200.0)).max() < 1e-3
    for bad in (np.zeros(10), np.zeros((4, 5, 6)), np.zeros((2, 20))):
        with pytest.raises(FibroclassError):
            st.coherency(bad)
    with pytest.raises(FibroclassError, match="gradient"):
        st.gradient(np.zeros((8, 8)), "sobel")
    with pytest.raises(FibroclassError, match="sigma"):
        st.structure_tensor(np.zeros((8, 8)), sigma=-1)


def test_tensor_is_positive_semidefinite_and_energy_rescales_like_the_plugin() -> None:
    f = grating(30, 8, n=64)
    jxx, jxy, jyy = st.structure_tensor(f)
    assert np.all(jxx * jyy - jxy**2 >= -1e-9 * (jxx + jyy) ** 2)
    e = st.energy(f, rescale=True)
    assert e.min() == 0 and e.max() == 1
    gx, gy = st.gradient(f)
    assert np.allclose(st.structure_tensor(f, sigma=0)[0], gx * gx)


def test_public_module_is_the_same_definition() -> None:
    img = np.random.default_rng(1).integers(0, 4095, (48, 64)).astype(np.uint16)
    assert np.array_equal(public.coherency(img, sigma=2.0), st.coherency(img, sigma=2.0))
    assert np.array_equal(public.orientation(img), st.orientation(img))
