"""Donor-grouped splits: no donor in two splits, both classes per split, determinism, manifests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibroclass.cli.app import main
from fibroclass.data.splits import index_hash, make_split, read_split, write_split
from fibroclass.errors import FibroclassError
from fibroclass.io.index import write_index

ROWS = "ABCDEFGHIJKLMNOP"


def make_index(
    healthy: int, gof: int, wells_per_donor: int = 2, sites: int = 2, genotype: bool = True
) -> pd.DataFrame:
    """A field index: `healthy` + `gof` donors, each with control wells, plus treatment wells of GoF donors."""
    rows = []
    donors = [(f"HD{i:02d}", "healthy") for i in range(healthy)] + [
        (f"GOF{i:02d}", "disease") for i in range(gof)
    ]
    n = 0
    for donor, role in donors:
        for w in range(wells_per_donor + (role == "disease")):
            well_role = role if w < wells_per_donor else "treatment"
            plate = f"P{n // 384 + 1}"
            well = f"{ROWS[(n % 384) // 24]}{n % 24 + 1:02d}"
            n += 1
            for site in range(1, sites + 1):
                rows.append(
                    {
                        "Metadata_Plate": plate,
                        "Metadata_Well": well,
                        "Metadata_Site": site,
                        "path_actin": f"/data/{plate}/{plate}_{well}_s{site}_w1.tif",
                        "path_nuclei": f"/data/{plate}/{plate}_{well}_s{site}_w2.tif",
                        "role": well_role,
                        "compound": "rux" if well_role == "treatment" else "DMSO",
                        "concentration_uM": 1.0 if well_role == "treatment" else 0.0,
                        "donor": donor,
                    }
                    | ({"genotype": "GoF" if role == "disease" else "healthy"} if genotype else {})
                )
    return pd.DataFrame(rows)


def _check(index: pd.DataFrame, split: pd.DataFrame) -> None:
    assert split["donor"].is_unique
    controls = index[index["role"].isin(["healthy", "disease"])]
    assert set(split["donor"]) == set(controls["donor"])  # every control donor in exactly one split
    for name in ("train", "val", "test"):
        assert set(split.loc[split["split"] == name, "class"]) == set(split["class"]), name


@settings(max_examples=40, deadline=None)
@given(
    healthy=st.integers(3, 12),
    gof=st.integers(3, 12),
    val_frac=st.sampled_from([0.1, 0.2, 0.3]),
    test_frac=st.sampled_from([0.1, 0.2, 0.4]),
    seed=st.integers(0, 2**31),
)
def test_random_donor_sets(healthy: int, gof: int, val_frac: float, test_frac: float, seed: int) -> None:
    index = make_index(healthy, gof, wells_per_donor=1, sites=1)
    split = make_split(index, val_frac=val_frac, test_frac=test_frac, seed=seed)
    _check(index, split)
    assert split.loc[split["class"] == "GoF", "split"].value_counts()["train"] >= 1


def test_counts_follow_fractions_and_are_deterministic_per_seed() -> None:
    index = make_index(10, 10)
    a = make_split(index, seed=1)
    pd.testing.assert_frame_equal(a, make_split(index.sample(frac=1, random_state=5), seed=1))
    per_class = {"test": 2, "train": 6, "val": 2}
    assert a.groupby(["class", "split"]).size().to_dict() == {
        (c, s): n for c in ("GoF", "healthy") for s, n in per_class.items()
    }
    assert a.groupby("split").size().to_dict() == {"test": 4, "train": 12, "val": 4}
    assert a["n_wells"].tolist() == [2] * 20 and a["n_fields"].tolist() == [4] * 20
    seeds = {tuple(make_split(index, seed=s)["donor"]) for s in range(5)}
    assert len(seeds) > 1


def test_role_is_the_class_without_genotype_and_zero_fraction_drops_a_split() -> None:
    index = make_index(2, 2, genotype=False)
    split = make_split(index, val_frac=0.0, test_frac=0.3, seed=0)
    assert set(split["class"]) == {"healthy", "disease"}
    assert split.groupby("split").size().to_dict() == {"test": 2, "train": 2}


def test_too_few_donors_per_class_is_a_clear_error() -> None:
    with pytest.raises(
        FibroclassError, match=r"class 'GoF' has 2 donor\(s\) \(GOF00, GOF01\); need at least 3"
    ):
        make_split(make_index(5, 2))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="donor"), "no 'donor' column"),
        (
            lambda df: df.assign(donor=df["donor"].where(df.index != 0, "")),
            "'donor' is empty for control well P1 A01",
        ),
        (
            lambda df: df.assign(genotype=df["genotype"].where(df.index != 0, "GoF")),
            "'HD00' has control wells of",
        ),
        (lambda df: df.assign(role="treatment"), "no control wells"),
    ],
)
def test_bad_indexes(change: Callable[[pd.DataFrame], pd.DataFrame], message: str) -> None:
    with pytest.raises(FibroclassError, match=message):
        make_split(change(make_index(3, 3)))


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.5, 0.5), (0.2, 1.0)])
def test_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(FibroclassError, match="frac"):
        make_split(make_index(3, 3), val_frac=val, test_frac=test)


def test_hash_is_order_independent_and_location_independent() -> None:
    index = make_index(3, 3)
    assert index_hash(index) == index_hash(index.sample(frac=1, random_state=0).reset_index(drop=True))
    moved = index.assign(path_actin=index["path_actin"].str.replace("/data/", "/mnt/other/"))
    assert index_hash(moved) == index_hash(index)
    assert index_hash(index.assign(extra=1)) == index_hash(index)
    assert index_hash(index.iloc[1:]) != index_hash(index)
    assert index_hash(index.assign(donor=index["donor"].replace("HD00", "HD99"))) != index_hash(index)


def test_write_and_read_split(tmp_path: Path) -> None:
    index = make_index(4, 3)
    split = make_split(index, seed=7)
    params = {"by": "donor", "val_frac": 0.2, "test_frac": 0.2, "seed": 7, "stratify": "genotype"}
    write_split(index, "data/index.parquet", split, tmp_path / "v1", params)

    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    assert manifest["params"] == params
    assert manifest["index_path"] == "data/index.parquet"
    assert Path(manifest["index_path_abs"]).is_absolute()
    assert manifest["index_sha256"] == index_hash(index)
    assert manifest["counts"]["train"]["healthy"] == {"wells": 4, "fields": 8}
    assert sum(c["fields"] for s in manifest["counts"].values() for c in s.values()) == 28

    assignments = pd.read_csv(tmp_path / "v1" / "assignments.csv")
    assert len(assignments) == 28 and assignments.groupby("donor")["split"].nunique().max() == 1

    loaded = read_split(tmp_path / "v1")
    assert loaded.donors == {
        s: sorted(split.loc[split["split"] == s, "donor"]) for s in ("train", "val", "test")
    }
    assigned = loaded.assign(index)
    assert assigned[index["role"] == "treatment"].isna().all()
    controls = index["role"] != "treatment"
    expected = index.loc[controls, "donor"].map(dict(zip(split["donor"], split["split"], strict=True)))
    assert assigned[controls].tolist() == expected.tolist()


def test_assign_refuses_a_changed_index_unless_allowed(tmp_path: Path) -> None:
    index = make_index(3, 3)
    write_split(index, "i.parquet", make_split(index), tmp_path / "s", {"by": "donor"})
    manifest = read_split(tmp_path / "s" / "manifest.json")
    smaller = index.iloc[2:]
    with pytest.raises(
        FibroclassError, match=r"field index differs from the one split .*manifest.json was made from"
    ):
        manifest.assign(smaller)
    assert manifest.assign(smaller, allow_changed_index=True).notna().sum() == 22
    with pytest.raises(FibroclassError, match="does not exist"):
        read_split(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text('{"donors": {}}')
    with pytest.raises(FibroclassError, match="manifest.json is malformed"):
        read_split(tmp_path / "bad")


def test_split_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index_path = write_index(make_index(5, 5), tmp_path / "index.parquet")
    out = tmp_path / "splits" / "v2"
    args = [
        "split",
        str(index_path),
        "--out",
        str(out),
        "--val-frac",
        "0.2",
        "--test-frac",
        "0.2",
        "--seed",
        "4",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "train   6 donor(s): " in printed and "GOF" in printed and "wrote" in printed
    assert read_split(out).params["seed"] == 4
    assert main(["split", str(index_path), "--out", str(out), "--test-frac", "0.9"]) == 1
    assert "val_frac + test_frac must be < 1" in capsys.readouterr().err
