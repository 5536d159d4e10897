"""report.html: self-contained, every section and panel present, plate geometry, renders in a browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from fibroclass.errors import FibroclassError
from fibroclass.schema import PLATE, QC_PASS, QC_REASON, WELL, path_col
from fibroclass.scoring.compounds.calls import call_compounds
from fibroclass.scoring.compounds.doseresponse import fit_compounds, predict_4pl
from fibroclass.scoring.report.html import SECTIONS, montage_images, render_report, representative_fields
from fibroclass.scoring.report.plots import plate_shape, well_position

DOSES = [10.0 / 3**i for i in range(8)]


def screen(plate: str, rows: int, cols: int, rng: np.random.Generator) -> pd.DataFrame:
    """Wells of one plate: controls in the first/last column, two compounds in 3 replicates."""
    recs = []
    for r in range(rows):
        for c in range(cols):
            well = f"{chr(65 + r)}{c + 1:02d}"
            if c in (0, cols - 1):
                role = ("healthy", "disease", "reference")[r % 3]
                recs.append(
                    (
                        plate,
                        well,
                        role,
                        "DMSO" if role != "reference" else "ruxolitinib",
                        0.0 if role != "reference" else 1.0,
                    )
                )
            else:
                k = (r * (cols - 2) + c - 1) % 48
                name = ("rescuer", "killer")[k // 24]
                recs.append((plate, well, "treatment", name, DOSES[k % 8]))
    df = pd.DataFrame(recs, columns=[PLATE, WELL, "role", "compound", "concentration_uM"])
    conc = df["concentration_uM"].to_numpy()
    rescue = np.where(
        df["compound"] == "rescuer", predict_4pl(np.maximum(conc, 1e-6), (0, 100, np.log10(0.3), 1.2)), 0.0
    )
    rescue = np.where(df["role"] == "healthy", 100.0, np.where(df["role"] == "reference", 90.0, rescue))
    df["rescue_pct"] = rescue + rng.normal(0, 6, len(df))
    via = np.where(
        df["compound"] == "killer", 100 - predict_4pl(np.maximum(conc, 1e-6), (0, 100, 0.0, 2.0)), 100.0
    )
    df["viability_pct"] = via + rng.normal(0, 5, len(df))
    df["disease_score"] = 1 - df["rescue_pct"] / 100 + rng.normal(0, 0.02, len(df))
    df["offtarget_z"] = rng.normal(0, 0.7, len(df))
    df["on_target_pct"] = df["rescue_pct"]
    return df


def fields_of(wells: pd.DataFrame, tmp: Path, rng: np.random.Generator) -> pd.DataFrame:
    """Two fields per well, with channel paths under `tmp/images` (files are written on demand)."""
    f = wells.loc[wells.index.repeat(2)].reset_index(drop=True)
    f["Metadata_Site"] = np.tile([1, 2], len(wells))
    f[QC_PASS] = rng.random(len(f)) > 0.05
    f[QC_REASON] = np.where(f[QC_PASS], "", "blur")
    for ch, name in enumerate(("actin", "nuclei")):
        f[path_col(name)] = [
            str(tmp / "images" / f"{p}_{w}_s{s}_w{ch + 1}.tif")
            for p, w, s in zip(f[PLATE], f[WELL], f["Metadata_Site"], strict=True)
        ]
    return f


def write_tiffs(rows: list[pd.Series], rng: np.random.Generator) -> None:
    """Real uint16 TIFFs (2 channels) for the given field rows."""
    for row in rows:
        for ch, name in enumerate(("actin", "nuclei")):
            path = Path(row[path_col(name)])
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, (rng.random((48, 48)) * 4000 + 800 * ch).astype(np.uint16))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    wells = pd.concat([screen("P96", 8, 12, rng), screen("P384", 16, 24, rng)], ignore_index=True)
    fields = fields_of(wells, tmp, rng)
    fits = fit_compounds(wells, {"n_boot": 30})
    compounds = call_compounds(wells, fits)
    plate_qc = {
        "z_prime_min": 0.5,
        "plates": {
            "P96": {
                "z_prime": 0.71,
                "ssmd": 9.1,
                "pass": True,
                "reasons": [],
                "n_fields": 192,
                "n_fields_flagged": 9,
            },
            "P384": {"z_prime": 0.31, "ssmd": 4.0, "pass": False, "reasons": ["Z′ 0.31 < 0.5"]},
        },
    }
    write_tiffs(list(representative_fields(fields, compounds).values()), rng)
    images = montage_images(fields, compounds)
    path = render_report(tmp / "out", fields, wells, compounds, plate_qc, fits, images)
    return {"path": path, "html": path.read_text(), "images": images, "compounds": compounds}


def test_report_has_every_section_and_embedded_plots(run: dict) -> None:
    html = run["html"]
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # dose response + 3 heatmaps x 2 plates + controls + montage
    assert len(pngs) == 1 + 6 + 1 + 1
    assert all(len(p) > 1000 for p in pngs)
    for name in (
        "fig-dose_response",
        "fig-heatmap_rescue_P384",
        "fig-heatmap_viability_P96",
        "fig-heatmap_qc_P96",
        "fig-controls",
        "fig-montage",
    ):
        assert f'id="{name}"' in html
    plots = sorted(p.name for p in (run["path"].parent / "plots").glob("*.png"))
    assert len(plots) == 9 and "dose_response.png" in plots


def test_report_is_self_contained(run: dict) -> None:
    srcs = re.findall(r'(?:src|href)="([^"]*)"', run["html"])
    assert srcs and all(s.startswith("data:") for s in srcs)
    assert "<script" not in run["html"]


def test_banner_and_table_tell_pass_fail_and_calls(run: dict) -> None:
    html = run["html"]
    assert "Plate QC: FAIL" in html and "1 of 2 plate(s) failed" in html
    assert "P384: <b>FAIL</b>" in html and "Z′ 0.31 &lt; 0.5" in html and "P96: <b>PASS</b>" in html
    calls = run["compounds"].set_index("compound")["call"]
    assert calls["rescuer"] == "hit" and calls["killer"] == "toxic"
    assert '<span class="call hit">hit</span>' in html and '<span class="call toxic">toxic</span>' in html


def test_montage_picks_controls_and_top_doses(run: dict) -> None:
    labels = list(run["images"])
    assert labels[:2] == ["healthy control", "disease control"]
    assert "rescuer 10 µM" in labels and "killer 10 µM" in labels
    assert all(img.shape == (2, 48, 48) and img.dtype == np.float32 for img in run["images"].values())


def test_plate_geometry() -> None:
    assert (
        well_position("A01") == (0, 0)
        and well_position("P24") == (15, 23)
        and well_position("AF48") == (31, 47)
    )
    assert plate_shape(pd.Series(["A01", "H12"])) == (8, 12)
    assert plate_shape(pd.Series(["A01", "I01"])) == (16, 24)
    assert plate_shape(pd.Series(["A01", "AB30"])) == (32, 48)


def test_missing_columns_raise(tmp_path: Path) -> None:
    with pytest.raises(FibroclassError, match="Metadata_Well"):
        render_report(tmp_path, pd.DataFrame(), pd.DataFrame({PLATE: ["P"]}), pd.DataFrame(), {})
    with pytest.raises(FibroclassError, match="path_actin"):
        montage_images(pd.DataFrame({QC_PASS: [True], "role": ["healthy"]}))
    assert representative_fields(pd.DataFrame({QC_PASS: [False], "role": ["healthy"]})) == {}


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless chromium not installed")
def test_renders_in_headless_chromium(run: dict, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--screenshot={shot}",
            "--window-size=1400,3000",
            run["path"].as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[:2] == (3000, 1400)
    assert img[..., :3].std() > 0.05  # not a blank page
