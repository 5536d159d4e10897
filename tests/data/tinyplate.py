"""A tiny generated training plate on disk (real uint16 TIFFs, plate map, field index, donor split).

Healthy fields: short line segments sharing one orientation (aligned fibres); disease fields: the same
number of segments at random orientations. Mean brightness is matched, so only texture separates them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from skimage.draw import line_aa

from fibroclass.data.splits import make_split, write_split
from fibroclass.io.index import build_index, write_index

PLATE = "TP1"


def line_field(
    rng: np.random.Generator, size: int, aligned: bool, gain: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(actin, nuclei) uint16 planes of one field; `gain` scales both (a donor's staining intensity)."""
    actin = np.zeros((size, size), np.float32)
    base = rng.uniform(0, np.pi)
    for _ in range(size * size // 60):
        angle = base + rng.normal(0, 0.08) if aligned else rng.uniform(0, np.pi)
        half = rng.uniform(0.15, 0.3) * size
        cy, cx = rng.uniform(0, size, 2)
        dy, dx = half * np.sin(angle), half * np.cos(angle)
        r0, c0, r1, c1 = (int(np.clip(v, 0, size - 1)) for v in (cy - dy, cx - dx, cy + dy, cx + dx))
        rr, cc, val = line_aa(r0, c0, r1, c1)
        actin[rr, cc] += val
    actin = 0.25 * actin / max(actin.mean(), 1e-6) * 0.2 + rng.normal(0.05, 0.01, actin.shape)
    nuclei = np.full((size, size), 0.05, np.float32)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(max(2, size // 12)):
        y, x = rng.uniform(0, size, 2)
        nuclei += 0.5 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 2.5**2))
    to16 = lambda a: (np.clip(a * gain, 0, 1) * 65535).astype(np.uint16)  # noqa: E731
    return to16(actin), to16(nuclei)


def make_tiny_plate(
    root: Path,
    size: int = 48,
    fields: int = 2,
    donors_per_class: int = 3,
    wells_per_donor: int = 2,
    seed: int = 0,
    donor_gain: float = 0.0,
) -> tuple[Path, Path]:
    """Write an ImageXpress-named plate and its plate map under `root`; returns (images dir, plate map).

    `donor_gain` > 0 gives each donor its own intensity gain, uniform in [1 - donor_gain, 1 + donor_gain].
    """
    rng = np.random.default_rng(seed)
    images = root / "images" / PLATE
    images.mkdir(parents=True, exist_ok=True)
    rows, wells = [], iter(f"{r}{c:02d}" for r in "BCDEFG" for c in range(2, 12))
    for role, genotype, prefix in (("healthy", "healthy", "HD"), ("disease", "GoF", "GOF")):
        for d in range(donors_per_class):
            gain = 1.0 + rng.uniform(-donor_gain, donor_gain)
            for _ in range(wells_per_donor):
                well = next(wells)
                rows.append(
                    {
                        "well": well,
                        "role": role,
                        "compound": "DMSO",
                        "concentration_uM": 0.0,
                        "donor": f"{prefix}{d + 1}",
                        "genotype": genotype,
                    }
                )
                for site in range(1, fields + 1):
                    actin, nuclei = line_field(rng, size, aligned=role == "healthy", gain=gain)
                    tifffile.imwrite(images / f"{PLATE}_{well}_s{site}_w1.tif", actin)
                    tifffile.imwrite(images / f"{PLATE}_{well}_s{site}_w2.tif", nuclei)
    platemap = root / "platemap.csv"
    pd.DataFrame(rows).to_csv(platemap, index=False)
    return root / "images", platemap


def make_tiny_split(root: Path, seed: int = 0, **plate_kwargs) -> Path:
    """Plate + field index + donor split (1 donor per class in val and test); returns the split folder."""
    images, platemap = make_tiny_plate(root, seed=seed, **plate_kwargs)
    index = build_index(images, platemap).index
    index_path = write_index(index, root / "index.parquet")
    n = plate_kwargs.get("donors_per_class", 3)
    frac = 1 / n + 1e-9
    params = {"by": "donor", "val_frac": frac, "test_frac": frac, "seed": seed, "stratify": "genotype"}
    assignment = make_split(index, by="donor", val_frac=frac, test_frac=frac, seed=seed)
    return write_split(index, index_path, assignment, root / "splits" / "tiny", params)
