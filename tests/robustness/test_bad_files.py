"""Bad image files: each becomes a flagged field row naming the file, and the rest of the plate scores as
if nothing had happened (same fields used, same disease score and rescue % in every other well)."""

from __future__ import annotations

import base64
import copy
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import tifffile
from robust_kit import SITES, copy_screen, field_row, run, well_row

from fibroclass.data.illumination import IlluminationSettings
from fibroclass.schema import QC_PASS, QC_REASON


def _flagged(result, well: str, site: int = 1):
    row = field_row(result, well, site)
    assert not row[QC_PASS] and np.isnan(row["disease_score"])
    return row[QC_REASON]


def _one_field_lost(result, clean, well: str) -> None:
    """The damaged well keeps its other field: scored from it alone."""
    w = well_row(result, well)
    assert (w["n_fields"], w["n_fields_used"]) == (SITES, SITES - 1)
    assert np.isfinite(w["disease_score"]) and "fields_flagged=1/2" in w["flags"]
    other = field_row(clean, well, 2)["disease_score"]
    assert w["disease_score"] == pytest.approx(other, rel=1e-5)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_or_truncated_tiff_is_a_flagged_field(screen, clean, model, tmp_path, damage, assert_rest):
    bad = screen.path("C01", 1, "actin")
    data = bad.read_bytes()
    bad.write_bytes(
        {"truncated": data[: len(data) // 3], "garbage": b"not a tiff" * 50, "empty": b""}[damage]
    )
    result = run(screen, model, tmp_path / "out")
    reason = _flagged(result, "C01")
    assert reason.startswith("unreadable") and str(bad) in reason
    _one_field_lost(result, clean, "C01")
    assert_rest(result, clean, {"C01"})


@pytest.mark.parametrize(
    ("dtype", "why"),
    [
        ("float64", "outside [0, 1]"),
        ("int32", "int32"),
        ("rgb", "RGB"),
    ],
)
def test_wrong_dtype_is_flagged_with_the_reason(screen, clean, model, tmp_path, dtype, why, assert_rest):
    bad = screen.path("C02", 1, "nuclei")
    img = tifffile.imread(bad)
    if dtype == "rgb":
        tifffile.imwrite(bad, np.stack([(img // 257).astype(np.uint8)] * 3, axis=-1), photometric="rgb")
    else:
        tifffile.imwrite(bad, img.astype(dtype))  # 0..65535 as float64 / int32: not what the model expects
    result = run(screen, model, tmp_path / "out")
    reason = _flagged(result, "C02")
    assert str(bad) in reason and why in reason
    _one_field_lost(result, clean, "C02")
    assert_rest(result, clean, {"C02"})


def test_float_tiff_in_unit_range_is_scored_like_the_integer_original(screen, clean, model, tmp_path):
    for channel in ("actin", "nuclei"):
        path = screen.path("C02", 1, channel)
        tifffile.imwrite(path, (tifffile.imread(path) / 65535).astype(np.float32))
    result = run(screen, model, tmp_path / "out")
    row = field_row(result, "C02")
    assert row[QC_PASS] and row[QC_REASON] == ""
    assert row["disease_score"] == pytest.approx(field_row(clean, "C02")["disease_score"], abs=1e-4)


def test_channel_shape_mismatch_is_flagged(screen, clean, model, tmp_path, assert_rest):
    bad = screen.path("B02", 2, "nuclei")
    tifffile.imwrite(bad, tifffile.imread(bad)[:24, :20])
    result = run(screen, model, tmp_path / "out")
    reason = _flagged(result, "B02", 2)
    assert "differ in shape" in reason and str(bad) in reason
    w = well_row(result, "B02")
    assert (w["n_fields"], w["n_fields_used"]) == (2, 1)
    assert_rest(result, clean, {"B02"}, rescue=False)  # B02 is a disease control: rescue shifts


def test_missing_channel_file_is_a_flagged_field_naming_the_channel(
    screen, clean, model, tmp_path, assert_rest
):
    screen.path("C03", 1, "nuclei").unlink()
    have = screen.path("C03", 1, "actin")
    result = run(screen, model, tmp_path / "out")
    reason = _flagged(result, "C03")
    assert "nuclei" in reason and str(have) in reason
    assert any("C03" in w and "nuclei" in w for w in result.warnings)
    _one_field_lost(result, clean, "C03")
    assert_rest(result, clean, {"C03"})


def test_two_files_for_one_channel_are_a_flagged_field(screen, clean, model, tmp_path, assert_rest):
    original = screen.path("D01", 1, "actin")
    twin = original.with_name(original.stem + "7C1B8C54-2A2F-4D49-9E3E-5D9A1F0B6C11.tif")  # UUID variant
    twin.write_bytes(original.read_bytes())
    result = run(screen, model, tmp_path / "out")
    reason = _flagged(result, "D01")
    assert str(original) in reason and str(twin) in reason
    _one_field_lost(result, clean, "D01")
    assert_rest(result, clean, {"D01"})


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_pixels_flag_the_field_and_never_reach_well_means(
    screen, clean, model, tmp_path, value, assert_rest
):
    for channel in ("actin", "nuclei"):  # a float export of the field, with a bad patch in actin
        path = screen.path("D02", 2, channel)
        img = (tifffile.imread(path) / 65535).astype(np.float32)
        if channel == "actin":
            img[5:9, 5:9] = value
        tifffile.imwrite(path, img)
    result = run(screen, model, tmp_path / "out")
    reason = _flagged(result, "D02", 2)
    assert reason.startswith("nonfinite") and "16" in reason and str(screen.path("D02", 2, "actin")) in reason
    w = well_row(result, "D02")
    assert w["n_fields_used"] == 1
    assert w["disease_score"] == pytest.approx(field_row(clean, "D02", 1)["disease_score"], rel=1e-5)
    assert_rest(result, clean, {"D02"})


def test_8bit_exports_mixed_with_16bit_are_scaled_by_their_own_depth(
    screen, clean, model, tmp_path, assert_rest
):
    """Wells re-exported as 8-bit (value // 257) score like their 16-bit originals, and the plate's other
    wells are not rescaled because of them."""
    for well in ("C01", "A02"):
        for site in (1, 2):
            for channel in ("actin", "nuclei"):
                path = screen.path(well, site, channel)
                tifffile.imwrite(path, (tifffile.imread(path) // 257).astype(np.uint8))
    result = run(screen, model, tmp_path / "out")
    for well in ("C01", "A02"):
        got, ref = well_row(result, well), well_row(clean, well)
        assert got["n_fields_used"] == SITES
        # only 8-bit quantization apart (scores span -2 healthy .. +2 disease)
        assert got["disease_score"] == pytest.approx(ref["disease_score"], abs=0.1)
        assert got["rescue_pct"] == pytest.approx(ref["rescue_pct"], abs=3)
    assert_rest(result, clean, {"C01", "A02"}, rescue=False)  # A02 is a healthy control


def test_extra_unknown_files_are_reported_and_ignored(screen, clean, model, tmp_path, assert_rest):
    folder = screen.root / "P1"
    (folder / "notes.txt").write_text("acquisition notes")
    (folder / "Thumbs.db").write_bytes(b"\0" * 64)
    (folder / "P1_A01_s1_w1_thumb.tif").write_bytes(screen.path("A01").read_bytes())
    tifffile.imwrite(folder / "P1_A01_s1_w3.tif", np.zeros((32, 32), np.uint16))  # unmapped channel
    tifffile.imwrite(folder / "overview.tif", np.zeros((8, 8), np.uint8))  # no field naming
    (folder / "P1_A01_s1_w1.tif.partial").write_bytes(b"half")
    result = run(screen, model, tmp_path / "out")
    text = "\n".join(result.warnings)
    assert "'w3'" in text and "P1_A01_s1_w3.tif" in text
    assert "overview.tif" in text
    assert len(result.fields) == len(clean.fields) and result.fields[QC_PASS].all()
    assert_rest(result, clean)


def test_unreadable_file_does_not_change_the_scaling_of_a_12bit_plate(screen, clean, model, tmp_path):
    """The plate's bit depth is detected from a sample of its files; a truncated one among them is skipped,
    so the 12-bit plate is still scaled by 4095 (not by the uint16 range) and scores like the 16-bit original."""
    for path in sorted((screen.root / "P1").glob("*.tif")):
        tifffile.imwrite(path, tifffile.imread(path) >> 4)  # 12-bit camera data stored as uint16
    bad = screen.path("C01", 2, "actin")  # one of the fields sampled for the bit depth
    bad.write_bytes(bad.read_bytes()[:200])
    result = run(screen, model, tmp_path / "out")
    assert set(result.fields["bit_depth"]) == {12}
    assert str(bad) in _flagged(result, "C01", 2)
    for well in clean.wells["Metadata_Well"]:
        got, ref = well_row(result, well), well_row(clean, well)
        assert got["disease_score"] == pytest.approx(ref["disease_score"], abs=0.15), well
        if well != "C01":
            assert got["rescue_pct"] == pytest.approx(ref["rescue_pct"], abs=4), well


def test_nan_field_does_not_disable_the_plates_illumination_correction(screen, model, tmp_path):
    """With a model trained with per-plate flat-field + intensity normalization, a NaN field is left out of
    the plate's estimates (as if it had not been imaged) instead of turning them into NaN, which would
    leave the whole plate uncorrected."""
    corrected = copy.deepcopy(model)
    corrected.spec = replace(model.spec, extra={"illumination": IlluminationSettings(min_fields=4).to_dict()})
    absent = copy_screen(screen, tmp_path / "absent")
    for channel in ("actin", "nuclei"):
        absent.path("A01", 1, channel).unlink()
        path = screen.path("A01", 1, channel)  # a control field: sampled for the normalization levels
        img = (tifffile.imread(path) / 65535).astype(np.float32)
        img[0, :] = np.nan
        tifffile.imwrite(path, img)
    reference = run(absent, corrected, tmp_path / "ref")
    after = run(screen, corrected, tmp_path / "after")
    assert _flagged(after, "A01").startswith("nonfinite")
    got = after.wells.set_index("Metadata_Well")
    ref = reference.wells.set_index("Metadata_Well")
    assert got["disease_score"].to_numpy() == pytest.approx(ref["disease_score"].to_numpy(), rel=1e-5)
    assert got["rescue_pct"].to_numpy() == pytest.approx(ref["rescue_pct"].to_numpy(), rel=1e-5)


# A damaged TIFF found by fuzzing (tests/fuzz): its IFD chain loops (8 -> 12 -> 8 ...), which tifffile's
# `series` followed forever. Reading it must end with an error naming the file, not hang the plate.
LOOPING_TIFF = base64.b64decode(
    "SUkqAAgAAAAOAAABBAABAAAABwAAAAEBBAABAAAABgAAAAIBAwABAAAAEAAAAAMBAwABAABRbxVbxhfkswAIAAAABgEDAAEAAAAB"
    "AAAADgECABIAAAC2AAAAEQEEAAEAAAAAAQAAFQEDAAEAAAABAAAAFgEEAAEAAAAGAAAAFwEEAAEAAABDAAAAGgEFAAEAAADYAAAA"
    "GwEFAAEAAADgAAAAKAEDAAEAAAABAAAAMQECAAwAAADoAAAAAAAAAHsic2hhcGUiOiBbNiwgN119AAAAAAAAAAAAAAAAAAAAAAAB"
    "AAAAAQAAAAEAAAABAAAAdGlmZmZpbGUucHkAAAAAAAAAAAAAAAAAeJwFwQkCgQAAALAVEhI="
)


def test_tiff_with_a_looping_ifd_chain_is_flagged_not_hung(screen, clean, model, tmp_path, assert_rest):
    bad = screen.path("C03", 2, "actin")
    bad.write_bytes(LOOPING_TIFF)
    code = f"from fibroclass.io.images import read_raw\ntry:\n    read_raw({str(bad)!r})\nexcept Exception as e:\n    print(e)"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert str(bad) in probe.stdout  # an error naming the file, within the timeout
    result = run(screen, model, tmp_path / "out")
    assert str(bad) in _flagged(result, "C03", 2)
    assert_rest(result, clean, {"C03"})
