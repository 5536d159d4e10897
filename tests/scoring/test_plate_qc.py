"""Z′ and SSMD on known numbers; per-plate acceptance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fibroclass.schema import DISEASE_SCORE, PLATE, QC_PASS, ROLE, WELL
from fibroclass.scoring.config import ScoreConfig
from fibroclass.scoring.wells.normalize import plate_controls
from fibroclass.scoring.wells.plate_qc import plate_qc, ssmd, z_prime


def test_z_prime_and_ssmd_known_values():
    h, d = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])  # means 2, 12; sample SDs 1, 1
    assert z_prime(h, d) == pytest.approx(1 - 3 * 2 / 10)  # 0.4
    assert ssmd(h, d) == pytest.approx(10 / math.sqrt(2))
    assert ssmd(d, h) == pytest.approx(-10 / math.sqrt(2))  # sign: disease minus healthy
    assert z_prime(d, h) == pytest.approx(0.4)  # symmetric
    wide = np.array([-8.0, 2.0, 12.0])  # SD 10
    assert z_prime(wide, d) == pytest.approx(1 - 3 * 11 / 10)
    assert ssmd(wide, d) == pytest.approx(10 / math.sqrt(101))


def test_degenerate_inputs():
    assert math.isnan(z_prime(np.array([1.0]), np.array([2.0, 3.0])))  # one well: no SD
    assert math.isnan(z_prime(np.array([1.0, 1.0]), np.array([1.0, 1.0])))  # no separation
    assert ssmd(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == math.inf
    assert z_prime(np.array([1.0, 1.0, np.nan]), np.array([2.0, 2.0])) == 1.0  # NaNs ignored


def _plate(plate: str, h: list[float], d: list[float]) -> pd.DataFrame:
    rows = [(plate, "healthy", s) for s in h] + [(plate, "disease", s) for s in d]
    df = pd.DataFrame(rows, columns=[PLATE, ROLE, DISEASE_SCORE])
    df[WELL] = [f"A{i + 1:02d}" for i in range(len(df))]
    return df


def test_plate_qc_pass_fail_and_field_counts():
    wells = pd.concat(
        [
            _plate("good", [1.0, 1.1, 0.9], [5.0, 5.1, 4.9]),
            _plate("noisy", [1, 2, 3], [11, 12, 13]),
            _plate("nohealthy", [], [5.0, 5.2]),
        ],
        ignore_index=True,
    )
    fields = pd.DataFrame(
        {PLATE: ["good"] * 4 + ["noisy"] * 2, QC_PASS: [True, False, False, True, True, True]}
    )
    qc = plate_qc(fields, plate_controls(wells, ScoreConfig().controls), z_prime_min=0.5)
    assert qc["good"]["pass"] and qc["good"]["z_prime"] == pytest.approx(1 - 3 * 0.2 / 4)
    assert qc["good"]["n_fields"] == 4 and qc["good"]["n_fields_flagged"] == 2
    assert qc["good"]["healthy_mean"] == pytest.approx(1.0) and qc["good"]["n_disease"] == 3
    assert not qc["noisy"]["pass"] and "0.40 < 0.5" in qc["noisy"]["reasons"][0]
    assert qc["noisy"]["controls_ok"]
    assert not qc["nohealthy"]["pass"] and not qc["nohealthy"]["controls_ok"]
    assert math.isnan(qc["nohealthy"]["z_prime"]) and qc["nohealthy"]["n_fields"] == 0
    assert plate_qc(fields, plate_controls(wells, ScoreConfig().controls), z_prime_min=0.3)["noisy"]["pass"]
