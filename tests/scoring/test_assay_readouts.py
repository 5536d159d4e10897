"""Secondary readouts in scoring: per-plate control normalization (both directions, log scale), the 4PL
and Spearman comparison per compound with the `discordant` flag, and `--assay` through a real scoring run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fibroclass.errors import FibroclassError
from fibroclass.io.assays import AssaySpec, read_assays
from fibroclass.schema import COMPOUND, CONC, PLATE, RESCUE_PCT, ROLE, VIABILITY_PCT, WELL
from fibroclass.scoring.compounds.assays import assay_compound_readout
from fibroclass.scoring.config import ReadoutSettings, ScoreConfig
from fibroclass.scoring.pipeline import score_index
from fibroclass.scoring.wells.assays import attach_assays, normalize_assays

DOSES = [10.0 / 3**i for i in range(8)]
IL6 = AssaySpec("il6_pg_ml", "IL-6", "pg/mL", "log")
WOUND = AssaySpec("wound_closure_pct", "wound closure", "%", "linear")
QUERY = "role in ['treatment', 'reference'] and concentration_uM > 0"


def hill(c: np.ndarray, ec50: float, h: float = 1.2) -> np.ndarray:
    return c**h / (c**h + ec50**h)


def plate(name: str, rng: np.random.Generator, il6_effect: dict[str, float]) -> pd.DataFrame:
    """Controls (6 healthy, 6 disease) and 3 compounds × 8 doses × 2: `rescuer` rescues morphology,
    `killer` is toxic from 1 µM; `il6_effect` scales each compound's IL-6 rescue (1 = like morphology)."""
    rows = []
    for i in range(6):
        rows.append((name, f"A{i + 1:02d}", "healthy", "DMSO", 0.0, 100.0, 100.0))
        rows.append((name, f"B{i + 1:02d}", "disease", "DMSO", 0.0, 0.0, 100.0))
    for k, compound in enumerate(("rescuer", "inert", "killer")):
        for j, d in enumerate(DOSES):
            for rep in range(2):
                morph = 100 * hill(np.array(d), 0.3) if compound == "rescuer" else 0.0
                via = 100 * (1 - hill(np.array(d), 1.0, 3)) if compound == "killer" else 100.0
                rows.append(
                    (
                        name,
                        f"{'CDE'[k]}{2 * j + rep + 1:02d}",
                        "treatment",
                        compound,
                        d,
                        float(morph),
                        float(via),
                    )
                )
    df = pd.DataFrame(rows, columns=[PLATE, WELL, ROLE, COMPOUND, CONC, RESCUE_PCT, VIABILITY_PCT])
    df[RESCUE_PCT] += rng.normal(0, 5, len(df))
    # IL-6: 40 pg/mL healthy, 480 disease (12x), log-linear in the rescue, x viability (fewer cells secrete less)
    frac = np.where(df[ROLE] == "healthy", 1.0, np.where(df[ROLE] == "disease", 0.0, 0.0))
    for compound, scale in il6_effect.items():
        m = df[COMPOUND] == compound
        frac[m] = scale * df.loc[m, RESCUE_PCT] / 100
    df["il6_pg_ml"] = 480 * 12 ** (-frac) * df[VIABILITY_PCT] / 100 * np.exp(rng.normal(0, 0.1, len(df)))
    df["wound_closure_pct"] = 35 + 50 * frac + rng.normal(0, 3, len(df))
    return df


def test_normalized_to_each_plates_controls_whichever_way_the_readout_moves():
    rng = np.random.default_rng(0)
    wells = plate("P1", rng, {"rescuer": 1.0})
    out, summary = normalize_assays(wells, wells[ROLE], {"il6_pg_ml": IL6, "wound_closure_pct": WOUND})
    s = summary["P1"]["il6_pg_ml"]
    assert (
        s["usable"] and 9 < s["fold_disease_vs_healthy"] < 16 and s["z_prime"] > 0.5 and s["unit"] == "pg/mL"
    )
    h = out[ROLE] == "healthy"
    d = out[ROLE] == "disease"
    for col in ("il6_pg_ml_rescue_pct", "wound_closure_pct_rescue_pct"):
        assert abs(out.loc[h, col].mean() - 100) < 1e-6 and abs(out.loc[d, col].mean()) < 1e-6
    top = (out[COMPOUND] == "rescuer") & (out[CONC] == 10.0)
    assert (
        out.loc[top, "il6_pg_ml_rescue_pct"].mean() > 80
        and out.loc[top, "wound_closure_pct_rescue_pct"].mean() > 80
    )
    # on the log scale the midpoint between the controls is the geometric mean, 50 %
    mid = np.sqrt(s["healthy_mean"] * s["disease_mean"])
    probe = wells.iloc[[0]].assign(**{ROLE: "treatment", "il6_pg_ml": mid})
    both = pd.concat([wells, probe], ignore_index=True)
    again, _ = normalize_assays(both, both[ROLE], {"il6_pg_ml": IL6})
    assert again["il6_pg_ml_rescue_pct"].iloc[-1] == pytest.approx(50.0, abs=1e-6)


