"""Phenotypic activity: copairs mAP of replicate wells against the vehicle wells, per compound and dose."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fibroclass.schema import COMPOUND, CONC, PLATE, ROLE
from fibroclass.scoring.compounds.activity import ACTIVITY_COLUMNS, DOSE_COLUMNS, phenotypic_activity


def layout(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two plates, 8 vehicle wells each; 'mover' shifts the embedding at its two top doses (towards healthy
    or elsewhere, it does not matter), 'inert' never does; 3 doses x 2 replicate wells per plate."""
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    shift = rng.normal(0, 1, 16)
    shift *= 6.0 / np.linalg.norm(shift)
    for plate in ("P1", "P2"):
        offset = rng.normal(0, 0.5, 16)  # plate effect: profiles are centred on each plate's vehicle
        for _ in range(8):
            rows.append((plate, "disease", "DMSO", 0.0))
            emb.append(offset + rng.normal(0, 1, 16))
        for name in ("mover", "inert"):
            for k, conc in enumerate((0.1, 1.0, 10.0)):
                for _ in range(2):
                    rows.append((plate, "treatment", name, conc))
                    moved = shift * (k >= 1) * (name == "mover")
                    emb.append(offset + moved + rng.normal(0, 1, 16))  # as noisy as vehicle wells
    wells = pd.DataFrame(rows, columns=[PLATE, ROLE, COMPOUND, CONC])
    return wells, np.array(emb, dtype=np.float32)


def test_active_doses_are_found_and_inert_ones_are_not() -> None:
    wells, emb = layout()
    res = phenotypic_activity(wells, emb, wells[ROLE], (wells[ROLE] == "treatment").to_numpy(), null_size=2000)
    assert res.note == ""
    d = res.per_dose.set_index([COMPOUND, CONC])
    assert list(res.per_dose.columns) == list(DOSE_COLUMNS)
    assert (d["n_wells"] == 4).all()  # 2 replicates on each of 2 plates
    assert d.loc[("mover", 1.0), "active"] and d.loc[("mover", 10.0), "active"]
    assert d.loc[("mover", 1.0), "map"] > 0.9 and d.loc[("mover", 1.0), "q_value"] < 0.05
    assert not d.loc[("mover", 0.1), "active"]
    assert not d.xs("inert", level=COMPOUND)["active"].any()
    assert (d["q_value"] >= d["p_value"] - 1e-12).all()  # FDR-corrected
    c = res.per_compound.set_index(COMPOUND)
    assert list(res.per_compound.columns) == [COMPOUND, *ACTIVITY_COLUMNS]
    assert c.loc["mover", "activity_active"] and c.loc["mover", "activity_n_active_doses"] == 2
    assert c.loc["mover", "activity_min_active_dose_uM"] == 1.0
    assert not c.loc["inert", "activity_active"] and np.isnan(c.loc["inert", "activity_min_active_dose_uM"])


def test_without_embeddings_or_replicates_there_is_a_note_not_an_error() -> None:
    wells, emb = layout()
    treated = (wells[ROLE] == "treatment").to_numpy()
    res = phenotypic_activity(wells, np.zeros((len(wells), 0)), wells[ROLE], treated)
    assert res.per_dose.empty and "embeddings" in res.note
    single = wells.drop_duplicates([PLATE, COMPOUND, CONC]).drop_duplicates([COMPOUND, CONC])
    keep = single.index.union(wells.index[wells[ROLE] == "disease"])
    res = phenotypic_activity(
        wells.loc[keep], emb[keep], wells.loc[keep, ROLE], (wells.loc[keep, ROLE] == "treatment").to_numpy()
    )
    assert res.per_dose.empty and "replicate" in res.note
