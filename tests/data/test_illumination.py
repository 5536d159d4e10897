"""Per-plate flat-field and intensity normalization on real TIFF plates (simulated, re-exported)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from fibroclass.data.illumination import (
    DISABLED,
    IlluminationSettings,
    PlateCorrections,
    corrections_for_model,
)
from fibroclass.data.reader import FieldReader
from fibroclass.errors import FibroclassError
from fibroclass.io.index import build_index
from fibroclass.measure.flatfield import estimate_flatfield, evaluate_surface, grid_means
from fibroclass.models.spec import ModelSpec
from fibroclass.schema import PIXEL_SIZE, PLATE
from fibroclass.simulate import export_index, simulate_training_set
from fibroclass.simulate.artefacts import CAMERA_OFFSET

CHANNELS = ("actin", "nuclei")


@pytest.fixture(scope="module")
def plates(tmp_path_factory):
    """One simulated plate as exported (clean) and with strong vignetting: (clean index, vignetted index)."""
    root = tmp_path_factory.mktemp("illum")
    sim = simulate_training_set(
        root / "sim", size=80, fields=2, n_plates=1, donors_per_class=3, wells_per_donor=3
    )
    clean = build_index(sim.images_dir, sim.platemap).index
    vignetted = build_index(export_index(clean, "imagexpress-vignette", root / "vig"), sim.platemap).index
    return clean, vignetted


def _mismatch(a: FieldReader, b: FieldReader) -> np.ndarray:
    """Mean relative absolute difference per channel between two readers of the same fields."""
    errs = [np.abs(a(i) - b(i)).mean(axis=(1, 2)) / np.abs(a(i)).mean(axis=(1, 2)) for i in range(len(a))]
    return np.mean(errs, axis=0)


def _readers(clean, other, settings):
    return [
        FieldReader(df, CHANNELS, PlateCorrections.estimate(df, CHANNELS, settings)) for df in (clean, other)
    ]


def test_vignetted_plate_reads_like_the_clean_plate_after_correction(plates):
    clean, vignetted = plates
    on = _mismatch(*_readers(clean, vignetted, IlluminationSettings()))
    off = _mismatch(*_readers(clean, vignetted, DISABLED))
    print(f"relative field mismatch clean vs vignetted: corrected {on.round(4)}, uncorrected {off.round(4)}")
    assert (on < 0.03).all() and (off > 0.12).all()


def test_normalization_cancels_brightness_drift(plates, tmp_path):
    clean, _ = plates
    rows = []
    for row in clean.to_dict("records"):
        for ch in CHANNELS:
            src = Path(row[f"path_{ch}"])
            img = tifffile.imread(src).astype(np.float64)
            dst = tmp_path / src.name
            tifffile.imwrite(dst, np.rint(CAMERA_OFFSET + (img - CAMERA_OFFSET) * 1.7).astype(np.uint16))
            row[f"path_{ch}"] = str(dst)
        rows.append(row)
    brighter = pd.DataFrame(rows)
    drift = _mismatch(*_readers(clean, brighter, IlluminationSettings()))
    raw = _mismatch(*_readers(clean, brighter, DISABLED))
    assert (drift < 0.02).all() and (raw > 0.4).all()


def test_flatfield_recovers_a_known_vignette():
    rng = np.random.default_rng(3)
    h = w = 64
    yy, xx = np.mgrid[:h, :w]
    truth = 1.0 - 0.5 * (((yy - 28) / 32) ** 2 + ((xx - 36) / 32) ** 2) / 2  # off-centre, 50 % fall-off
    grids = []
    for _ in range(60):
        signal = np.zeros((h, w))
        for y, x in rng.uniform(-8, h + 8, (70, 2)):  # blobs ("cells") anywhere, also across the edges
            signal += 0.3 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0)
        field = 0.02 + (0.01 + signal) * truth + rng.normal(0, 1e-4, (h, w))  # dark level 0.02
        grids.append(grid_means(field, 16)[None])
    coef, dark = estimate_flatfield(np.stack(grids), degree=2)
    flat = evaluate_surface(coef[0], 2, (h, w))
    assert np.abs(flat - truth / truth.mean()).mean() < 0.03
    assert dark[0] == pytest.approx(0.02, abs=0.01)


def test_estimates_are_per_plate_saved_and_reloaded(plates, tmp_path):
    clean, vignetted = plates
    both = pd.concat([clean, vignetted.assign(**{PLATE: "VIG"})], ignore_index=True)
    corr = PlateCorrections.estimate(both, CHANNELS, IlluminationSettings())
    ff_clean = corr.plates["TRAIN01"].flatfield((80, 80))
    ff_vig = corr.plates["VIG"].flatfield((80, 80))
    assert ff_vig.min() < ff_clean.min() - 0.15  # the vignetted plate gets its own, stronger correction
    path = corr.save(tmp_path / "illumination.npz")
    again = PlateCorrections.load(path)
    reader, reread = FieldReader(both, CHANNELS, corr), FieldReader(both, CHANNELS, again)
    for i in (0, len(both) - 1):
        np.testing.assert_allclose(reader(i), reread(i), rtol=1e-6, atol=1e-7)
    assert np.load(path)["plate1_flatfield"].shape == (2, 64, 64)


def test_settings_stored_with_the_model_and_old_models_uncorrected(plates):
    clean, _ = plates
    settings = IlluminationSettings(degree=3, low_pct=2.0)
    assert IlluminationSettings.from_dict(settings.to_dict()) == settings
    assert IlluminationSettings.from_dict(None) == DISABLED
    with pytest.raises(FibroclassError, match="unknown key"):
        IlluminationSettings.from_dict({"flat": True})
    with pytest.raises(FibroclassError, match="must increase"):
        IlluminationSettings(low_pct=50, high_pct=10)
    plain = FieldReader(clean, CHANNELS, corrections_for_model(clean, ModelSpec()))
    raw = tifffile.imread(clean["path_actin"][0]) / 65535.0
    np.testing.assert_allclose(plain(0)[0], raw, rtol=1e-6)
    spec = ModelSpec(extra={"illumination": IlluminationSettings().to_dict()})
    assert corrections_for_model(clean, spec).plates["TRAIN01"].n_flat_fields > 0


def test_few_fields_skip_the_flatfield_and_pixel_size_is_matched(plates):
    clean, _ = plates
    few = clean.head(3).assign(**{PIXEL_SIZE: 0.325})
    corr = PlateCorrections.estimate(few, CHANNELS, IlluminationSettings(), target_pixel_size_um=0.65)
    assert any("no flat-field correction" in n for n in corr.notes)
    assert any("resampled to the model's 0.65" in n for n in corr.notes)
    assert FieldReader(few, CHANNELS, corr)(0).shape == (2, 40, 40)
