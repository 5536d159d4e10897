"""Plate-level failures (no controls, empty or wholly unreadable plates) fail that plate only, with the reason in
plate_qc.json and the CLI output; only a wholly unusable request exits non-zero with one line naming the input.
Runs `fibroclass score` through its CLI entry point with a declarative model folder."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from robust_kit import make_screen, save_model_folder

from fibroclass.cli.app import main
from fibroclass.schema import PLATE, QC_PASS


@pytest.fixture
def model_dir(model, tmp_path):
    return save_model_folder(model, tmp_path / "model folder")


def _score(roots, platemap, model_dir, out, capsys) -> tuple[int, str, str]:
    argv = ["score", *map(str, roots), "--platemap", str(platemap), "--model", str(model_dir)]
    rc = main(
        [*argv, "--out", str(out), "--device", "cpu", "--batch-size", "16", "--no-progress", "--no-mlflow"]
    )
    printed = capsys.readouterr()
    return rc, " ".join(printed.out.split()), printed.err


def _same_as_clean(out, clean, plate: str = "P1") -> None:
    wells = pd.read_csv(out / "wells.csv")
    got = wells[wells[PLATE] == plate].set_index("Metadata_Well")
    ref = clean.wells.set_index("Metadata_Well")
    assert list(got.index) == list(ref.index)
    for col in ("disease_score", "rescue_pct"):
        assert got[col].to_numpy() == pytest.approx(ref[col].to_numpy(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("missing", ["healthy", "disease"])
def test_plate_without_a_control_group_fails_alone(tmp_path, clean, model_dir, capsys, missing):
    screen = make_screen(tmp_path, plates=("P1", "P2"))
    pm = pd.read_csv(screen.platemap)
    gone = pm[(pm["plate"] == "P2") & (pm["role"] == missing)]
    pm.drop(gone.index).to_csv(screen.platemap, index=False)
    for well in gone["well"]:
        for path in (screen.root / "P2").glob(f"P2_{well}_*"):
            path.unlink()
    rc, out, _ = _score([screen.root], screen.platemap, model_dir, tmp_path / "out", capsys)
    assert rc == 0
    qc = json.loads((tmp_path / "out" / "plate_qc.json").read_text())["plates"]
    assert qc["P1"]["pass"] == clean.plate_qc["P1"]["pass"] and qc["P1"]["controls_ok"]
    assert not qc["P2"]["pass"] and not qc["P2"]["controls_ok"]
    assert any(f"no {missing} control wells" in r for r in qc["P2"]["reasons"])
    assert "P2" in out and "FAIL" in out and f"no {missing} control wells" in out
    _same_as_clean(tmp_path / "out", clean)
    wells = pd.read_csv(tmp_path / "out" / "wells.csv")
    p2 = wells[wells[PLATE] == "P2"]
    assert p2["disease_score"].notna().all() and p2["rescue_pct"].isna().all()
    assert p2["flags"].str.contains("plate_controls_unusable").all()


def test_plate_with_every_file_unreadable_fails_alone(tmp_path, clean, model_dir, capsys):
    screen = make_screen(tmp_path, plates=("P1", "P2"))
    for path in (screen.root / "P2").glob("*.tif"):
        path.write_bytes(path.read_bytes()[:100])  # a full disk: every file truncated
    rc, out, _ = _score([screen.root], screen.platemap, model_dir, tmp_path / "out", capsys)
    assert rc == 0
    fields = pd.read_parquet(tmp_path / "out" / "fields.parquet")
    p2 = fields[fields[PLATE] == "P2"]
    assert len(p2) == 22 and not p2[QC_PASS].any()
    assert p2["qc_reason"].str.contains("unreadable").all()
    qc = json.loads((tmp_path / "out" / "plate_qc.json").read_text())["plates"]
    assert not qc["P2"]["pass"] and qc["P2"]["n_fields_flagged"] == 22
    assert "P2" in out and "FAIL" in out
    _same_as_clean(tmp_path / "out", clean)


def test_empty_plate_is_reported_not_a_crash(tmp_path, clean, model_dir, capsys):
    screen = make_screen(tmp_path, plates=("P1", "P2"))
    shutil.rmtree(screen.root / "P2")
    (screen.root / "P2").mkdir()  # the plate's folder exists, its images never arrived
    rc, out, _ = _score([screen.root], screen.platemap, model_dir, tmp_path / "out", capsys)
    assert rc == 0
    assert "plate P2" in out and "has no images" in out
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert any("plate P2" in w and "has no images" in w for w in run_info["warnings"])
    _same_as_clean(tmp_path / "out", clean)


def test_non_ascii_and_space_paths(tmp_path, clean, model_dir, capsys):
    base = tmp_path / "Écran Nº 1 (copie)" / "Plättchen ü"
    screen = make_screen(base)
    platemap = screen.platemap.rename(base / "Plattenkarte é 1.csv")
    out = tmp_path / "résultats 2026" / "P1 ø"
    rc, printed, _ = _score([screen.root], platemap, model_dir, out, capsys)
    assert rc == 0
    _same_as_clean(out, clean)
    fields = pd.read_parquet(out / "fields.parquet")
    assert fields["path_actin"].str.contains("Plättchen ü").all()


def _one_line_error(rc: int, err: str, *named: str) -> None:
    line = err.strip().splitlines()[-1]
    assert rc == 1 and line.startswith("error: ")
    for part in named:
        assert part in line, f"{part!r} not in {line!r}"


def test_no_images_at_all_is_one_line_error(tmp_path, model_dir, capsys):
    screen = make_screen(tmp_path)
    empty = tmp_path / "empty export"
    empty.mkdir()
    (empty / "readme.txt").write_text("nothing here")
    rc, _, err = _score([empty], screen.platemap, model_dir, tmp_path / "out", capsys)
    _one_line_error(rc, err, str(empty))
    rc, _, err = _score([tmp_path / "nope"], screen.platemap, model_dir, tmp_path / "out", capsys)
    _one_line_error(rc, err, str(tmp_path / "nope"), "does not exist")
    assert not (tmp_path / "out" / "wells.csv").exists()


@pytest.mark.parametrize("damage", ["missing", "binary", "no-role-column", "no-valid-row", "empty"])
def test_unreadable_platemap_is_one_line_error(tmp_path, model_dir, capsys, damage):
    screen = make_screen(tmp_path)
    pm = screen.platemap
    if damage == "missing":
        pm.unlink()
    elif damage == "binary":
        pm.write_bytes(bytes(range(256)) * 8)
    elif damage == "no-role-column":
        pd.read_csv(pm).drop(columns="role").to_csv(pm, index=False)
    elif damage == "no-valid-row":
        pd.read_csv(pm).assign(well="Q77").to_csv(pm, index=False)
    else:
        pm.write_text("")
    rc, _, err = _score([screen.root], pm, model_dir, tmp_path / "out", capsys)
    named = {"no-role-column": ["role"], "no-valid-row": ["Q77"]}.get(damage, [])
    _one_line_error(rc, err, str(pm), *named)


def test_field_rows_name_well_and_file_in_cli_warnings(tmp_path, model_dir, capsys):
    screen = make_screen(tmp_path)
    bad = screen.path("C02", 2, "actin")
    bad.write_bytes(b"")
    rc, out, _ = _score([screen.root], screen.platemap, model_dir, tmp_path / "out", capsys)
    assert rc == 0 and "1 of 22 field(s) failed QC" in out
    fields = pd.read_parquet(tmp_path / "out" / "fields.parquet")
    row = fields[(fields["Metadata_Well"] == "C02") & (fields["Metadata_Site"] == 2)].iloc[0]
    assert not row[QC_PASS] and str(bad) in row["qc_reason"]


def test_compound_whose_every_field_is_unreadable_still_gets_a_report(tmp_path, clean, model_dir, capsys):
    screen = make_screen(tmp_path)
    for well in ("C01", "C02", "C03"):  # every dose of drugX
        for path in (screen.root / "P1").glob(f"P1_{well}_*"):
            path.write_bytes(b"")
    rc, out, err = _score([screen.root], screen.platemap, model_dir, tmp_path / "out", capsys)
    assert rc == 0, err
    assert (tmp_path / "out" / "report.html").is_file()
    wells = pd.read_csv(tmp_path / "out" / "wells.csv").set_index("Metadata_Well")
    assert wells.loc[["C01", "C02", "C03"], "n_fields_used"].eq(0).all()
    assert wells.loc[["C01", "C02", "C03"], "flags"].str.contains("no_fields_used").all()
    assert wells.loc["D01", "rescue_pct"] == pytest.approx(
        clean.wells.set_index("Metadata_Well").loc["D01", "rescue_pct"]
    )


def test_failed_plate_reason_is_printed_even_after_many_warnings(tmp_path, model_dir, capsys):
    screen = make_screen(tmp_path, plates=("P1", "P2"))
    for path in (screen.root / "P2").glob("P2_*_s2_w2.tif"):
        path.unlink()  # 11 fields missing a channel: 11 warnings before the plate verdicts
    pm = pd.read_csv(screen.platemap)
    pm[~((pm["plate"] == "P2") & (pm["role"] == "disease"))].to_csv(screen.platemap, index=False)
    rc, out, _ = _score([screen.root], screen.platemap, model_dir, tmp_path / "out", capsys)
    assert rc == 0 and "more warnings" in out
    assert "P2: no disease control wells" in out
