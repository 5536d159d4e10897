"""Rescue meters fitted on the controls: the primary rescue_pct, its scale, the plate gate on that scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fibroclass.schema import DISEASE_SCORE, PLATE, QC_PASS, ROLE, WELL
from fibroclass.scoring.compounds.doseresponse import fit_compounds
from fibroclass.scoring.config import DoseResponseParams, RescueParams, ScoreConfig
from fibroclass.scoring.wells.normalize import control_roles
from fibroclass.scoring.wells.plate_qc import plate_qc, robust_z_prime, z_prime
from fibroclass.scoring.wells.readout import (
    READOUT_SCORE,
    RESCUE_PCT_FUSED,
    RESCUE_PCT_LOGIT,
    add_meters,
    lda_meter,
    rescue_readout,
)

CONTROLS = ScoreConfig().controls
DOSES = [10 / 3**i for i in range(8)]


def hill(c: np.ndarray, ec50: float, h: float = 1.2) -> np.ndarray:
    return c**h / (c**h + ec50**h)


def screen(seed: int = 0, emax: float = 0.6, n_ctrl: int = 8) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Two plates of wells whose truth is a severity s (1 = GoF, 0 = healthy): controls, and a partial
    rescuer (Emax `emax`, EC50 0.3 µM, 2 wells per dose). The CNN logit saturates (healthy wells spread
    over -5..-10, partial rescue compressed), the 16-d embedding bends with s, the organization features
    are linear in s with noise. Returns wells, embeddings, true severities."""
    rng = np.random.default_rng(seed)
    rows, sev = [], []
    for plate in ("P1", "P2"):
        for i in range(n_ctrl):
            rows += [(plate, f"H{i:02d}", "healthy", "DMSO", 0.0), (plate, f"D{i:02d}", "disease", "DMSO", 0.0)]
            sev += [rng.normal(0.05, 0.02), rng.normal(0.95, 0.02)]
        for k, c in enumerate(DOSES):
            for r in range(2):
                rows.append((plate, f"T{k}{r}", "treatment", "drug", c))
                sev.append(0.95 * (1 - emax * hill(np.array(c), 0.3)) + rng.normal(0, 0.02))
    wells = pd.DataFrame(rows, columns=[PLATE, WELL, ROLE, "compound", "concentration_uM"])
    s = np.clip(np.array(sev), 0, 1)
    confident = rng.uniform(0, 1, len(s))
    wells[DISEASE_SCORE] = 7 * np.tanh(6 * (s - 0.5)) + (1 - s) * (-3 * confident) + rng.normal(0, 0.2, len(s))
    bend = np.stack([s, s**2, np.sin(2 * s), np.exp(-3 * s)], axis=1)
    emb = np.hstack([bend @ rng.normal(0, 1, (4, 16)), np.zeros((len(s), 0))]) + rng.normal(0, 0.05, (len(s), 16))
    wells["org_coherency"] = 0.8 - 0.5 * s + rng.normal(0, 0.02, len(s))
    wells["org_nuclei_log_aspect"] = 0.9 - 0.6 * s + rng.normal(0, 0.03, len(s))
    return wells, emb.astype(np.float32), s


def test_rescue_is_0_and_100_at_the_control_means_on_the_readout_scale() -> None:
    wells, emb, _ = screen()
    out, stats, meter = rescue_readout(wells, emb, CONTROLS, RescueParams(meter="fused"))
    assert meter["meter"] == "fused" and "org_coherency" in meter["features"]
    for plate, g in out.groupby(PLATE):
        h, d = g[g[ROLE] == "healthy"], g[g[ROLE] == "disease"]
        assert h["rescue_pct"].mean() == pytest.approx(100.0) and d["rescue_pct"].mean() == pytest.approx(0.0)
        mh, md = h[READOUT_SCORE].mean(), d[READOUT_SCORE].mean()
        expected = 100 * (md - g[READOUT_SCORE]) / (md - mh)
        assert np.allclose(g["rescue_pct"], expected)
        assert stats[plate].score == READOUT_SCORE
        assert stats[plate].healthy.mean == pytest.approx(mh) and stats[plate].disease.mean == pytest.approx(md)
    # the same holds for every meter kept as a column
    for col in (RESCUE_PCT_LOGIT, RESCUE_PCT_FUSED, "rescue_pct_axis"):
        ctrl = out.groupby([PLATE, ROLE])[col].mean()
        assert ctrl.xs("healthy", level=ROLE).to_numpy() == pytest.approx(100.0)
        assert ctrl.xs("disease", level=ROLE).to_numpy() == pytest.approx(0.0, abs=1e-9)


