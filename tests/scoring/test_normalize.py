"""Per-plate normalization: rescue anchored at each plate's own controls, viability, missing controls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fibroclass.errors import FibroclassError
from fibroclass.schema import DISEASE_SCORE, NUCLEI_COUNT, PLATE, RESCUE_PCT, ROLE, VIABILITY_PCT, WELL
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.wells.normalize import normalize_plates

CONTROLS = ScoreConfig().controls


def _wells(plate: str, healthy: list[float], disease: list[float], others: list[float]) -> pd.DataFrame:
    rows = [(plate, "healthy", s) for s in healthy] + [(plate, "disease", s) for s in disease]
    rows += [(plate, "treatment", s) for s in others]
    df = pd.DataFrame(rows, columns=[PLATE, ROLE, DISEASE_SCORE])
    df[WELL] = [f"A{i + 1:02d}" for i in range(len(df))]
    return df


def test_rescue_is_0_at_disease_mean_and_100_at_healthy_mean_per_plate():
    # Two plates with different control levels: the same raw score means different rescue.
    p1 = _wells("P1", [-3.0, -2.0, -1.0], [3.0, 4.0, 5.0], [4.0, -2.0, 1.0, 7.0])
    p2 = _wells("P2", [0.0, 1.0, 2.0], [9.0, 10.0, 11.0], [10.0, 1.0, 5.5, 4.0])
    wells, stats = normalize_plates(pd.concat([p1, p2], ignore_index=True), CONTROLS)
    r1 = wells.loc[(wells[PLATE] == "P1") & (wells[ROLE] == "treatment"), RESCUE_PCT].to_numpy()
    r2 = wells.loc[(wells[PLATE] == "P2") & (wells[ROLE] == "treatment"), RESCUE_PCT].to_numpy()
    np.testing.assert_allclose(r1, [0.0, 100.0, 50.0, -50.0], atol=1e-12)
    np.testing.assert_allclose(r2, [0.0, 100.0, 50.0, 2 / 3 * 100], atol=1e-12)
    for plate, pc in stats.items():
        ctrl = wells[(wells[PLATE] == plate) & wells[ROLE].isin(["healthy", "disease"])]
        grouped = ctrl.groupby(ROLE)[RESCUE_PCT].mean()
        assert grouped["disease"] == pytest.approx(0.0, abs=1e-12)
        assert grouped["healthy"] == pytest.approx(100.0)
        assert pc.usable and pc.healthy.n == 3 and pc.disease.sd == pytest.approx(1.0)


def test_plate_without_healthy_control_gets_nan_rescue_and_a_reason():
    good = _wells("P1", [0.0, 1.0], [4.0, 5.0], [2.5])
    bad = _wells("P2", [], [4.0, 5.0], [2.5])
    wells, stats = normalize_plates(pd.concat([good, bad], ignore_index=True), CONTROLS)
    assert wells.loc[wells[PLATE] == "P2", RESCUE_PCT].isna().all()
    assert not stats["P2"].usable and "no healthy control" in stats["P2"].reasons[0]
    assert wells.loc[(wells[PLATE] == "P1") & (wells[ROLE] == "treatment"), RESCUE_PCT].item() == 50.0


def test_unscored_control_wells_do_not_count():
    wells = _wells("P1", [0.0, np.nan], [4.0, np.nan], [2.0])
    out, stats = normalize_plates(wells, CONTROLS)
    assert stats["P1"].healthy.n == 1 and stats["P1"].disease.n == 1
    assert out[RESCUE_PCT].iloc[-1] == 50.0


def test_viability_relative_to_disease_controls_and_nan_without_counts():
    wells = _wells("P1", [0.0], [4.0, 4.0], [2.0])
    wells[NUCLEI_COUNT] = [90.0, 100.0, 120.0, 55.0]
    out, _ = normalize_plates(wells, CONTROLS)
    np.testing.assert_allclose(out[VIABILITY_PCT], [81.818181, 90.909090, 109.090909, 50.0], rtol=1e-6)
    out2, _ = normalize_plates(wells.drop(columns=[NUCLEI_COUNT]), CONTROLS)
    assert out2[VIABILITY_PCT].isna().all()


def test_custom_control_queries():
    wells = _wells("P1", [0.0], [4.0], [2.0])
    wells["cell_line"] = ["HD1", "GOF7", "GOF7"]
    wells["compound"] = ["DMSO", "DMSO", "X"]
    queries = {"healthy": "cell_line == 'HD1'", "disease": "cell_line == 'GOF7' and compound == 'DMSO'"}
    out, _ = normalize_plates(wells, queries)
    assert out[RESCUE_PCT].tolist() == [100.0, 0.0, 50.0]


@pytest.mark.parametrize(
    ("queries", "match"),
    [
        ({"healthy": "genotype == 'WT'", "disease": "role == 'disease'"}, "healthy.*genotype"),
        ({"healthy": "role != 'treatment'", "disease": "role == 'disease'"}, "overlap"),
    ],
)
def test_bad_control_queries_are_user_errors(queries, match):
    with pytest.raises(FibroclassError, match=match):
        normalize_plates(_wells("P1", [0.0], [4.0], [2.0]), queries)
