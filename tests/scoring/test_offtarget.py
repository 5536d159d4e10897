"""Disease-axis decomposition: along-axis shifts are rescue, orthogonal shifts are off-target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fibroclass.errors import FibroclassError
from fibroclass.schema import OFFTARGET
from fibroclass.scoring.wells.offtarget import (
    OFFTARGET_Z,
    ON_TARGET_PCT,
    disease_axis_decomposition,
)

D = 16
NOISE = 0.3


def plate_wells(rng: np.random.Generator, plate: str, origin: np.ndarray, n_ctrl: int = 12):
    """Control wells around c_d = origin and c_h = origin + 5 e0, plus named treatment wells."""
    axis = np.zeros(D)
    axis[0] = 5.0
    ortho = np.zeros(D)
    ortho[1] = 1.0
    rows, roles, names = [], [], []

    def add(centre: np.ndarray, role: str, name: str, n: int = 1) -> None:
        for _ in range(n):
            rows.append(centre + rng.normal(0, NOISE, D))
            roles.append(role)
            names.append(name)

    add(origin, "disease", "disease", n_ctrl)
    add(origin + axis, "healthy", "healthy", n_ctrl)
    add(origin + 0.5 * axis, "treatment", "half_rescue", 4)
    add(origin + axis, "treatment", "full_rescue", 4)
    add(origin + 4.0 * ortho, "treatment", "orthogonal", 4)
    add(origin + 0.5 * axis + 4.0 * ortho, "treatment", "mixed", 4)
    add(origin, "treatment", "inert", 4)
    return rows, roles, names, [plate] * len(rows)


@pytest.fixture
def two_plates() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = [plate_wells(rng, "P1", np.zeros(D)), plate_wells(rng, "P2", rng.normal(0, 3, D))]
    emb = np.vstack([np.array(p[0]) for p in parts])
    df = pd.DataFrame(
        {
            "role": sum((p[1] for p in parts), []),
            "name": sum((p[2] for p in parts), []),
            "plate": sum((p[3] for p in parts), []),
        }
    )
    out = disease_axis_decomposition(emb, df["role"], df["plate"])
    return pd.concat([df, out], axis=1)


def test_along_axis_shift_is_rescue_without_offtarget(two_plates: pd.DataFrame) -> None:
    by = two_plates.groupby("name")
    on, z = by[ON_TARGET_PCT].median(), by[OFFTARGET_Z].median()
    assert on["half_rescue"] == pytest.approx(50, abs=8)
    assert on["full_rescue"] == pytest.approx(100, abs=8)
    assert on["inert"] == pytest.approx(0, abs=8)
    for name in ("half_rescue", "full_rescue", "inert", "disease", "healthy"):
        assert abs(z[name]) < 2.0, (name, z[name])
    assert not two_plates.loc[
        two_plates["name"].isin(["half_rescue", "full_rescue", "inert"]), OFFTARGET
    ].any()


def test_orthogonal_shift_is_offtarget_without_rescue(two_plates: pd.DataFrame) -> None:
    orth = two_plates[two_plates["name"] == "orthogonal"]
    assert orth[ON_TARGET_PCT].abs().max() < 10
    assert orth[OFFTARGET_Z].min() > 5
    assert orth[OFFTARGET].all()
    mixed = two_plates[two_plates["name"] == "mixed"]
    assert mixed[ON_TARGET_PCT].median() == pytest.approx(50, abs=8)
    assert mixed[OFFTARGET].all()


def test_each_plate_uses_its_own_controls(two_plates: pd.DataFrame) -> None:
    """Plate P2 is shifted as a whole (batch effect); its numbers match P1's."""
    med = two_plates.groupby(["plate", "name"])[ON_TARGET_PCT].median().unstack("plate")
    assert (med["P1"] - med["P2"]).abs().max() < 10


def test_nonfinite_wells_and_duplicate_index() -> None:
    rng = np.random.default_rng(1)
    rows, roles, _, plates = plate_wells(rng, "P1", np.zeros(D), n_ctrl=4)
    emb = np.vstack(rows)
    emb[-1] = np.nan
    index = pd.Index([0] * len(roles))
    out = disease_axis_decomposition(emb, pd.Series(roles, index=index), pd.Series(plates, index=index))
    assert out.index.equals(index)
    assert np.isnan(out[ON_TARGET_PCT].iloc[-1]) and not out[OFFTARGET].iloc[-1]
    assert np.isfinite(out[ON_TARGET_PCT].iloc[:-1]).all()


def test_missing_controls_name_the_plate() -> None:
    emb = np.random.default_rng(2).normal(size=(6, D))
    roles = pd.Series(["disease"] * 3 + ["treatment"] * 3)
    with pytest.raises(FibroclassError, match="plate P9.*healthy"):
        disease_axis_decomposition(emb, roles, pd.Series(["P9"] * 6))
    with pytest.raises(FibroclassError, match="do not match"):
        disease_axis_decomposition(emb[:4], roles, pd.Series(["P9"] * 6))
