"""Field QC on simulator-rendered fields: blur, empty and debris fields are flagged, clean ones are not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from fibroclass.errors import FibroclassError
from fibroclass.io.bitdepth import scale_to_unit
from fibroclass.measure.field_qc import (
    DEBRIS_FRAC,
    SATURATED_FRAC,
    SHARPNESS,
    FieldQCParams,
    field_qc_metrics,
)
from fibroclass.measure.nuclei import count_nuclei
from fibroclass.schema import NUCLEI_COUNT, PLATE, WELL
from fibroclass.scoring.fields.qc import flag_fields
from fibroclass.simulate import FieldState, render_field

SIZE = 128
FIELDS_PER_WELL = 4


def render(seed: int, artefact: str = "none", severity: float = 0.5, **state) -> np.ndarray:
    """One simulated (2, H, W) field in [0, 1]."""
    field = render_field(
        FieldState(severity=severity, artefact=artefact, **state), SIZE, np.random.default_rng(seed)
    )
    return scale_to_unit(field.stack())


def measure(img: np.ndarray, plate: str, well: str, site: int, truth: str) -> dict:
    row = field_qc_metrics(img)
    row[NUCLEI_COUNT] = count_nuclei(img[1]).n
    return {PLATE: plate, WELL: well, "site": site, "truth": truth, **row}


def build_plate(plate: str, seed: int, n_wells: int = 10, transform=None) -> pd.DataFrame:
    """Wells of 4 fields; wells 0-5 carry one artefact field each (2 blur, 2 empty, 2 debris)."""
    artefacts = {0: "blur", 1: "blur", 2: "empty", 3: "empty", 4: "debris", 5: "debris"}
    rows = []
    for w in range(n_wells):
        severity = w / (n_wells - 1)
        for site in range(1, FIELDS_PER_WELL + 1):
            truth = artefacts.get(w, "none") if site == 2 else "none"
            img = render(seed * 1000 + w * 10 + site, truth, severity=severity)
            if transform is not None:
                img = transform(img)
            rows.append(measure(img, plate, f"A{w + 1:02d}", site, truth))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def plate() -> pd.DataFrame:
    return build_plate("P1", seed=1)


def test_artefact_fields_flagged_with_their_reason(plate: pd.DataFrame) -> None:
    ok, reason = flag_fields(plate)
    for truth in ("blur", "empty", "debris"):
        rows = plate["truth"] == truth
        assert (~ok[rows]).all(), f"{truth} fields not flagged: {reason[rows].tolist()}"
        assert reason[rows].str.contains(truth).all(), reason[rows].tolist()
    clean = plate["truth"] == "none"
    assert ok[clean].all(), reason[clean & ~ok].tolist()
    assert (reason[ok] == "").all()


def test_blurred_fields_have_low_sharpness(plate: pd.DataFrame) -> None:
    sharp = plate.groupby("truth")[SHARPNESS].median()
    assert sharp["blur"] < 0.5 * sharp["none"]
    assert plate.loc[plate["truth"] == "debris", SATURATED_FRAC].min() > 0


def test_toxic_well_with_few_cells_is_not_empty() -> None:
    """A well whose fields all hold few cells is biology (toxicity), not an imaging artefact."""
    rows = [
        measure(render(500 + s, viability=0.04), "P1", "B01", s, "toxic")
        for s in range(1, FIELDS_PER_WELL + 1)
    ]
    rows += [measure(render(600 + s), "P1", f"B{2 + s:02d}", s, "none") for s in range(1, 9)]
    df = pd.DataFrame(rows)
    ok, reason = flag_fields(df)
    assert df.loc[df["truth"] == "toxic", NUCLEI_COUNT].max() < 8  # really sparse
    assert ok.all(), reason.tolist()


def test_thresholds_are_relative_to_each_plate(plate: pd.DataFrame) -> None:
    """A second plate imaged slightly softer is not flagged wholesale; its own blurred field still is."""

    def soft(img: np.ndarray) -> np.ndarray:
        return np.stack([ndi.gaussian_filter(c, 0.7) for c in img])

    other = build_plate("P2", seed=2, n_wells=8, transform=soft)
    both = pd.concat([plate, other], ignore_index=True)
    assert other[SHARPNESS].median() < 0.8 * plate[SHARPNESS].median()
    ok, reason = flag_fields(both)
    p2 = both[PLATE] == "P2"
    assert (ok[p2 & (both["truth"] == "none")]).mean() >= 0.95, reason[p2].tolist()
    assert reason[p2 & (both["truth"] == "blur")].str.contains("blur").all()


def test_metrics_do_not_depend_on_intensity_scale() -> None:
    img = render(7, severity=0.8)
    a, b = field_qc_metrics(img), field_qc_metrics(img * 0.25)
    assert b[SHARPNESS] == pytest.approx(a[SHARPNESS], rel=0.05)
    assert b[DEBRIS_FRAC] == a[DEBRIS_FRAC] == 0.0


def test_unsaturated_debris_bright_in_both_channels_is_found() -> None:
    img = render(8, severity=0.3)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    blob = (yy - 60) ** 2 + (xx - 70) ** 2 <= 7**2
    level = 0.9 * float(img.max())  # bright, but below saturation
    img = img.copy()
    img[:, blob] = np.maximum(img[:, blob], level * np.array([1.0, 1.0])[:, None])
    m = field_qc_metrics(img)
    assert m[SATURATED_FRAC] == 0.0
    assert m[DEBRIS_FRAC] > FieldQCParams().debris_max_frac


def test_nonfinite_pixels_are_flagged() -> None:
    img = render(9).copy()
    img[0, :5, :5] = np.nan
    rows = [measure(img, "P1", "A01", 1, "nan")] + [
        measure(render(10 + s), "P1", "A01", s, "none") for s in (2, 3)
    ]
    ok, reason = flag_fields(pd.DataFrame(rows))
    assert reason.tolist()[0] == "nonfinite" and ok.tolist() == [False, True, True]


def test_user_mistakes_raise() -> None:
    with pytest.raises(FibroclassError, match="lacks column"):
        flag_fields(pd.DataFrame({PLATE: ["P1"]}))
    with pytest.raises(FibroclassError, match="field_qc"):
        FieldQCParams.from_dict({"blur_z": 3})
    with pytest.raises(FibroclassError, match="expected"):
        field_qc_metrics(np.zeros((3, 32, 32), np.float32))


@pytest.mark.slow
def test_calibration_on_a_simulated_screen(tmp_path) -> None:
    """Flag rates and nuclei counts against the simulator's ground_truth_fields.csv (96-well screen)."""
    from fibroclass.io.images import read_field
    from fibroclass.simulate import simulate_screen

    sim = simulate_screen(tmp_path, seed=3, size=192, fields=3, plate_format=96)
    truth = pd.read_csv(sim.ground_truth_fields)
    rows = []
    for r in truth.itertuples():
        paths = [sim.images_dir / r.plate / f"{r.plate}_{r.well}_s{r.site}_w{c}.tif" for c in (1, 2)]
        rows.append(measure(read_field(paths), r.plate, r.well, r.site, r.artefact))
    df = pd.DataFrame(rows)
    df["n_cells"] = truth["n_cells"].to_numpy()
    ok, reason = flag_fields(df)
    art = df["truth"]
    assert (~ok[art.isin(["blur", "empty"])]).mean() >= 0.9
    assert (~ok[art == "debris"]).mean() >= 0.9
    assert (~ok[art == "none"]).mean() <= 0.02, reason[(art == "none") & ~ok].tolist()
    cells = df[(art == "none") & (df["n_cells"] >= 10)]
    rel_err = (cells[NUCLEI_COUNT] - cells["n_cells"]).abs() / cells["n_cells"]
    assert rel_err.median() <= 0.1
