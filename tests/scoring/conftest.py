"""Scoring test helpers: real uint16 TIFF fields on disk and a tiny classifier with a known response."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from torch import nn

from fibroclass.models.spec import ModelSpec
from fibroclass.schema import COMPOUND, CONC, PLATE, ROLE, SITE, WELL, path_col


class ToyClassifier(nn.Module):
    """FibroClassifier-shaped module: logit = gain·(tile mean actin − offset) ("mean") or tile max actin ("max").

    Embedding = per-channel tile means, so field/well embeddings are checkable by hand.
    """

    def __init__(
        self, crop_size: int = 16, downsample: int = 1, temperature: float = 1.0, mode: str = "mean"
    ):
        super().__init__()
        self.spec = ModelSpec(
            backbone="toy",
            crop_size=crop_size,
            downsample=downsample,
            embedding_dim=2,
            temperature=temperature,
        )
        self.gain = nn.Parameter(torch.tensor(20.0))
        self.offset = nn.Parameter(torch.tensor(0.25))
        self.mode = mode

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            return x[:, 0].amax(dim=(1, 2))
        return self.gain * (x[:, 0].mean(dim=(1, 2)) - self.offset)


def expected_score(actin_level: int, model: ToyClassifier | None = None) -> float:
    """Disease score of a uniform field with actin intensity `actin_level` (uint16) under a "mean" toy."""
    return 20.0 * (actin_level / 65535 - 0.25) / (model.spec.temperature if model else 1.0)


def write_field(
    folder: Path, plate: str, well: str, site: int, actin: np.ndarray | int, nuclei: int = 8000, size=(40, 37)
) -> dict[str, str]:
    """Write one 2-channel field as uint16 TIFFs (actin: an array or a uniform level); returns index paths."""
    folder.mkdir(parents=True, exist_ok=True)
    if np.isscalar(actin):
        actin = np.full(size, actin, dtype=np.uint16)
    paths = {}
    planes = (
        ("actin", 1, np.asarray(actin, np.uint16)),
        ("nuclei", 2, np.full(actin.shape, nuclei, np.uint16)),
    )
    for channel, w, img in planes:
        path = folder / f"{plate}_{well}_s{site}_w{w}.tif"  # ImageXpress naming
        tifffile.imwrite(path, img)
        paths[path_col(channel)] = str(path)
    return paths


def make_index(folder: Path, wells: Iterable[dict], sites: int = 2, size=(40, 37)) -> pd.DataFrame:
    """Field index for wells given as dicts with plate, well, role, compound, conc, level (uniform actin)."""
    rows = []
    for w in wells:
        for site in range(1, sites + 1):
            paths = write_field(folder / w["plate"], w["plate"], w["well"], site, w["level"], size=size)
            rows.append(
                {
                    PLATE: w["plate"],
                    WELL: w["well"],
                    SITE: site,
                    **paths,
                    ROLE: w["role"],
                    COMPOUND: w.get("compound", "DMSO"),
                    CONC: float(w.get("conc", 0.0)),
                }
            )
    return pd.DataFrame(rows)


def write_platemap(path: Path, wells: Iterable[dict]) -> Path:
    """Plate-map CSV (DESIGN.md contract) for the same well dicts as `make_index`."""
    rows = [
        {
            "plate": w["plate"],
            "well": w["well"],
            "role": w["role"],
            "compound": w.get("compound", "DMSO"),
            "concentration_uM": w.get("conc", 0.0),
        }
        for w in wells
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def screen_layout(plate: str, healthy: int, disease: int) -> list[dict]:
    """A small screen plate: 3 healthy + 3 disease controls (±small spread), a reference drug and a treatment.

    Drug wells move actin from the disease level toward the healthy level with dose.
    """
    wells = []
    for i, d in enumerate((-200, 0, 200)):
        wells.append({"plate": plate, "well": f"A{i + 1:02d}", "role": "healthy", "level": healthy + d})
        wells.append({"plate": plate, "well": f"B{i + 1:02d}", "role": "disease", "level": disease + d})
    for j, (conc, frac) in enumerate(((0.1, 0.25), (1.0, 0.5), (10.0, 1.0))):
        level = int(round(disease + frac * (healthy - disease)))
        wells.append(
            {
                "plate": plate,
                "well": f"C{j + 1:02d}",
                "role": "reference",
                "compound": "ruxolitinib",
                "conc": conc,
                "level": level,
            }
        )
        wells.append(
            {
                "plate": plate,
                "well": f"D{j + 1:02d}",
                "role": "treatment",
                "compound": "inactivib",
                "conc": conc,
                "level": disease,
            }
        )
    return wells


@pytest.fixture
def toy_model() -> ToyClassifier:
    return ToyClassifier()


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, as a fixture (test modules cannot import conftest reliably)."""
    return SimpleNamespace(
        ToyClassifier=ToyClassifier,
        expected_score=expected_score,
        write_field=write_field,
        make_index=make_index,
        write_platemap=write_platemap,
        screen_layout=screen_layout,
    )


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster for the session (Ray has no local mode any more); skipped without Ray."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'fibroclass[ray]')")
    pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'fibroclass[ray]')")
    import logging
    import sys

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    # Test classes (ToyClassifier here, helpers of the test modules) travel to the workers by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    if started:
        ray.shutdown()
