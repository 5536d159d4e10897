"""Plate sets on disk: file names, plate-map contract, ground truth, determinism, naming-independent pixels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from sim_measures import coherency
from sklearn.metrics import roc_auc_score

from fibroclass import schema
from fibroclass.errors import FibroclassError
from fibroclass.io.images import read_field
from fibroclass.io.index import build_index
from fibroclass.io.platemap import read_platemap
from fibroclass.simulate import simulate_screen, simulate_training_set

IMAGEXPRESS = re.compile(r"^(?P<plate>[^_]+)_(?P<well>[A-P]\d{2})_s(?P<site>\d+)_w(?P<ch>[12])\.tif$")
OPERETTA = re.compile(r"^r(?P<row>\d{2})c(?P<col>\d{2})f(?P<site>\d{2})p01-ch(?P<ch>[12])sk1fk1fl1\.tiff$")
PLATEMAP_COLUMNS = ["plate", "well", "role", "compound", "concentration_uM", "donor", "genotype"]


def field_key_imagexpress(path: Path) -> tuple[str, str, int, int]:
    m = IMAGEXPRESS.match(path.name)
    assert m, path.name
    assert m["plate"] == path.parent.name
    return m["plate"], m["well"], int(m["site"]), int(m["ch"])


def field_key_operetta(path: Path) -> tuple[str, str, int, int]:
    m = OPERETTA.match(path.name)
    assert m, path.name
    well = f"{chr(ord('A') + int(m['row']) - 1)}{int(m['col']):02d}"
    return path.parent.name, well, int(m["site"]), int(m["ch"])


def pixels(images_dir: Path, key) -> dict[tuple[str, str, int, int], np.ndarray]:
    return {key(p): tifffile.imread(p) for p in sorted(images_dir.rglob("*.tif*"))}


def test_training_set_files_and_platemap(train_set):
    pm = pd.read_csv(train_set.platemap)
    assert list(pm.columns) == PLATEMAP_COLUMNS
    assert set(pm.plate) == set(train_set.plates) == {"TRAIN01", "TRAIN02"}
    assert (pm.compound == "DMSO").all() and (pm.concentration_uM == 0).all()
    assert set(pm.role) == {schema.ROLE_HEALTHY, schema.ROLE_DISEASE}
    assert (pm.role == schema.ROLE_HEALTHY).eq(pm.genotype == "healthy").all()
    assert (pm.genotype == "GoF").eq(pm.donor.str.startswith("GoF")).all()
    for plate, grp in pm.groupby("plate"):
        assert grp.donor.value_counts().to_dict() == {
            d: 3 for d in [*map("HD{}".format, range(1, 5)), *map("GoF{}".format, range(1, 5))]
        }, plate
    assert pm.well.str.fullmatch(r"[A-H](0[1-9]|1[0-2])").all()
    files = pixels(train_set.images_dir, field_key_imagexpress)
    assert len(files) == len(pm) * 2 * 2 == train_set.n_fields * 2
    assert {(p, w) for p, w, _, _ in files} == set(zip(pm.plate, pm.well, strict=True))
    plane = next(iter(files.values()))
    assert plane.dtype == np.uint16 and plane.shape == (64, 64)
    # The project's own plate-map reader and image discovery accept the output as is.
    assert len(read_platemap(train_set.platemap)) == len(pm)
    index = build_index(train_set.images_dir, train_set.platemap).index
    assert len(index) == train_set.n_fields
    field = read_field([index.loc[0, schema.path_col(c)] for c in schema.CHANNELS])
    assert field.shape == (2, 64, 64) and 0 < field.mean() < 1


def test_ground_truth_tables(train_set, screen_set):
    for sim in (train_set, screen_set):
        pm = pd.read_csv(sim.platemap)
        wells = pd.read_csv(sim.ground_truth_wells)
        fields = pd.read_csv(sim.ground_truth_fields)
        assert list(wells.columns) == [
            "plate", "well", "severity", "viability", "offtarget", "role", "compound", "concentration_uM", "donor"
        ]  # fmt: skip
        assert list(fields.columns) == ["plate", "well", "site", "artefact", "n_cells", "vignetting"]
        assert wells[["plate", "well", "role", "compound", "donor"]].equals(
            pm[["plate", "well", "role", "compound", "donor"]]
        )
        assert wells.severity.between(0, 1).all() and wells.viability.between(0, 1).all()
        assert len(fields) == sim.n_fields and not fields.duplicated(["plate", "well", "site"]).any()
        assert set(fields.artefact) <= {"none", "blur", "empty", "debris"}
        assert (fields.loc[fields.artefact == "empty", "n_cells"] <= 2).all()
    wells = pd.read_csv(train_set.ground_truth_wells)
    assert wells.loc[wells.role == "healthy", "severity"].max() < 0.3
    assert wells.loc[wells.role == "disease", "severity"].min() > 0.7
    compounds = pd.read_csv(screen_set.ground_truth_compounds)
    assert list(compounds.columns) == [
        "compound", "kind", "ec50_uM", "emax", "hill", "tox_ec50_uM", "offtarget_ec50_uM"
    ]  # fmt: skip
    assert set(compounds.kind) == {"rescue", "inert", "toxic", "off_target"}
    assert train_set.ground_truth_compounds is None


def test_screen_platemap_roles_and_doses(screen_set):
    pm = pd.read_csv(screen_set.platemap)
    assert list(pm.columns) == PLATEMAP_COLUMNS and len(pm) == 96
    controls = pm[pm.role != "treatment"]
    assert set(controls.well.str[1:].astype(int)) == {1, 12}
    assert (controls.role.value_counts() >= pd.Series({"healthy": 6, "disease": 6, "reference": 4})).all()
    treated = pm[pm.role == "treatment"]
    for compound, grp in treated.groupby("compound"):
        doses = np.sort(grp.concentration_uM.unique())[::-1]
        assert len(doses) == 8 and doses[0] == pytest.approx(10.0), compound
        assert np.allclose(doses[:-1] / doses[1:], 3.0), compound
        assert (grp.concentration_uM.value_counts() == 2).all(), compound
    truth = pd.read_csv(screen_set.ground_truth_compounds).set_index("compound")
    doses = np.sort(treated.concentration_uM.unique())
    for name, row in truth.iterrows():
        ec50 = {"rescue": row.ec50_uM, "toxic": row.tox_ec50_uM, "off_target": row.offtarget_ec50_uM}.get(
            row.kind
        )
        if ec50 is not None:
            assert (doses < ec50).sum() >= 2 and (doses > ec50).sum() >= 2, name


def test_same_seed_same_pixels_other_seed_differs(train_set, tmp_path):
    again = simulate_training_set(tmp_path / "again", seed=3, size=64, fields=2)
    first, second = (
        pixels(train_set.images_dir, field_key_imagexpress),
        pixels(again.images_dir, field_key_imagexpress),
    )
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert Path(train_set.platemap).read_text() == Path(again.platemap).read_text()
    other = simulate_training_set(tmp_path / "other", seed=4, size=64, fields=1, n_plates=1)
    other_px = pixels(other.images_dir, field_key_imagexpress)
    shared = [k for k in other_px if k in first]
    assert not any(np.array_equal(first[k], other_px[k]) for k in shared)


def test_operetta_names_hold_the_same_pixels(train_set, tmp_path):
    op = simulate_training_set(tmp_path / "op", seed=3, size=64, fields=2, naming="operetta")
    ix, opx = pixels(train_set.images_dir, field_key_imagexpress), pixels(op.images_dir, field_key_operetta)
    assert ix.keys() == opx.keys()
    assert all(np.array_equal(ix[k], opx[k]) for k in ix)
    assert pd.read_csv(op.platemap).equals(pd.read_csv(train_set.platemap))
    assert len(build_index(op.images_dir, op.platemap).index) == op.n_fields


def test_parallel_rendering_gives_the_same_pixels(tmp_path):
    serial = simulate_screen(tmp_path / "a", seed=1, size=32, fields=1)
    parallel = simulate_screen(tmp_path / "b", seed=1, size=32, fields=1, workers=2)
    a, b = (
        pixels(serial.images_dir, field_key_imagexpress),
        pixels(parallel.images_dir, field_key_imagexpress),
    )
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_classes_differ_in_organization_not_in_mean_brightness(train_set):
    """Across donors, plates and wells, field mean intensity cannot tell healthy from GoF; alignment can."""
    pm = pd.read_csv(train_set.platemap)
    fields = pd.read_csv(train_set.ground_truth_fields).merge(pm, on=["plate", "well"])
    fields = fields[fields.artefact == "none"]
    actin = [
        tifffile.imread(train_set.images_dir / p / f"{p}_{w}_s{s}_w1.tif")
        for p, w, s in zip(fields.plate, fields.well, fields.site, strict=True)
    ]
    nuclei = [
        tifffile.imread(train_set.images_dir / p / f"{p}_{w}_s{s}_w2.tif")
        for p, w, s in zip(fields.plate, fields.well, fields.site, strict=True)
    ]
    gof = (fields.genotype == "GoF").to_numpy()
    auc = lambda x: max(roc_auc_score(gof, x), 1 - roc_auc_score(gof, x))  # noqa: E731
    assert auc([a.mean() for a in actin]) < 0.65
    assert auc([n.mean() for n in nuclei]) < 0.65
    assert auc([coherency(a) for a in actin]) > 0.95


def test_screen_toxic_wells_lose_cells(screen_set):
    fields = pd.read_csv(screen_set.ground_truth_fields).merge(
        pd.read_csv(screen_set.platemap), on=["plate", "well"]
    )
    fields = fields[fields.artefact == "none"]
    tox = fields[fields.compound == "staurosporine"].groupby("concentration_uM").n_cells.mean()
    assert tox.loc[tox.index.max()] < 0.2 * tox.loc[tox.index.min()]
    inert = fields[fields.compound == "mannitol"].groupby("concentration_uM").n_cells.mean()
    assert inert.loc[inert.index.max()] > 0.6 * inert.loc[inert.index.min()]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"naming": "cellomics"}, "naming"),
        ({"size": 4}, "size"),
        ({"fields": 0}, "fields"),
        ({"seed": -1}, "seed"),
        ({"plate_format": 1536}, "plate format"),
        ({"vignetting": 1.5}, "vignetting"),
    ],
)
def test_bad_requests_raise_one_line_errors(tmp_path, kwargs, match):
    with pytest.raises(FibroclassError, match=match):
        simulate_screen(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x" / "images").exists()
