"""Harmony exports (Index.idx.xml / Index.xml): plate name, channel names, pixel size, Z-stacks, problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from format_plates import KEYS, exported, pixels, raw, source_plate

from fibroclass.io.discover import discover_fields
from fibroclass.schema import PIXEL_SIZE
from fibroclass.simulate.exports import Z_DIMMING


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    root = tmp_path_factory.mktemp("harmony")
    index, _ = source_plate(root)
    return index, root


def test_harmony_export_gives_same_fields_pixels_and_pixel_size(plate):
    index, root = plate
    res = exported(index, "harmony", root)
    assert set(res.formats.values()) == {"harmony"} and res.problems == []
    df = res.fields
    assert df[KEYS].values.tolist() == index[KEYS].values.tolist()
    np.testing.assert_array_equal(pixels(df), pixels(index))
    assert df[PIXEL_SIZE].tolist() == pytest.approx([0.65] * len(df))
    assert Path(df["path_actin"][0]).parent.name == "Images"


def test_channels_selected_by_harmony_channel_name(plate):
    index, root = plate
    res = exported(
        index,
        "harmony",
        root / "byname",
        channel_map={"hoechst 33342": "nuclei", "alexa 488 phalloidin": "actin"},
    )
    assert res.channels == ["nuclei", "actin"]
    np.testing.assert_array_equal(raw(res.fields, "nuclei"), raw(index, "nuclei"))


def test_zstack_max_projection_or_chosen_plane(plate):
    index, root = plate
    res = exported(index, "harmony-zstack", root)
    assert "|" in res.fields["path_actin"][0]  # three planes, projected
    np.testing.assert_array_equal(raw(res.fields), raw(index))
    folder = root / "harmony-zstack"
    low = Z_DIMMING.index(min(Z_DIMMING)) + 1
    dim = discover_fields(folder, z=low).fields
    expected = (raw(index).astype(np.float64) * min(Z_DIMMING)).astype(np.uint16)
    np.testing.assert_array_equal(raw(dim), expected)


def test_hand_written_index_with_v6_namespace_missing_file_and_timepoints(tmp_path):
    images = tmp_path / "PLATE9__2024-01-01T10_00_00-Measurement 1" / "Images"
    images.mkdir(parents=True)
    rows = []
    for t in (0, 1):
        for ch in (1, 2):
            name = f"r02c03f01p01-ch{ch}sk{t + 1}fk1fl1.tiff"
            tifffile.imwrite(images / name, np.full((4, 5), 100 * ch + t, np.uint16))
            rows.append((name, ch, t))
    images_xml = "".join(
        f"<Image Version='1'><id>i{k}</id><State>Ok</State><URL>{u}</URL><Row>2</Row><Col>3</Col>"
        f"<FieldID>1</FieldID><PlaneID>1</PlaneID><TimepointID>{t}</TimepointID><ChannelID>{ch}</ChannelID>"
        f"<ImageResolutionX Unit='m'>3.25E-07</ImageResolutionX></Image>"
        for k, (u, ch, t) in enumerate(rows)
    )
    missing = (
        "<Image Version='1'><id>gone</id><State>Ok</State><URL>r09c09f01p01-ch1sk1fk1fl1.tiff</URL>"
        "<Row>9</Row><Col>9</Col><FieldID>1</FieldID><PlaneID>1</PlaneID><ChannelID>1</ChannelID></Image>"
    )
    (images / "Index.xml").write_text(
        "<?xml version='1.0' encoding='utf-8'?>"
        "<EvaluationInputData xmlns='http://www.perkinelmer.com/PEHH/HarmonyV6' Version='2'>"
        "<Plates><Plate><PlateID>abc</PlateID><Name>PLATE9</Name></Plate></Plates>"
        "<Maps><Map><Entry ChannelID='1'><ChannelName>Alexa 488</ChannelName></Entry>"
        "<Entry ChannelID='2'><ChannelName>DAPI</ChannelName></Entry></Map></Maps>"
        f"<Images>{images_xml}{missing}</Images></EvaluationInputData>"
    )
    res = discover_fields(tmp_path, channel_map={"alexa 488": "actin", "dapi": "nuclei"})
    assert res.fields[KEYS].values.tolist() == [["PLATE9", "B03", 1]]
    assert res.fields[PIXEL_SIZE][0] == pytest.approx(0.325)
    assert raw(res.fields).max() == 100  # timepoint 0 only
    text = "\n".join(res.problems)
    assert "1 missing file(s)" in text and "r09c09f01p01-ch1sk1fk1fl1.tiff" in text
    assert "only timepoint 0 is indexed" in text


def test_unparseable_index_falls_back_to_operetta_names(plate, tmp_path):
    index, root = plate
    folder = exported(index, "harmony", tmp_path).fields["path_actin"][0]
    xml = Path(folder).parent / "Index.idx.xml"
    xml.write_text(xml.read_text()[:200])  # truncated export
    res = discover_fields(tmp_path)
    assert len(res.fields) == len(index)
    assert any("cannot parse Harmony index" in p for p in res.problems)
