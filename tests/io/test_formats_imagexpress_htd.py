"""MetaXpress plate folders: .HTD wavelength names, TimePoint_N/ZStep_M stacks, plain folders unaffected."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from format_plates import KEYS, exported, pixels, raw, source_plate

from fibroclass.errors import FibroclassError
from fibroclass.io.discover import discover_fields
from fibroclass.simulate.exports import Z_DIMMING


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    root = tmp_path_factory.mktemp("htd")
    index, _ = source_plate(root)
    return index, root


def test_timepoint_zstep_export_projects_to_the_same_pixels(plate):
    index, root = plate
    res = exported(index, "imagexpress_htd", root)
    assert set(res.formats.values()) == {"imagexpress_htd"} and res.problems == []
    assert res.fields[KEYS].values.tolist() == index[KEYS].values.tolist()
    assert res.fields["path_actin"][0].count("ZStep_") == len(Z_DIMMING)
    np.testing.assert_array_equal(pixels(res.fields), pixels(index))


def test_wavelength_names_from_htd_select_channels_and_a_chosen_zstep(plate):
    index, root = plate
    folder = root / "imagexpress_htd"
    res = discover_fields(folder, channel_map={"hoechst 33342": "nuclei", "w1": "actin"}, z=2)
    assert res.channels == ["nuclei", "actin"]
    assert "ZStep_2" in res.fields["path_actin"][0] and "|" not in res.fields["path_actin"][0]
    np.testing.assert_array_equal(raw(res.fields), raw(index))  # plane 2 is the rendered plane
    with pytest.raises(FibroclassError, match="ZStep_7 missing"):
        discover_fields(folder, z=7)


def test_single_plane_timepoint_folders_and_several_timepoints(tmp_path):
    for t in (1, 2):
        for ch in (1, 2):
            path = tmp_path / "P7" / f"TimePoint_{t}" / f"P7_C04_s2_w{ch}.TIF"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, np.full((3, 4), 10 * t + ch, np.uint16))
    res = discover_fields(tmp_path)
    assert res.formats == {str(tmp_path / "P7"): "imagexpress_htd"}
    assert res.fields[KEYS].values.tolist() == [["P7", "C04", 2]]
    assert raw(res.fields).max() == 11  # TimePoint_1
    assert any("only timepoint 1 is indexed" in p for p in res.problems)


def test_invalid_htd_leaves_a_plain_imagexpress_folder_alone(tmp_path):
    for ch in (1, 2):
        tifffile.imwrite(tmp_path / f"P1_A01_s1_w{ch}.tif", np.zeros((3, 3), np.uint16))
    (tmp_path / "P1.HTD").write_text("not an HTS info file")
    res = discover_fields(tmp_path)
    assert set(res.formats.values()) == {"imagexpress"} and len(res.fields) == 1
