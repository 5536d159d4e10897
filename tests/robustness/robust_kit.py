"""Robustness test kit: a small screen plate as real ImageXpress TIFFs, scoring it, and comparing a damaged
plate's results with the clean run (wells the damage did not touch must score exactly the same)."""

from __future__ import annotations

import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from fibroclass.data.preprocess import tile_field
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.spec import ModelSpec
from fibroclass.schema import PLATE, SITE, WELL
from fibroclass.scoring.config import config_from_dict
from fibroclass.scoring.outputs import ScoreResult
from fibroclass.scoring.pipeline import score
from fibroclass.tracking.models import SPEC_FILE, WEIGHTS_FILE

SIZE = 32
SITES = 2
ACTIN_LEVEL = {"healthy": 9000, "disease": 30000, "reference": 14000, "treatment": 22000}
CHANNEL_TOKENS = {"actin": 1, "nuclei": 2}


def layout(plate: str = "P1") -> list[dict]:
    """3 healthy + 3 disease controls, a 3-dose treatment and a 2-dose reference drug."""
    wells = [{"plate": plate, "well": f"A{i:02d}", "role": "healthy"} for i in (1, 2, 3)]
    wells += [{"plate": plate, "well": f"B{i:02d}", "role": "disease"} for i in (1, 2, 3)]
    wells += [
        {"plate": plate, "well": f"C{i + 1:02d}", "role": "treatment", "compound": "drugX", "conc": c}
        for i, c in enumerate((0.1, 1.0, 10.0))
    ]
    wells += [
        {"plate": plate, "well": f"D{i + 1:02d}", "role": "reference", "compound": "ruxolitinib", "conc": c}
        for i, c in enumerate((1.0, 10.0))
    ]
    return wells


def planes(plate: str, well: str, site: int, role: str) -> dict[str, np.ndarray]:
    """Deterministic uint16 actin/nuclei planes of one field (texture + a role-dependent actin level)."""
    rng = np.random.default_rng(zlib.crc32(f"{plate}/{well}/{site}".encode()))
    actin = rng.normal(ACTIN_LEVEL[role], 1500, (SIZE, SIZE))
    actin[:, :: 4 if role == "healthy" else 3] += 6000  # some structure for the CNN
    nuclei = rng.normal(3000, 400, (SIZE, SIZE))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for _ in range(3):
        y, x = rng.uniform(4, SIZE - 4, 2)
        nuclei += 20000 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0)
    as16 = lambda a: np.clip(a, 0, 65535).astype(np.uint16)  # noqa: E731
    return {"actin": as16(actin), "nuclei": as16(nuclei)}


@dataclass
class PlateFiles:
    """A written screen: image root, plate map and the file of every (plate, well, site, channel)."""

    root: Path
    platemap: Path
    wells: list[dict]

    def path(self, well: str, site: int = 1, channel: str = "actin", plate: str = "P1") -> Path:
        return self.root / plate / f"{plate}_{well}_s{site}_w{CHANNEL_TOKENS[channel]}.tif"


def write_plate(root: Path, wells: list[dict], sites: int = SITES) -> None:
    for w in wells:
        folder = root / w["plate"]
        folder.mkdir(parents=True, exist_ok=True)
        for site in range(1, sites + 1):
            for channel, img in planes(w["plate"], w["well"], site, w["role"]).items():
                name = f"{w['plate']}_{w['well']}_s{site}_w{CHANNEL_TOKENS[channel]}.tif"
                tifffile.imwrite(folder / name, img)


