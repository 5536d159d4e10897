"""One TIFF per field with every channel: OME-TIFF (names, pixel size, bits), ImageJ stacks, plain pages."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from format_plates import KEYS, exported, pixels, raw, source_plate

from fibroclass.io.discover import discover_fields
from fibroclass.io.images import read_plane
from fibroclass.schema import BIT_DEPTH, PIXEL_SIZE


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    root = tmp_path_factory.mktemp("ome")
    index, _ = source_plate(root)
    return index, root


@pytest.mark.parametrize("naming", ["ometiff", "multipage"])
def test_field_files_give_same_fields_and_pixels(plate, naming):
    index, root = plate
    res = exported(index, naming, root)
    assert set(res.formats.values()) == {"ometiff"} and res.problems == []
    assert res.fields[KEYS].values.tolist() == index[KEYS].values.tolist()
    np.testing.assert_array_equal(pixels(res.fields), pixels(index))
    sizes = res.fields[PIXEL_SIZE]
    if naming == "ometiff":
        assert res.fields["path_nuclei"][0].endswith(".ome.tif#c=1")
        assert sizes.tolist() == pytest.approx([0.65] * len(sizes))
    else:
        assert res.fields["path_nuclei"][0].endswith(".tif#page=1") and sizes.isna().all()


def test_ome_channel_names_and_declared_12_bits(plate):
    index, root = plate
    res = exported(
        index, "ometiff-12bit", root, channel_map={"alexa 488 phalloidin": "actin", "ch2": "nuclei"}
    )
    assert (res.fields[BIT_DEPTH] == 12).all()
    assert raw(res.fields).max() <= 4095
    np.testing.assert_allclose(pixels(res.fields), pixels(index), atol=0.5 / 4095 + 1e-7)


def test_imagej_hyperstack_with_z_max_projection_or_plane(tmp_path):
    stack = np.arange(3 * 2 * 4 * 5, dtype=np.uint16).reshape(3, 2, 4, 5) * 50  # Z C Y X
    tifffile.imwrite(tmp_path / "P3_D05_s4.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    res = discover_fields(tmp_path)
    assert res.fields[KEYS].values.tolist() == [["P3", "D05", 4]]
    np.testing.assert_array_equal(raw(res.fields, "nuclei")[0], stack[:, 1].max(axis=0))
    first = discover_fields(tmp_path, z=1).fields
    assert first["path_nuclei"][0].endswith("#c=1&z=0")
    np.testing.assert_array_equal(raw(first, "nuclei")[0], stack[0, 1])
    assert read_plane(first["path_nuclei"][0], bit_depth=12).max() == pytest.approx(stack[0, 1].max() / 4095)


def test_single_channel_files_are_not_this_format(tmp_path):
    tifffile.imwrite(tmp_path / "P1_B02_s1.tif", np.zeros((4, 5), np.uint16))
    tifffile.imwrite(tmp_path / "P1_B02_s2.tif", np.zeros((2, 4, 5), np.uint16), metadata=None)
    res = discover_fields(tmp_path)
    assert res.fields[KEYS].values.tolist() == [["P1", "B02", 2]]
    assert any("not multi-channel field files: P1_B02_s1.tif" in p for p in res.problems)
