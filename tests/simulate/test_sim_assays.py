"""Simulated secondary readouts: IL-6 follows severity (~12x GoF vs healthy) with its own noise, falls
with toxicity, ignores off-target morphology; wound closure the other way; readable by io.assays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fibroclass.io.assays import read_assays
from fibroclass.simulate import plates as pl
from fibroclass.simulate.assays import assay_frame


def test_screen_writes_assays_that_follow_the_ground_truth(screen_set):
    assert screen_set.assays == screen_set.out / "assays.csv" and screen_set.assays.is_file()
    data = read_assays([screen_set.assays])
    assert data.specs["il6_pg_ml"].log and data.specs["il6_pg_ml"].unit == "pg/mL"
    assert data.specs["wound_closure_pct"].unit == "%" and not data.specs["wound_closure_pct"].log
    truth = pd.read_csv(screen_set.ground_truth_wells)
    df = truth.merge(data.table, on=["plate", "well"])
    assert len(df) == len(truth) == 96 and df["il6_pg_ml"].gt(0).all()
    gmean = lambda s: float(np.exp(np.log(s).mean()))  # noqa: E731
    fold = gmean(df.loc[df.role == "disease", "il6_pg_ml"]) / gmean(df.loc[df.role == "healthy", "il6_pg_ml"])
    assert 8 < fold < 16  # ~12x in GoF (the paper), up to the donors' own baseline severities
    viable = df[df.viability > 0.9]
    rho = np.corrcoef(viable.severity, np.log(viable.il6_pg_ml))[0, 1]
    assert rho > 0.9  # follows severity, with ELISA noise on top
    assert (
        df.loc[df.role == "healthy", "wound_closure_pct"].mean()
        > df.loc[df.role == "disease", "wound_closure_pct"].mean() + 30
    )
    tox = df[(df.compound == "staurosporine") & (df.concentration_uM == df.concentration_uM.max())]
    assert tox.il6_pg_ml.max() < df.loc[df.role == "disease", "il6_pg_ml"].min()  # dead cells secrete less
    off = df[(df.compound == "cytochalasinD") & (df.concentration_uM == df.concentration_uM.max())]
    disease = df.loc[df.role == "disease", "il6_pg_ml"]
    assert off.il6_pg_ml.min() > 0.5 * disease.min()  # off-target morphology leaves IL-6 at the disease level


def test_assays_have_their_own_noise_stream_and_are_deterministic():
    donor = pl.make_donor(0, pl.GOF, 1)
    optics = pl.plate_optics(0, "P", 0.1)
    spec = pl.WellSpec("B02", "disease")
    plans = [
        pl.plan_well(0, "P", spec, donor, optics),
        pl.plan_well(0, "P", pl.WellSpec("B03", "disease"), donor, optics),
    ]
    a, b = assay_frame(plans, seed=0), assay_frame(plans, seed=0)
    pd.testing.assert_frame_equal(a, b)
    assert a.il6_pg_ml.iloc[0] != a.il6_pg_ml.iloc[1]  # wells differ by their own noise
