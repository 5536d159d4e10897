"""Bit depth per plate (8/12/16), pixel-size resampling and plane locators."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from fibroclass.errors import FibroclassError
from fibroclass.io.bitdepth import bit_depth_from_max, scale_to_unit
from fibroclass.io.discover import discover_fields
from fibroclass.io.images import make_locator, parse_locator, read_field, read_plane, read_raw
from fibroclass.io.pixels import rescale_to_pixel_size
from fibroclass.schema import BIT_DEPTH, PLATE


def _plate(folder, plate, peak, dark_peak, dtype=np.uint16):
    """Two fields of ImageXpress TIFFs: one reaching `peak`, one dark field reaching `dark_peak`."""
    folder.mkdir(parents=True, exist_ok=True)
    for site, top in ((1, peak), (2, dark_peak)):
        for ch in (1, 2):
            img = np.linspace(0, top, 20).reshape(4, 5).astype(dtype)
            tifffile.imwrite(folder / f"{plate}_B02_s{site}_w{ch}.tif", img)


def test_bit_depth_is_decided_per_plate_and_scales_reads(tmp_path):
    _plate(tmp_path / "P12", "P12", peak=4000, dark_peak=300)  # 12-bit camera
    _plate(tmp_path / "P16", "P16", peak=30000, dark_peak=300)  # 16-bit camera, one dark field
    _plate(tmp_path / "P8", "P8", peak=250, dark_peak=20, dtype=np.uint8)
    df = discover_fields(tmp_path).fields
    assert dict(zip(df[PLATE], df[BIT_DEPTH], strict=True)) == {"P12": 12, "P16": 16, "P8": 8}
    dark16 = df[(df[PLATE] == "P16") & (df["Metadata_Site"] == 2)].iloc[0]
    img = read_field([dark16["path_actin"], dark16["path_nuclei"]], int(dark16[BIT_DEPTH]))
    assert img.max() == pytest.approx(300 / 65535)  # the dark field is not stretched to 12 bits
    bright12 = df[(df[PLATE] == "P12") & (df["Metadata_Site"] == 1)].iloc[0]
    assert read_plane(bright12["path_actin"], 12).max() == pytest.approx(4000 / 4095)


def test_scaling_rules():
    assert bit_depth_from_max(4095, np.uint16) == 12 and bit_depth_from_max(4096, np.uint16) == 16
    assert bit_depth_from_max(3, np.uint8) == 8 and bit_depth_from_max(1.0, np.float32) is None
    assert scale_to_unit(np.array([4095], np.uint16), 12)[0] == pytest.approx(1.0)
    assert scale_to_unit(np.array([65535], np.uint16))[0] == pytest.approx(1.0)
    assert scale_to_unit(np.array([0.25], np.float32), 12)[0] == pytest.approx(0.25)


def test_rescale_to_model_pixel_size_is_anti_aliased():
    rng = np.random.default_rng(0)
    fine = rng.random((2, 64, 64)).astype(np.float32)  # 0.325 µm/pixel
    coarse = rescale_to_pixel_size(fine, 0.325, 0.65)
    assert coarse.shape == (2, 32, 32) and coarse.dtype == np.float32
    assert coarse.std() < 0.6 * fine.std()  # pixel noise averaged, not aliased
    assert abs(coarse.mean() - fine.mean()) < 0.01
    assert rescale_to_pixel_size(fine, 0.652, 0.65) is fine  # within 1 %
    assert rescale_to_pixel_size(fine, float("nan"), 0.65) is fine
    assert rescale_to_pixel_size(fine, 0.325, None) is fine


def test_locators_round_trip_and_errors(tmp_path):
    stack = np.arange(2 * 3 * 5 * 6, dtype=np.uint16).reshape(2, 3, 5, 6)  # C Z Y X
    path = tmp_path / "x#1.ome.tif"  # '#' in a file name is not a locator
    tifffile.imwrite(path, stack, ome=True, metadata={"axes": "CZYX"})
    loc = make_locator(path, c=1, z=2)
    assert parse_locator(loc).c == 1 and parse_locator(loc).z == 2
    np.testing.assert_array_equal(read_raw(loc), stack[1, 2])
    np.testing.assert_array_equal(read_raw(make_locator(path, c=0)), stack[0].max(axis=0))
    with pytest.raises(FibroclassError, match="select one with #c=N"):
        read_raw(str(path) + "#z=0")
    with pytest.raises(FibroclassError, match="out of range"):
        read_raw(make_locator(path, c=5))
    with pytest.raises(FibroclassError, match="unknown key 'q'"):
        read_raw(str(path) + "#q=1")
    with pytest.raises(FibroclassError, match="cannot read image"):
        read_raw(tmp_path / "missing.tif")
    plain = tmp_path / "plain#notes.tif"
    tifffile.imwrite(plain, stack[0, 0])
    np.testing.assert_array_equal(read_raw(plain), stack[0, 0])
