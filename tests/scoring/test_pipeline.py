"""End-to-end scoring of small generated plates (real TIFFs, tiny model): outputs and their contracts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fibroclass.schema import FIELD_KEYS, WELL_KEYS, path_col
from fibroclass.scoring.compounds.tables import COMPOUND_COLUMNS
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.outputs import FIELD_RESULT_COLUMNS, FILES, WELL_RESULT_COLUMNS
from fibroclass.scoring.pipeline import score_index

HEALTHY, DISEASE = 8000, 30000  # actin levels → toy scores ≈ -2.56 and 4.16


@pytest.fixture
def two_plates(tmp_path, kit):
    # Plate P2 images brighter overall: its own controls must anchor its rescue.
    layout = kit.screen_layout("P1", HEALTHY, DISEASE) + kit.screen_layout(
        "P2", HEALTHY + 6000, DISEASE + 6000
    )
    index = kit.make_index(tmp_path / "images", layout, sites=2)
    bad = index.index[(index["Metadata_Plate"] == "P1") & (index["Metadata_Well"] == "C02")][0]
    path = index.loc[bad, path_col("actin")]
    data = open(path, "rb").read()
    open(path, "wb").write(data[:100])  # truncated TIFF in a reference well
    return index, bad


def test_score_index_writes_all_outputs_with_contract_columns(tmp_path, kit, two_plates):
    index, bad = two_plates
    out = tmp_path / "out"
    res = score_index(index, kit.ToyClassifier(), out, ScoreConfig(batch_size=16), progress=False)

    assert sorted(p.name for p in out.iterdir() if p.name not in ("parts", "plots")) == sorted(
        [*FILES, "report.html"]
    )  # parts: resume; plots: the report's PNGs
    fields = pd.read_parquet(out / "fields.parquet")
    wells = pd.read_csv(out / "wells.csv", keep_default_na=False, na_values=[""])
    compounds = pd.read_csv(out / "compounds.csv")
    qc = json.loads((out / "plate_qc.json").read_text())
    emb, well_emb = np.load(out / "embeddings.npy"), np.load(out / "well_embeddings.npy")

    assert len(fields) == len(index) and emb.shape == (len(fields), 2)
    assert {*FIELD_KEYS, *FIELD_RESULT_COLUMNS, "role", "compound", "concentration_uM"} <= set(fields.columns)
    assert len(wells) == 2 * 12 and well_emb.shape == (len(wells), 2)
    assert {*WELL_KEYS, *WELL_RESULT_COLUMNS, "role", "compound", "concentration_uM"} <= set(wells.columns)
    assert tuple(compounds.columns) == COMPOUND_COLUMNS
    assert set(compounds["compound"]) == {"ruxolitinib", "inactivib"}

    # The corrupt field is flagged, its well uses the other site, and the plate still scores.
    flagged = fields[~fields["qc_pass"]]
    assert len(flagged) == 1 and flagged["qc_reason"].iloc[0].startswith("unreadable:")
    assert np.isnan(emb[~fields["qc_pass"].to_numpy()]).all()
    c02 = wells[(wells["Metadata_Plate"] == "P1") & (wells["Metadata_Well"] == "C02")].iloc[0]
    assert (c02["n_fields"], c02["n_fields_used"]) == (2, 1) and c02["flags"] == "fields_flagged=1/2"
    assert qc["plates"]["P1"]["n_fields_flagged"] == 1 and qc["plates"]["P2"]["n_fields_flagged"] == 0

    # Per-plate rescue: controls at 0/100, reference doses at 25/50/100 % on both plates despite the offset.
    for plate in ("P1", "P2"):
        w = wells[wells["Metadata_Plate"] == plate]
        assert w.loc[w["role"] == "disease", "rescue_pct"].mean() == pytest.approx(0, abs=1e-6)
        assert w.loc[w["role"] == "healthy", "rescue_pct"].mean() == pytest.approx(100)
        ref = w[w["role"] == "reference"].sort_values("concentration_uM")["rescue_pct"].to_numpy()
        np.testing.assert_allclose(ref, [25, 50, 100], atol=0.1)
        q = qc["plates"][plate]
        assert q["pass"] and q["z_prime"] > 0.5 and q["ssmd"] > 3 and q["reasons"] == []
    assert res.reference_doses["rescue_pct"].round(0).tolist() == [25, 50, 100]
    assert compounds.set_index("compound").loc["ruxolitinib", "max_rescue_pct"] == pytest.approx(100, abs=0.1)
    # Uniform toy fields have no nuclei (no viability); drug wells move along the disease axis (not off-target).
    assert wells["viability_pct"].isna().all() and not wells["offtarget"].astype(bool).any()
    run = json.loads((out / "run.json").read_text())
    assert run["n_fields"] == len(index) and run["model_spec"]["crop_size"] == 16


def test_plate_missing_a_control_is_flagged_and_others_still_score(tmp_path, kit):
    layout = kit.screen_layout("P1", HEALTHY, DISEASE)
    layout += [w for w in kit.screen_layout("P2", HEALTHY, DISEASE) if w["role"] != "healthy"]
    index = kit.make_index(tmp_path / "images", layout, sites=1)
    res = score_index(index, kit.ToyClassifier(), tmp_path / "out", progress=False)
    p2 = res.wells[res.wells["Metadata_Plate"] == "P2"]
    assert p2["rescue_pct"].isna().all() and p2["flags"].str.contains("plate_controls_unusable").all()
    assert not res.plate_qc["P2"]["pass"] and "no healthy control" in res.plate_qc["P2"]["reasons"][0]
    assert res.plate_qc["P1"]["pass"]
    assert res.wells.loc[res.wells["Metadata_Plate"] == "P1", "rescue_pct"].notna().all()
    qc = json.loads((tmp_path / "out" / "plate_qc.json").read_text())
    assert qc["plates"]["P2"]["z_prime"] is None and qc["z_prime_min"] == 0.5
    assert any("P2" in w for w in res.warnings)


def test_score_discovers_plates_and_joins_platemap(tmp_path, kit):
    from fibroclass.scoring.pipeline import score

    layout = kit.screen_layout("P1", HEALTHY, DISEASE)
    kit.make_index(tmp_path / "images", layout, sites=2)  # writes P1/P1_A01_s1_w1.tif ... (ImageXpress)
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    res = score(
        [tmp_path / "images"], platemap, kit.ToyClassifier(), tmp_path / "out", batch_size=7, progress=False
    )
    assert len(res.fields) == 2 * len(layout) and res.fields["qc_pass"].all()
    assert res.plate_qc["P1"]["pass"]
    np.testing.assert_allclose(res.reference_doses["rescue_pct"], [25, 50, 100], atol=0.1)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["batch_size"] == 7 and run["platemap"].endswith("platemap.csv")