def test_plate_without_controls_gets_nan_and_a_reason():
    wells = plate("P1", np.random.default_rng(1), {})
    wells.loc[wells[ROLE] == "healthy", "il6_pg_ml"] = np.nan
    out, summary = normalize_assays(wells, wells[ROLE], {"il6_pg_ml": IL6})
    assert out["il6_pg_ml_rescue_pct"].isna().all()
    assert not summary["P1"]["il6_pg_ml"]["usable"] and "healthy" in summary["P1"]["il6_pg_ml"]["reasons"][0]


def test_compound_comparison_flags_a_morphology_hit_that_does_not_lower_il6():
    rng = np.random.default_rng(2)
    wells = pd.concat(
        [plate("P1", rng, {"rescuer": 0.0}), plate("P2", rng, {"rescuer": 0.0})], ignore_index=True
    )
    wells, _ = normalize_assays(wells, wells[ROLE], {"il6_pg_ml": IL6})
    compounds = pd.DataFrame({COMPOUND: ["inert", "killer", "rescuer"], "call": ["inactive", "toxic", "hit"]})
    qc = {"P1": {"pass": True}, "P2": {"pass": True}}
    out, fits = assay_compound_readout(wells, compounds, qc, QUERY, ReadoutSettings(), {"il6_pg_ml": IL6})
    row = out.set_index(COMPOUND)
    assert bool(row.loc["rescuer", "il6_pg_ml_discordant"]) and bool(row.loc["rescuer", "discordant"])
    assert row.loc["rescuer", "il6_pg_ml_max_rescue_pct"] < 25
    # the killer's IL-6 falls at toxic doses (dead cells), which is no rescue: only viable doses count
    assert (
        not row.loc["killer", "il6_pg_ml_discordant"] and row.loc["killer", "il6_pg_ml_max_rescue_pct"] < 25
    )
    assert not row.loc["inert", "discordant"]
    assert set(fits["il6_pg_ml"]) == {"inert", "killer", "rescuer"}


def test_concordant_compound_has_high_rho_and_a_matching_ec50():
    rng = np.random.default_rng(3)
    wells = plate("P1", rng, {"rescuer": 1.0})
    wells, _ = normalize_assays(wells, wells[ROLE], {"il6_pg_ml": IL6})
    compounds = pd.DataFrame({COMPOUND: ["inert", "killer", "rescuer"]})
    out, _ = assay_compound_readout(
        wells, compounds, {"P1": {"pass": True}}, QUERY, ReadoutSettings(), {"il6_pg_ml": IL6}
    )
    row = out.set_index(COMPOUND).loc["rescuer"]
    med = wells[wells[COMPOUND] == "rescuer"].groupby(CONC)[[RESCUE_PCT, "il6_pg_ml_rescue_pct"]].median()
    assert row["il6_pg_ml_rho"] == pytest.approx(stats.spearmanr(med.iloc[:, 0], med.iloc[:, 1]).statistic)
    assert row["il6_pg_ml_rho"] > 0.9 and not row["il6_pg_ml_discordant"]
    assert 0.1 < row["il6_pg_ml_ec50_uM"] < 1.0 and row["il6_pg_ml_max_rescue_pct"] > 80


def test_attach_checks_plates_and_names(tmp_path):
    wells = plate("P1", np.random.default_rng(4), {}).drop(columns=["il6_pg_ml", "wound_closure_pct"])
    (tmp_path / "a.csv").write_text("well,il6_pg_ml\nA01,40\nB01,480\nH12,10\n")  # no plate column: one plate
    out, warnings = attach_assays(wells, read_assays([tmp_path / "a.csv"]))
    assert out.set_index(WELL).loc["B01", "il6_pg_ml"] == 480 and out["il6_pg_ml"].notna().sum() == 2
    assert len(warnings) == 1 and "1 row(s) for wells without images ignored (e.g. P1 H12)" in warnings[0]
    (tmp_path / "b.csv").write_text("plate,well,il6_pg_ml\nP9,A01,40\n")
    with pytest.raises(FibroclassError, match=r"b\.csv: plate 'P9' is not a plate of this run"):
        attach_assays(wells, read_assays([tmp_path / "b.csv"]))
    two = pd.concat([wells, wells.assign(**{PLATE: "P2"})], ignore_index=True)
    with pytest.raises(FibroclassError, match=r"a\.csv has no plate column but the run has 2 plates"):
        attach_assays(two, read_assays([tmp_path / "a.csv"]))
    (tmp_path / "c.csv").write_text("plate,well,viability_pct\nP1,A01,40\n")
    with pytest.raises(FibroclassError, match=r"readout 'viability_pct' clashes with column 'viability_pct'"):
        attach_assays(wells, read_assays([tmp_path / "c.csv"]))