def test_z_prime_is_computed_on_the_readout_scale_and_p_disease_is_a_classification_figure() -> None:
    wells, emb, _ = screen()
    out, stats, meter = rescue_readout(wells, emb, CONTROLS, RescueParams(meter="fused"))
    fields = pd.DataFrame({PLATE: ["P1", "P2"], QC_PASS: [True, True]})
    qc = plate_qc(fields, stats, z_prime_min=0.5, meter=meter["meter"])
    for plate, g in out.groupby(PLATE):
        h = g.loc[g[ROLE] == "healthy", READOUT_SCORE].to_numpy()
        d = g.loc[g[ROLE] == "disease", READOUT_SCORE].to_numpy()
        q = qc[plate]
        assert q["z_prime"] == pytest.approx(z_prime(h, d))
        assert q["z_prime_robust"] == pytest.approx(robust_z_prime(h, d))
        assert q["z_prime_scale"] == READOUT_SCORE and q["readout_meter"] == "fused"
        logit_h = g.loc[g[ROLE] == "healthy", DISEASE_SCORE].to_numpy()
        logit_d = g.loc[g[ROLE] == "disease", DISEASE_SCORE].to_numpy()
        assert q["z_prime"] != pytest.approx(z_prime(logit_h, logit_d))
        p = q["classification"]
        assert p["auroc"] == 1.0 and p["z_prime_p_disease"] > 0.9  # saturated p: a classifier, not a meter
        assert q["z_prime"] > z_prime(logit_h, logit_d)  # the meter's window beats the spread logit's
    gated = plate_qc(fields, stats, z_prime_min=0.5, scale="probability")
    assert gated["P1"]["z_prime"] == pytest.approx(gated["P1"]["classification"]["z_prime_p_disease"])


def test_a_partial_rescuers_emax_is_recovered_within_15_points() -> None:
    for seed in (0, 1, 2):
        wells, emb, _ = screen(seed, emax=0.6)
        out, _, _ = rescue_readout(wells, emb, CONTROLS, RescueParams(meter="fused"))
        fit = fit_compounds(out, DoseResponseParams(n_boot=20))["drug"]
        assert fit.emax_pct == pytest.approx(60.0, abs=15.0), (seed, fit)
        logit = fit_compounds(out, DoseResponseParams(n_boot=20), response_col=RESCUE_PCT_LOGIT)["drug"]
        assert abs(logit.emax_pct - 60.0) > abs(fit.emax_pct - 60.0)  # the saturating logit is further off


def test_controls_are_cross_fitted() -> None:
    """A control well scored by a direction fitted without it: pure-noise features give no separation."""
    rng = np.random.default_rng(3)
    role = np.array(["healthy", "disease"] * 10 + ["treatment"] * 5)
    x = rng.normal(size=(len(role), 12))  # features that carry nothing
    plates = np.array(["P"] * len(role))
    s = lda_meter(x, plates, role)
    h, d = s[role == "healthy"], s[role == "disease"]
    assert z_prime(h, d) < 0  # in-sample LDA on 12 noise features would separate the 20 controls
    w_in = np.linalg.lstsq(np.c_[x[:20], np.ones(20)], (role[:20] == "disease").astype(float), rcond=None)[0]
    fitted = np.c_[x[:20], np.ones(20)] @ w_in
    assert z_prime(fitted[role[:20] == "healthy"], fitted[role[:20] == "disease"]) > z_prime(h, d)


def test_primary_meter_falls_back_to_the_logit_without_embeddings_or_features() -> None:
    wells, _, _ = screen()
    wells = wells.drop(columns=["org_coherency", "org_nuclei_log_aspect"])
    out, info = add_meters(wells, np.zeros((len(wells), 0)), control_roles(wells, CONTROLS), RescueParams(meter="fused"))
    assert info["readout"]["meter"] == "fused"  # the logit alone is still a fused input
    out, info = add_meters(
        wells, np.zeros((len(wells), 0)), control_roles(wells, CONTROLS), RescueParams(meter="axis")
    )
    assert info["readout"]["meter"] == "logit" and "axis" in info["readout"]["note"]
    assert np.allclose(out[READOUT_SCORE], out[DISEASE_SCORE])


def test_rescue_config_is_strict() -> None:
    from fibroclass.errors import FibroclassError

    with pytest.raises(FibroclassError, match="rescue.meter"):
        RescueParams(meter="magic")
    with pytest.raises(FibroclassError, match="org_"):
        RescueParams(features=("nuclei_count",))
    assert ScoreConfig(readout={"rescue": {"meter": "axis"}}).readout.rescue.meter == "axis"
    assert ScoreConfig(z_prime_scale="score").z_prime_scale == "readout"
