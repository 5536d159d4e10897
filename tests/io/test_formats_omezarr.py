"""OME-Zarr HCS plates (NGFF 0.4 plate -> well -> field): fields, pixels, channel labels, pixel size, Z."""

from __future__ import annotations

import json

import numpy as np
import pytest
from format_plates import KEYS, exported, pixels, raw, source_plate

from fibroclass.io.discover import discover_fields
from fibroclass.schema import BIT_DEPTH, PIXEL_SIZE

zarr = pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    root = tmp_path_factory.mktemp("zarr")
    index, _ = source_plate(root)
    return index, root


def test_hcs_plate_gives_same_fields_pixels_and_metadata(plate):
    index, root = plate
    res = exported(index, "omezarr", root)
    plate_dir = root / "omezarr" / "TRAIN01.zarr"
    assert res.formats == {str(plate_dir): "omezarr"} and res.problems == []
    assert res.fields[KEYS].values.tolist() == index[KEYS].values.tolist()
    np.testing.assert_array_equal(pixels(res.fields), pixels(index))
    assert res.fields[PIXEL_SIZE].tolist() == pytest.approx([0.65] * len(index))
    meta = json.loads((plate_dir / ".zattrs").read_text())["plate"]
    assert meta["version"] == "0.4" and meta["field_count"] == 2
    by_label = discover_fields(root / "omezarr", channel_map={"hoechst 33342": "nuclei", "ch1": "actin"})
    assert by_label.channels == ["nuclei", "actin"]


def test_8bit_plate_is_scaled_by_255(plate):
    index, root = plate
    res = exported(index, "omezarr-8bit", root)
    assert (res.fields[BIT_DEPTH] == 8).all() and raw(res.fields).dtype == np.uint8
    np.testing.assert_allclose(pixels(res.fields), pixels(index), atol=0.5 / 255 + 1e-7)


def test_z_stack_and_broken_well(tmp_path):
    root = zarr.open_group(str(tmp_path / "P5.ome.zarr"), mode="w", zarr_format=2)
    data = (np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4) * 10).astype(np.uint16)  # c z y x
    image = root.require_group("A/1/0")
    image.create_array("0", shape=data.shape, dtype=data.dtype)[:] = data
    axes = [{"name": n, "type": "channel" if n == "c" else "space"} for n in "czyx"]
    image.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}]
    root["A/1"].attrs["well"] = {"images": [{"path": "0"}]}
    root.attrs["plate"] = {"wells": [{"path": "A/1"}, {"path": "B/2"}], "version": "0.4"}
    res = discover_fields(tmp_path)
    assert res.fields[KEYS].values.tolist() == [["P5", "A01", 1]]
    np.testing.assert_array_equal(raw(res.fields, "nuclei")[0], data[1].max(axis=0))
    np.testing.assert_array_equal(raw(discover_fields(tmp_path, z=1).fields, "nuclei")[0], data[1, 0])
    assert any("B/2" in p for p in res.problems)