def _layout(plate_name: str) -> list[dict]:
    """A small real plate for the toy model: 4 healthy + 4 disease controls, a 6-dose rescuer (2 reps)."""
    healthy, disease = 8000, 30000
    wells = []
    for i in range(4):
        wells.append(
            {
                "plate": plate_name,
                "well": f"A{i + 1:02d}",
                "role": "healthy",
                "level": healthy + 150 * (i - 1.5),
            }
        )
        wells.append(
            {
                "plate": plate_name,
                "well": f"B{i + 1:02d}",
                "role": "disease",
                "level": disease + 150 * (i - 1.5),
            }
        )
    for j, d in enumerate([0.01, 0.03, 0.1, 0.3, 1.0, 3.0]):
        frac = float(hill(np.array(d), 0.2))
        for rep in range(2):
            wells.append({"plate": plate_name, "well": f"{'CD'[rep]}{j + 1:02d}", "role": "treatment",
                          "compound": "rescuer", "conc": d, "level": int(disease + frac * (healthy - disease))})  # fmt: skip
    return wells


def test_score_with_assay_files_end_to_end(tmp_path, kit, toy_model):
    layout = _layout("P1")
    index = kit.make_index(tmp_path / "img", layout, sites=1, size=(24, 24))
    rows = []
    for w in layout:
        frac = (
            1.0 if w["role"] == "healthy" else 0.0 if w["role"] == "disease" else (30000 - w["level"]) / 22000
        )
        rows.append({"plate": "P1", "well": w["well"], "il6 [pg/mL]": round(480 * 12 ** (-frac), 2)})
    csv = tmp_path / "il6.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    (tmp_path / "il6.yaml").write_text("il6: {label: IL-6, scale: log}\n")
    cfg = ScoreConfig(batch_size=8, device="cpu", report=True, report_gradcam=False, assays=[str(csv)])
    res = score_index(index, toy_model, tmp_path / "out", cfg, progress=False)
    wells = pd.read_csv(tmp_path / "out" / "wells.csv")
    assert {"il6", "il6_rescue_pct"} <= set(wells.columns) and wells["il6"].notna().all()
    comp = pd.read_csv(tmp_path / "out" / "compounds.csv").set_index(COMPOUND).loc["rescuer"]
    assert comp["il6_rho"] > 0.9 and not comp["il6_discordant"] and not comp["discordant"]
    qc = json.loads((tmp_path / "out" / "plate_qc.json").read_text())["plates"]["P1"]["assays"]["il6"]
    assert qc["scale"] == "log" and qc["fold_disease_vs_healthy"] == pytest.approx(12.0, rel=1e-3)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["assays"] == [str(csv)] and len(run["assay_files"][str(csv)]) == 64
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="assays"' in html and "IL-6 (pg/mL)" in html and "fc-assay-grid-il6" in html
    assert res.merged
    # a changed readout file re-merges (the fingerprint covers file contents, not only paths)
    again = score_index(index, toy_model, tmp_path / "out", cfg, progress=False)
    assert not again.merged
    csv.write_text(csv.read_text().replace("480.0", "500.0"))
    assert score_index(index, toy_model, tmp_path / "out", cfg, progress=False).merged


def test_a_bad_assay_plate_fails_before_any_scoring(tmp_path, kit, toy_model):
    index = kit.make_index(tmp_path / "img", _layout("P1"), sites=1, size=(24, 24))
    (tmp_path / "x.csv").write_text("plate,well,il6\nPLATE-1,A01,1\n")
    cfg = ScoreConfig(batch_size=8, device="cpu", report=False, assays=[str(tmp_path / "x.csv")])
    with pytest.raises(FibroclassError, match=r"x\.csv: plate 'PLATE-1' is not a plate of this run"):
        score_index(index, toy_model, tmp_path / "out", cfg, progress=False)
    assert not (tmp_path / "out" / "parts").exists() or not any(
        (tmp_path / "out" / "parts").rglob("*.parquet")
    )


def test_cli_bad_assay_file_is_one_line_before_the_model_loads(tmp_path, kit, capsys):
    from fibroclass.cli.app import main

    layout = _layout("P1")
    kit.make_index(tmp_path / "img", layout, sites=1, size=(24, 24))
    platemap = kit.write_platemap(tmp_path / "platemap.csv", layout)
    (tmp_path / "il6.csv").write_text("plate,well,il6\nP1,A01,12 pg/mL\n")
    rc = main(
        ["score", str(tmp_path / "img"), "--platemap", str(platemap), "--model", "models:/nothing@here",
         "--out", str(tmp_path / "o"), "--assay", str(tmp_path / "il6.csv")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "il6.csv line 2, column 'il6': '12 pg/mL' is not a number" in err
    from typer.testing import CliRunner

    from fibroclass.cli.app import app

    assert "--assay" in CliRunner().invoke(app, ["score", "--help"]).output
