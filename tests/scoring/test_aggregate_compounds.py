"""Well aggregation over QC-passed fields, well flags, and the per-compound table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fibroclass.schema import (
    COMPOUND,
    CONC,
    DISEASE_SCORE,
    FLAGS,
    N_FIELDS,
    N_FIELDS_USED,
    NUCLEI_COUNT,
    PLATE,
    QC_PASS,
    QC_REASON,
    RESCUE_PCT,
    ROLE,
    SITE,
    VIABILITY_PCT,
    WELL,
)
from fibroclass.scoring.compounds.tables import (
    COMPOUND_COLUMNS,
    compound_table,
    dose_table,
    reference_dose_table,
)
from fibroclass.scoring.wells.aggregate import aggregate_wells
from fibroclass.scoring.wells.flags import flag_wells


def _fields() -> tuple[pd.DataFrame, np.ndarray]:
    fields = pd.DataFrame(
        {
            PLATE: ["P1"] * 5,
            WELL: ["A01", "A01", "A01", "A02", "A02"],
            SITE: [1, 2, 3, 1, 2],
            "path_actin": ["x"] * 5,
            ROLE: ["disease"] * 3 + ["treatment"] * 2,
            "donor": ["D1"] * 5,
            DISEASE_SCORE: [1.0, 3.0, np.nan, 10.0, 20.0],
            NUCLEI_COUNT: [10.0, np.nan, 99.0, 5.0, 7.0],
            QC_PASS: [True, True, False, False, False],
            QC_REASON: ["", "", "unreadable: x", "blurry", "blurry"],
        }
    )
    emb = np.array([[0, 2], [2, 4], [np.nan, np.nan], [1, 1], [3, 3]], dtype=np.float32)
    return fields, emb


def test_wells_average_used_fields_only_and_carry_platemap_columns():
    wells, emb = aggregate_wells(*_fields())
    assert wells[WELL].tolist() == ["A01", "A02"]
    assert wells[N_FIELDS].tolist() == [3, 2] and wells[N_FIELDS_USED].tolist() == [2, 0]
    assert wells[DISEASE_SCORE].iloc[0] == 2.0 and np.isnan(wells[DISEASE_SCORE].iloc[1])
    assert wells[NUCLEI_COUNT].iloc[0] == 10.0  # NaN count of a used field ignored, unused field excluded
    np.testing.assert_allclose(emb[0], [1, 3])
    assert np.isnan(emb[1]).all()
    assert {ROLE, "donor"} <= set(wells.columns)
    assert not {SITE, "path_actin", QC_PASS, QC_REASON} & set(wells.columns)


def test_flags_name_field_and_plate_problems():
    wells, _ = aggregate_wells(*_fields())
    qc = {"P1": {"pass": False, "controls_ok": False}}
    flags = flag_wells(wells, qc)[FLAGS].tolist()
    assert flags[0] == "fields_flagged=1/3;plate_controls_unusable;plate_qc_fail"
    assert flags[1] == "no_fields_used;plate_controls_unusable;plate_qc_fail"
    assert flag_wells(wells, {"P1": {"pass": True, "controls_ok": True}})[FLAGS].tolist() == [
        "fields_flagged=1/3",
        "no_fields_used",
    ]


def _screen_wells() -> pd.DataFrame:
    rows = [
        ("healthy", "DMSO", 0.0, 100.0, 100.0),
        ("disease", "DMSO", 0.0, 0.0, 100.0),
        ("reference", "rux", 0.1, 20.0, 100.0),
        ("reference", "rux", 0.1, 40.0, 90.0),
        ("reference", "rux", 1.0, 70.0, 80.0),
        ("reference", "rux", 1.0, 90.0, 60.0),
        ("treatment", "tox", 1.0, 95.0, 10.0),
        ("treatment", "tox", 10.0, np.nan, np.nan),
        ("treatment", "DMSO", 0.0, 3.0, 100.0),
    ]
    df = pd.DataFrame(rows, columns=[ROLE, COMPOUND, CONC, RESCUE_PCT, VIABILITY_PCT])
    df[PLATE] = ["P1"] * 5 + ["P2"] * 4  # replicates pooled across plates
    return df


def test_compound_table_uses_mean_of_replicates_and_skips_vehicle():
    table = compound_table(_screen_wells(), "role in ['treatment', 'reference'] and concentration_uM > 0")
    assert tuple(table.columns) == COMPOUND_COLUMNS
    rux = table.set_index(COMPOUND).loc["rux"]
    assert rux["n_doses"] == 2 and rux["max_rescue_pct"] == 80.0 and rux["min_viability_pct"] == 70.0
    tox = table.set_index(COMPOUND).loc["tox"]
    assert tox["n_doses"] == 2 and tox["max_rescue_pct"] == 95.0 and tox["min_viability_pct"] == 10.0
    assert set(table[COMPOUND]) == {"rux", "tox"} and (table["call"] == "inconclusive").all()
    assert table["ec50_uM"].isna().all()


def test_reference_dose_table():
    doses = dose_table(_screen_wells(), "role == 'reference'")
    assert doses[CONC].tolist() == [0.1, 1.0]
    assert doses[RESCUE_PCT].tolist() == [30.0, 80.0] and doses["n_wells"].tolist() == [2, 2]
    assert doses["rescue_sd"].iloc[0] == pytest.approx(np.sqrt(200))
    assert dose_table(_screen_wells(), "role == 'nothing'").empty


def test_reference_dose_table_pools_reference_and_treatment_wells_of_that_drug():
    wells = _screen_wells()
    wells.loc[len(wells)] = ["treatment", "rux", 10.0, 100.0, 50.0, "P2"]  # treatment series of the drug
    doses = reference_dose_table(wells, "role == 'reference'", "role == 'treatment' and concentration_uM > 0")
    assert doses[CONC].tolist() == [0.1, 1.0, 10.0] and set(doses[COMPOUND]) == {"rux"}
    assert doses[RESCUE_PCT].tolist() == [30.0, 80.0, 100.0]
    assert reference_dose_table(wells, "role == 'none'", "role == 'treatment'").empty
