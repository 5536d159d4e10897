"""Batched drawing of cells, nuclei and actin puncta onto float32 canvases (no Python loop per cell).

Every item (cell, nucleus lobe) gets a bounding ellipse; the pixels inside the ellipses of a chunk
of items are flattened into one array with an item index per pixel, so each step is one numpy call for all
items. Each item's pixels are normalized to sum to its stain total, then summed into the canvas.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fibroclass.simulate.cells import Cells

MAX_CHUNK_PX = 1_500_000  # pixels per batch: bounds memory for large fields
F32 = np.float32


def _chunks(n_px: np.ndarray) -> Iterator[slice]:
    """Consecutive item ranges holding at most MAX_CHUNK_PX pixels (at least one item each)."""
    start, acc = 0, 0
    for i, n in enumerate(n_px.tolist()):
        if acc and acc + n > MAX_CHUNK_PX:
            yield slice(start, i)
            start, acc = i, 0
        acc += n
    if start < len(n_px):
        yield slice(start, len(n_px))


def ellipse_pixels(
    cx: np.ndarray, cy: np.ndarray, ea: np.ndarray, eb: np.ndarray, theta: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item, y, x) of every canvas pixel inside each item's ellipse (semi-axes ea, eb, angle theta)."""
    c, s = np.cos(theta), np.sin(theta)
    ia, ib = 1.0 / (ea * ea), 1.0 / (eb * eb)
    hy = np.sqrt((ea * s) ** 2 + (eb * c) ** 2)
    y0 = np.clip(np.ceil(cy - hy), 0, shape[0]).astype(np.int64)
    y1 = np.clip(np.floor(cy + hy) + 1, 0, shape[0]).astype(np.int64)
    n_rows = np.maximum(y1 - y0, 0)
    row_item = np.repeat(np.arange(len(cx)), n_rows)
    y = y0[row_item] + np.arange(int(n_rows.sum())) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    # Solve p dx^2 + q dx + r <= 0 for the x-span of the ellipse on each row.
    dy = y - cy[row_item]
    ci, si, ia_r, ib_r = c[row_item], s[row_item], ia[row_item], ib[row_item]
    p = ci * ci * ia_r + si * si * ib_r
    q = 2 * dy * ci * si * (ia_r - ib_r)
    r = dy * dy * (si * si * ia_r + ci * ci * ib_r) - 1.0
    root = np.sqrt(np.maximum(q * q - 4 * p * r, 0.0))
    xc = cx[row_item]
    x0 = np.clip(np.ceil(xc + (-q - root) / (2 * p)), 0, shape[1]).astype(np.int64)
    x1 = np.clip(np.floor(xc + (-q + root) / (2 * p)) + 1, 0, shape[1]).astype(np.int64)
    n_px = np.maximum(x1 - x0, 0)
    row = np.repeat(np.arange(len(y)), n_px)
    x = x0[row] + np.arange(int(n_px.sum())) - np.repeat(np.cumsum(n_px) - n_px, n_px)
    return row_item[row], y[row], x