def write_platemap(path: Path, wells: list[dict]) -> Path:
    rows = [
        {
            "plate": w["plate"],
            "well": w.get("map_well", w["well"]),
            "role": w["role"],
            "compound": w.get("compound", "DMSO"),
            "concentration_uM": w.get("conc", 0.0),
        }
        for w in wells
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def make_screen(base: Path, plates: tuple[str, ...] = ("P1",)) -> PlateFiles:
    wells = [w for p in plates for w in layout(p)]
    write_plate(base / "images", wells)
    return PlateFiles(base / "images", write_platemap(base / "platemap.csv", wells), wells)


def run(
    screen: PlateFiles, model: FibroClassifier, out: Path, roots: list[Path] | None = None
) -> ScoreResult:
    """`fibroclass score` as a library call (CPU, no workers, no progress bar, no report.html)."""
    result = score(
        roots or [screen.root],
        screen.platemap,
        model,
        out,
        config=config_from_dict({"report": {"enabled": False}}),
        batch_size=16,
        device="cpu",
        num_workers=0,
        progress=False,
    )
    assert isinstance(result, ScoreResult)
    return result


def field_row(result: ScoreResult, well: str, site: int = 1, plate: str = "P1") -> pd.Series:
    f = result.fields
    hit = f[(f[PLATE] == plate) & (f[WELL] == well) & (f[SITE] == site)]
    assert len(hit) == 1, f"{plate} {well} s{site}: {len(hit)} rows in fields.parquet"
    return hit.iloc[0]


def well_row(result: ScoreResult, well: str, plate: str = "P1") -> pd.Series:
    w = result.wells
    hit = w[(w[PLATE] == plate) & (w[WELL] == well)]
    assert len(hit) == 1, f"{plate} {well}: {len(hit)} rows in wells.csv"
    return hit.iloc[0]


def assert_rest_scored(
    result: ScoreResult,
    clean: ScoreResult,
    damaged: set[str] = frozenset(),
    rescue: bool = True,
    dropped: set[str] = frozenset(),
) -> None:
    """Every clean well except `damaged` and `dropped` is in the result with the same fields used and
    disease score (and rescue %, unless the damage touched a control); damaged wells keep a row, dropped
    wells (no images, or no usable plate-map row) have none."""
    got = result.wells.set_index([PLATE, WELL])
    for key, ref in clean.wells.set_index([PLATE, WELL]).iterrows():
        if key[1] in dropped:
            assert key not in got.index, f"well {key} should not be scored"
            continue
        if key[1] in damaged:
            continue
        assert key in got.index, f"well {key} lost"
        row = got.loc[key]
        assert row["n_fields_used"] == ref["n_fields_used"], key
        assert row["disease_score"] == pytest.approx(ref["disease_score"], rel=1e-5, abs=1e-6), key
        if rescue:
            assert row["rescue_pct"] == pytest.approx(ref["rescue_pct"], rel=1e-4, abs=1e-4), key
    for well in damaged:
        assert any(k[1] == well for k in got.index), f"damaged well {well} has no row in wells.csv"


def probe_model(seed: int = 0) -> FibroClassifier:
    """A real tiny FibroClassifier whose linear head is fitted (ridge) on the tile embeddings of the
    screen's control fields: healthy -> -2, disease -> +2, so scores track the phenotype and damage that
    rescales pixels shows up in the disease score and rescue %."""
    torch.manual_seed(seed)
    model = FibroClassifier(
        ModelSpec(backbone="tiny", crop_size=16, mean=[0.25, 0.1], std=[0.15, 0.1])
    ).eval()
    feats, targets = [], []
    for w in layout("P1"):
        if w["role"] not in ("healthy", "disease"):
            continue
        for site in range(1, SITES + 1):
            img = np.stack(list(planes("P1", w["well"], site, w["role"]).values())).astype(np.float32) / 65535
            with torch.no_grad():
                emb = model.embed(torch.from_numpy(tile_field(img, 16)))
            feats.append(emb.double())
            targets += [2.0 if w["role"] == "disease" else -2.0] * len(emb)
    x, y = torch.cat(feats), torch.tensor(targets, dtype=torch.float64)
    mu = x.mean(0)
    xc = x - mu
    weight = torch.linalg.solve(
        xc.T @ xc + 1e-3 * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y - y.mean())
    )
    with torch.no_grad():
        model.head.weight.copy_(weight.float()[None])
        model.head.bias.fill_(float(y.mean() - mu @ weight))
    return model


def save_model_folder(model: FibroClassifier, folder: Path) -> Path:
    """The declarative model folder `fibroclass score --model FOLDER` loads (spec JSON + state dict)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.spec.save(folder / SPEC_FILE)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    return folder


def copy_screen(src: PlateFiles, dst: Path) -> PlateFiles:
    shutil.copytree(src.root, dst / "images")
    shutil.copy(src.platemap, dst / "platemap.csv")
    return PlateFiles(dst / "images", dst / "platemap.csv", src.wells)
