"""Export discovery on real TIFFs: ImageXpress, Operetta and custom naming, problems, odd paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from export_builders import UUID, imagexpress_plate, operetta_plate, write_tif

from fibroclass.errors import FibroclassError
from fibroclass.io.discover import discover_fields
from fibroclass.io.formats import FORMATS, register_format
from fibroclass.io.formats.base import ImageFile, NameFormat
from fibroclass.io.images import read_field

KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Row", "Metadata_Col", "Metadata_Site"]


def test_imagexpress_folder_of_plate_folders(tmp_path: Path) -> None:
    imagexpress_plate(tmp_path / "P2", "P2", ["B2", "A10"], sites=1)
    imagexpress_plate(tmp_path / "P1", "P1", ["A01"], sites=2, uuid=True)
    (tmp_path / "P1" / "P1.HTD").write_text("htd")
    (tmp_path / "P1" / "notes.txt").write_text("x")
    write_tif(tmp_path / "P1" / f"P1_A01_s1_w1_thumb{UUID}.tif")
    res = discover_fields(tmp_path)
    df = res.fields
    assert list(df.columns) == KEYS + ["path_actin", "path_nuclei", "megapixels", "bit_depth", "pixel_size_um"]
    assert df[KEYS].values.tolist() == [
        ["P1", "A01", "A", 1, 1],
        ["P1", "A01", "A", 1, 2],
        ["P2", "A10", "A", 10, 1],
        ["P2", "B02", "B", 2, 1],
    ]
    assert res.problems == []
    assert Path(df["path_actin"][0]).is_absolute()
    assert Path(df["path_actin"][0]).name == f"P1_A01_s1_w1{UUID}.tif"
    assert Path(df["path_nuclei"][0]).name == f"P1_A01_s1_w2{UUID}.tif"
    assert set(res.formats.values()) == {"imagexpress"}
    # the paths are readable fields in channel order (w1 = actin was written with value 1000 + site)
    field = read_field([df["path_actin"][1], df["path_nuclei"][1]])
    assert field.shape == (2, 6, 8)
    assert round(float(field[0, 0, 0]) * 65535) == 1002 and round(float(field[1, 0, 0]) * 65535) == 2002


def test_imagexpress_flat_folder_with_underscored_plates_and_case(tmp_path: Path) -> None:
    imagexpress_plate(tmp_path, "EXP_2024_01_plate_A", ["C03"], sites=1)
    imagexpress_plate(tmp_path, "EXP_2024_01_plate_B", ["C03"], sites=1)
    write_tif(tmp_path / "exp_x_d04_S3_W1.TIFF")
    write_tif(tmp_path / "exp_x_d04_S3_W2.TIFF")
    write_tif(tmp_path / "single_site_B1_w1.tif")  # no `_s{site}`: site 1
    write_tif(tmp_path / "single_site_B1_w2.tif")
    df = discover_fields(tmp_path, naming="imagexpress").fields
    assert df[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].values.tolist() == [
        ["EXP_2024_01_plate_A", "C03", 1],
        ["EXP_2024_01_plate_B", "C03", 1],
        ["exp_x", "D04", 3],
        ["single_site", "B01", 1],
    ]


def test_missing_channel_is_a_problem_and_field_is_left_out(tmp_path: Path) -> None:
    imagexpress_plate(tmp_path / "P1", "P1", ["A01", "A02"], sites=1)
    (tmp_path / "P1" / "P1_A02_s1_w2.tif").unlink()
    write_tif(tmp_path / "P1" / "P1_A03_s1_w3.tif")
    write_tif(tmp_path / "P1" / "random_image.tif")
    res = discover_fields([tmp_path / "P1"])
    assert res.fields["Metadata_Well"].tolist() == ["A01"]
    text = "\n".join(res.problems)
    assert "plate P1 well A02 site 1: missing channel(s) nuclei" in text
    assert "P1_A02_s1_w1.tif" in text
    assert "channel 'w3' is not in the channel map" in text and "P1_A03_s1_w3.tif" in text
    assert "random_image.tif" in text


def test_duplicate_files_for_one_channel_skip_the_field(tmp_path: Path) -> None:
    imagexpress_plate(tmp_path / "P1", "P1", ["A01", "A02"], sites=1)
    write_tif(tmp_path / "P1" / f"P1_A01_s1_w1{UUID}.tif")
    res = discover_fields(tmp_path)
    assert res.fields["Metadata_Well"].tolist() == ["A02"]
    assert any("A01 site 1: several files for one channel (actin" in p for p in res.problems)


def test_operetta_plate_folder_and_harmony_images_folder(tmp_path: Path) -> None:
    operetta_plate(tmp_path / "PlateA", [(2, 3), (16, 24)], sites=2)
    operetta_plate(tmp_path / "PlateB" / "Images", [(1, 1)], sites=1)
    (tmp_path / "PlateB" / "Images" / "Index.idx.xml").write_text("<xml/>")
    res = discover_fields(tmp_path, naming="auto")
    df = res.fields
    assert df[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].values.tolist() == [
        ["PlateA", "B03", 1],
        ["PlateA", "B03", 2],
        ["PlateA", "P24", 1],
        ["PlateA", "P24", 2],
        ["PlateB", "A01", 1],
    ]
    assert Path(df["path_actin"][0]).name == "r02c03f01p01-ch1sk1fk1fl1.tiff"
    assert Path(df["path_nuclei"][0]).name == "r02c03f01p01-ch2sk1fk1fl1.tiff"
    assert set(res.formats.values()) == {"operetta"} and res.problems == []


def test_operetta_extra_planes_are_reported_and_only_the_first_is_indexed(tmp_path: Path) -> None:
    operetta_plate(tmp_path / "P", [(1, 1)], sites=1)
    for ch in (1, 2):
        write_tif(tmp_path / "P" / f"r01c01f01p02-ch{ch}sk1fk1fl1.tiff")
    res = discover_fields(tmp_path / "P")
    assert Path(res.fields["path_actin"][0]).name.startswith("r01c01f01p01")
    assert any("only timepoint 1 plane 1 is indexed" in p for p in res.problems)


def test_non_ascii_and_space_paths(tmp_path: Path) -> None:
    root = tmp_path / "exports été" / "Platte Ü 1"
    imagexpress_plate(root, "Plätte_1", ["H12"], sites=1)
    operetta_plate(tmp_path / "exports été" / "Opera Ø", [(8, 12)], sites=1)
    df = discover_fields(tmp_path / "exports été").fields
    assert sorted(df["Metadata_Plate"]) == ["Opera Ø", "Plätte_1"]
    assert read_field([df["path_actin"][0], df["path_nuclei"][0]]).shape == (2, 6, 8)


def test_custom_pattern_and_channel_map(tmp_path: Path) -> None:
    for well in ("A1", "B12"):
        for site in (1, 2):
            for stain in ("DAPI", "Phalloidin"):
                write_tif(tmp_path / "screen" / f"scr-{well}-f{site}-{stain}.tif")
    res = discover_fields(
        tmp_path,
        pattern=r"(?P<plate>\w+)-(?P<well>[A-P]\d+)-f(?P<site>\d+)-(?P<channel>\w+)\.tif",
        channel_map={"phalloidin": "actin", "dapi": "nuclei"},
    )
    assert res.fields[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].values.tolist() == [
        ["scr", "A01", 1],
        ["scr", "A01", 2],
        ["scr", "B12", 1],
        ["scr", "B12", 2],
    ]
    assert Path(res.fields["path_actin"][0]).name == "scr-A1-f1-Phalloidin.tif"


def test_custom_pattern_with_row_col_numbers_and_folder_plate(tmp_path: Path) -> None:
    for ch in (1, 2):
        write_tif(tmp_path / "PLATE9" / f"R3_C7_ch{ch}.tif")
    res = discover_fields(
        tmp_path, naming="custom", pattern=r"R(?P<row>\d+)_C(?P<col>\d+)_(?P<channel>ch\d)\.tif"
    )
    assert res.fields[KEYS].values.tolist() == [["PLATE9", "C07", "C", 7, 1]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"naming": "custom"}, "naming 'custom' needs a pattern"),
        ({"pattern": "(?P<well>x"}, "invalid naming pattern"),
        ({"pattern": r"(?P<well>\w+)\.tif"}, "needs named groups 'channel' and 'well'"),
        ({"naming": "cellomics"}, "unknown naming 'cellomics'"),
    ],
)
def test_bad_naming_arguments(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    imagexpress_plate(tmp_path, "P1", ["A01"], sites=1)
    with pytest.raises(FibroclassError, match=message):
        discover_fields(tmp_path, **kwargs)


def test_no_images_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "empty plate").mkdir()
    (tmp_path / "empty plate" / "plate.csv").write_text("a,b\n")
    with pytest.raises(FibroclassError, match="no TIFF images found in .*empty plate"):
        discover_fields(tmp_path / "empty plate")
    with pytest.raises(FibroclassError, match="missing_dir does not exist"):
        discover_fields(tmp_path / "missing_dir")


def test_only_unparseable_images_raise_with_the_reason(tmp_path: Path) -> None:
    write_tif(tmp_path / "scan0001.tif")
    with pytest.raises(FibroclassError, match="no complete fields found.*scan0001.tif"):
        discover_fields(tmp_path)


class _Cellomics(NameFormat):
    """A format added from outside: `{plate}_{well}f{site:02}d{channel}.tif`."""

    name = "cellomics_test"

    def parse(self, filename: str, folder: Path) -> ImageFile | None:
        stem, _, ext = filename.rpartition(".")
        plate, _, rest = stem.rpartition("_")
        if ext != "tif" or "f" not in rest or "d" not in rest:
            return None
        well, _, fd = rest.partition("f")
        site, _, ch = fd.partition("d")
        return ImageFile(plate, well, int(site), f"d{ch}", str((folder / filename).resolve()))


def test_formats_are_pluggable(tmp_path: Path) -> None:
    for ch in (0, 1):
        write_tif(tmp_path / f"MFG_B02f01d{ch}.tif")
    register_format(_Cellomics(), before=next(iter(FORMATS)))
    try:
        assert list(FORMATS)[0] == "cellomics_test"
        res = discover_fields(tmp_path, channel_map={"d0": "actin", "d1": "nuclei"})
    finally:
        FORMATS.pop("cellomics_test")
    assert res.fields[["Metadata_Plate", "Metadata_Well"]].values.tolist() == [["MFG", "B02"]]
    assert res.formats == {str(tmp_path): "cellomics_test"}


def test_symlinked_files_keep_their_export_names(tmp_path: Path) -> None:
    store = tmp_path / ".store"
    for ch in (1, 2):
        blob = write_tif(store / f"SHA256E-{ch}abc.tif")
        link = tmp_path / "P1" / f"P1_A01_s1_w{ch}.tif"
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(blob)
    df = discover_fields(tmp_path / "P1").fields
    assert Path(df["path_actin"][0]).name == "P1_A01_s1_w1.tif"
    assert read_field([df["path_actin"][0], df["path_nuclei"][0]]).shape == (2, 6, 8)