def _pixel_counts(ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
    return np.pi * (ea + 1) * (eb + 1)


def max_radius(cells: Cells) -> np.ndarray:
    """Largest harmonic radius factor of each cell outline (sampled at 64 angles, plus 3%)."""
    ang = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    k = np.arange(2, 2 + cells.harm_amp.shape[1])
    terms = cells.harm_amp[:, :, None] * np.cos(k[None, :, None] * ang + cells.harm_phase[:, :, None])
    return np.maximum(1.0 + terms.sum(axis=1), 0.3).max(axis=1) * 1.03


def outline_level(
    un: np.ndarray, vn: np.ndarray, m: np.ndarray, harm_c: np.ndarray, harm_s: np.ndarray, item: np.ndarray
) -> np.ndarray:
    """Cell outline level function in normalized coordinates (< 1 inside).

    A superellipse of exponent m whose radius is modulated by harmonics a_k cos(k angle) - b_k sin(k angle),
    k = 2.., evaluated with the Chebyshev recurrence (no trigonometry per pixel).
    """
    au, av = np.abs(un), np.abs(vn)
    mi = m[item]
    rho = (au**mi + av**mi) ** (F32(1.0) / mi)
    r2 = np.sqrt(un * un + vn * vn) + F32(1e-6)
    c1, s1 = un / r2, vn / r2
    ck, sk = c1, s1
    radius = np.ones_like(rho)
    for j in range(harm_c.shape[1]):
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1  # cos/sin of (j + 2) * angle
        radius += harm_c[item, j] * ck - harm_s[item, j] * sk
    return rho / np.maximum(radius, F32(0.3))


def fibres(
    v: np.ndarray, period: np.ndarray, phase: np.ndarray, seed: np.ndarray, presence: float
) -> np.ndarray:
    """Parallel stress fibres along u, `period` px apart, each with its own random brightness.

    `phase` (in periods) bends the fibres smoothly; about `presence` of the fibre slots hold a fibre.
    """
    pos = v / period + phase
    slot = np.floor(pos)
    t = F32(0.5) + F32(0.5) * np.cos(F32(2 * np.pi) * pos)
    t = t * t
    t = t * t
    weight = np.sin(slot * F32(78.233) + seed) * F32(43758.547)
    weight = weight - np.floor(weight)  # hash of the fibre slot, uniform in [0, 1)
    weight = np.clip((weight - F32(1.0 - presence)) / F32(presence), 0.0, 1.0)
    return t * (F32(0.3) + weight * F32(0.7 / presence))


def _splat(canvas: np.ndarray, y: np.ndarray, x: np.ndarray, values: np.ndarray) -> None:
    h, w = canvas.shape
    canvas += np.bincount(y * w + x, weights=values, minlength=h * w).reshape(h, w).astype(F32)


def _normalize(item: np.ndarray, img: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Scale each item's pixels to sum to its total."""
    sums = np.bincount(item, weights=img, minlength=len(totals))
    gain = np.divide(totals, sums, out=np.zeros_like(sums), where=sums > 0)
    return img * gain[item].astype(F32)


def draw_actin(
    cells: Cells,
    totals: np.ndarray,
    canvas: np.ndarray,
    warp: np.ndarray,
    texture: np.ndarray,
) -> None:
    """Add every cell's actin (cytoplasm, cortex, stress fibres) into `canvas`, each summing to `totals`."""
    if len(cells) == 0:
        return
    cos_t, sin_t = np.cos(cells.theta).astype(F32), np.sin(cells.theta).astype(F32)
    reach = max_radius(cells) * np.where(cells.m > 2.0, 2.0 ** (0.5 - 1.0 / cells.m), 1.0)
    # Superellipses with m <= 2 lie inside their ellipse; the soft edge reaches 0.5 px / b beyond g = 1.
    soft = 1.0 + 0.5 / cells.b
    ea, eb = reach * soft * cells.a + 1.0, reach * soft * cells.b + 1.0
    harm_c = (cells.harm_amp * np.cos(cells.harm_phase)).astype(F32)
    harm_s = (cells.harm_amp * np.sin(cells.harm_phase)).astype(F32)
    m = cells.m.astype(F32)
    a, b = cells.a.astype(F32), cells.b.astype(F32)
    cx, cy = cells.x.astype(F32), cells.y.astype(F32)
    cortex_w = np.maximum(F32(0.24) * b, F32(0.7))
    cross_cos = np.cos(cells.cross_angle).astype(F32)
    cross_sin = np.sin(cells.cross_angle).astype(F32)
    seeds = np.arange(len(cells), dtype=F32)
    for ch in _chunks(_pixel_counts(ea, eb)):
        idx = np.arange(len(cells))[ch]
        item, y, x = ellipse_pixels(cells.x[ch], cells.y[ch], ea[ch], eb[ch], cells.theta[ch], canvas.shape)
        item = idx[item]
        dx, dy = x.astype(F32) - cx[item], y.astype(F32) - cy[item]
        u = dx * cos_t[item] + dy * sin_t[item]
        v = dy * cos_t[item] - dx * sin_t[item]
        depth = (F32(1.0) - outline_level(u / a[item], v / b[item], m, harm_c, harm_s, item)) * b[item]
        keep = depth > -0.5
        item, y, x, u, v, depth = item[keep], y[keep], x[keep], u[keep], v[keep], depth[keep]
        alpha = np.minimum(depth + F32(0.5), F32(1.0))
        cortex = np.exp(-((depth / cortex_w[item]) ** 2))
        body = F32(0.3) + cells.cortex_weight.astype(F32)[item] * cortex
        period = cells.fibre_period.astype(F32)[item]
        phase = (cells.fibre_phase / (2 * np.pi)).astype(F32)[item] + F32(0.3) * warp[y, x]
        fib = cells.main_weight.astype(F32)[item] * fibres(v, period, phase, seeds[item], 0.7)
        for j in range(cells.cross_weight.shape[1]):
            w = cells.cross_weight[:, j].astype(F32)
            if w[ch].max(initial=0.0) > 1e-3:
                vj = v * cross_cos[item, j] - u * cross_sin[item, j]
                fib += w[item] * fibres(vj, F32(1.6) * period, phase, seeds[item] + F32(17 * (j + 1)), 0.4)
        body += fib * (F32(1.0) + F32(0.35) * texture[y, x])
        img = alpha * np.maximum(body, F32(0.0))
        _splat(canvas, y, x, _normalize(item - ch.start, img, totals[ch]))


def draw_ellipses(
    cx: np.ndarray,
    cy: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    totals: np.ndarray,
    canvas: np.ndarray,
    texture: np.ndarray,
) -> None:
    """Add soft-edged textured ellipses (nuclei), each summing to its total."""
    if len(cx) == 0:
        return
    a, b = np.maximum(a, 0.8).astype(F32), np.maximum(b, 0.8).astype(F32)
    cos_t, sin_t = np.cos(theta).astype(F32), np.sin(theta).astype(F32)
    cx32, cy32 = cx.astype(F32), cy.astype(F32)
    ea, eb = a + 1.0, b + 1.0
    for ch in _chunks(_pixel_counts(ea, eb)):
        idx = np.arange(len(cx))[ch]
        item, y, x = ellipse_pixels(cx[ch], cy[ch], ea[ch], eb[ch], theta[ch], canvas.shape)
        item = idx[item]
        dx, dy = x.astype(F32) - cx32[item], y.astype(F32) - cy32[item]
        u = (dx * cos_t[item] + dy * sin_t[item]) / a[item]
        v = (dy * cos_t[item] - dx * sin_t[item]) / b[item]
        depth = (F32(1.0) - np.sqrt(u * u + v * v)) * b[item]
        keep = depth > -0.5
        item, y, x, depth = item[keep], y[keep], x[keep], depth[keep]
        img = np.minimum(depth + F32(0.5), F32(1.0)) * (F32(1.0) + F32(0.15) * texture[y, x])
        _splat(canvas, y, x, _normalize(item - ch.start, img, totals[ch]))


def nucleus_ellipses(cells: Cells, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(cx, cy, a, b, theta, total) of every nucleus; fragmented nuclei become 2-4 round lobes."""
    cx = cells.x + cells.nuc_dx * np.cos(cells.theta)
    cy = cells.y + cells.nuc_dx * np.sin(cells.theta)
    lobes = cells.nuc_lobes.astype(int)
    owner = np.repeat(np.arange(len(cells)), lobes)
    j = np.arange(len(owner)) - np.repeat(np.cumsum(lobes) - lobes, lobes)
    n_l = lobes[owner]
    split = n_l > 1
    r = np.sqrt(cells.nuc_a * cells.nuc_b)[owner]
    ang = rng.uniform(0, 2 * np.pi, len(cells))[owner] + 2 * np.pi * j / n_l
    f = rng.uniform(0.4, 0.75, len(owner))
    dist = np.where(split, r * (0.6 + 0.5 * f), 0.0)
    return (
        cx[owner] + dist * np.cos(ang),
        cy[owner] + dist * np.sin(ang),
        np.where(split, r * f, cells.nuc_a[owner]),
        np.where(split, 0.85 * r * f, cells.nuc_b[owner]),
        np.where(split, ang, cells.nuc_theta[owner]),
        cells.nuc_total[owner] / n_l,
    )


def puncta(cells: Cells, share: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Positions inside each cell of its off-target actin puncta.

    Returns (owner, x, y, is_ring, value) per punctum; each cell's values sum to its `share` when it
    got any puncta (cells whose samples all fell outside get none).
    """
    k = cells.n_puncta.astype(int)
    n_cand = np.where(k > 0, 4 * k + 8, 0)
    owner = np.repeat(np.arange(len(cells)), n_cand)
    un, vn = rng.uniform(-1, 1, (2, len(owner))).astype(F32)
    harm_c = (cells.harm_amp * np.cos(cells.harm_phase)).astype(F32)
    harm_s = (cells.harm_amp * np.sin(cells.harm_phase)).astype(F32)
    inside = outline_level(un, vn, cells.m.astype(F32), harm_c, harm_s, owner) < 0.8
    owner, un, vn = owner[inside], un[inside], vn[inside]
    rank = np.arange(len(owner)) - np.searchsorted(owner, owner, side="left")
    sel = rank < k[owner]
    owner, un, vn = owner[sel], un[sel], vn[sel]
    u, v = un * cells.a[owner], vn * cells.b[owner]
    c, s = np.cos(cells.theta[owner]), np.sin(cells.theta[owner])
    got = np.bincount(owner, minlength=len(cells))
    value = share[owner] / np.maximum(got[owner], 1)
    is_ring = rng.random(len(owner)) < 0.4
    return owner, cells.x[owner] + u * c - v * s, cells.y[owner] + u * s + v * c, is_ring, value
