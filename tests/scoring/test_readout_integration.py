"""The screening readout inside `score`, end to end on a simulated 64 px screen (real TIFFs, real tiny
classifier): field QC before aggregation, viability, off-target, calls, plate gate, report, config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from fibroclass.data.datamodule import FibroDataModule
from fibroclass.data.splits import make_split, write_split
from fibroclass.errors import FibroclassError
from fibroclass.io.index import build_index
from fibroclass.measure.nuclei import count_nuclei
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.module import FibroModule
from fibroclass.schema import CALLS, PLATE, ROLE, SITE, WELL, path_col
from fibroclass.scoring.config import ScoreConfig, load_score_config
from fibroclass.scoring.pipeline import score_index
from fibroclass.scoring.report.html import SECTIONS
from fibroclass.simulate import ArtefactRates, simulate_screen, simulate_training_set

REPO = Path(__file__).resolve().parents[2]
SIZE = 64
FIELDS = 2
FAST = ScoreConfig(readout={"dose_response": {"n_boot": 40}})


def train_classifier(root: Path) -> FibroClassifier:
    """A tiny CNN trained with Lightning on a simulated 64 px training set (donor split)."""
    sim = simulate_training_set(root / "train", seed=0, size=SIZE, fields=1)
    index = build_index([sim.images_dir], sim.platemap).index
    index.to_parquet(root / "index.parquet")
    write_split(index, root / "index.parquet", make_split(index, seed=0), root / "split", {"seed": 0})
    L.seed_everything(0)
    dm = FibroDataModule(str(root / "split"), crop_size=32, crops_per_field=16, batch_size=32)
    module = FibroModule(backbone="tiny", lr=3e-3)
    trainer = L.Trainer(
        max_epochs=6, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, deterministic=True, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return module.classifier.eval()


def damage(index: pd.DataFrame) -> dict[tuple[str, int], str]:
    """Blur two control fields and empty two others on disk (the other site of each well stays clean)."""
    # wells whose other field has plenty of nuclei, so "empty" is judged against a full sibling
    ctrl = index[index[ROLE].isin(["healthy", "disease"]) & (index[SITE] == 1)].copy()
    ctrl["n"] = [count_nuclei(tifffile.imread(p).astype(np.float32)).n for p in ctrl[path_col("nuclei")]]
    wells = ctrl.sort_values("n", ascending=False).groupby(ROLE)[WELL].apply(list)
    plan = {
        (wells["healthy"][0], 1): "blur",
        (wells["disease"][0], 1): "blur",
        (wells["healthy"][1], 2): "empty",
        (wells["disease"][1], 2): "empty",
    }
    for (well, site), kind in plan.items():
        row = index[(index[WELL] == well) & (index[SITE] == site)].iloc[0]
        for ch in ("actin", "nuclei"):
            path = row[path_col(ch)]
            img = tifffile.imread(path).astype(np.float32)
            if kind == "blur":  # out of focus: a wide defocus blur
                out = ndi.gaussian_filter(img, 2.0)
            else:  # no cells: the field's background level with its camera noise
                rng = np.random.default_rng(site)
                out = np.percentile(img, 5) + rng.normal(0, 0.3 * img.std() / 10, img.shape)
            tifffile.imwrite(path, np.clip(out, 0, 65535).astype(np.uint16))
    return plan


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    """A 96-well simulated screen at 64 px, 2 fields per well, four damaged control fields, scored by a
    freshly trained tiny CNN (fewer bootstrap draws than the default, to stay fast)."""
    root = tmp_path_factory.mktemp("readout")
    model = train_classifier(root)
    sim = simulate_screen(root / "screen", seed=1, size=SIZE, fields=FIELDS, artefacts=ArtefactRates(0, 0, 0))
    index = build_index([sim.images_dir], sim.platemap).index
    damaged = damage(index)
    out = root / "out"
    result = score_index(index, model, out, FAST, progress=False)
    return index, model, result, out, damaged


def test_field_qc_flags_artefacts_and_keeps_them_out_of_wells(screen):
    _, _, res, out, damaged = screen
    fields = pd.read_parquet(out / "fields.parquet")
    assert {"qc_sharpness", "qc_fg_frac", "nuclei_count", "nuclei_pyknotic", "org_coherency"} <= set(fields)
    by_field = fields.set_index([WELL, SITE])
    for (well, site), kind in damaged.items():
        row = by_field.loc[(well, site)]
        # a defocused field can also lose its nuclei segmentation: then it is (also) called empty
        allowed = ("blur", "empty") if kind == "blur" else ("empty",)
        assert not row["qc_pass"] and any(r in row["qc_reason"] for r in allowed), (
            well,
            site,
            row["qc_reason"],
        )
    clean = fields[~fields.set_index([WELL, SITE]).index.isin(list(damaged))]
    assert (~clean["qc_pass"]).mean() <= 0.05, clean.loc[~clean["qc_pass"], "qc_reason"].tolist()

    # A well's score and nuclei count are means over the fields that passed QC only.
    wells = pd.read_csv(out / "wells.csv").set_index([PLATE, WELL])
    used = fields[fields["qc_pass"]].groupby([PLATE, WELL])[["disease_score", "nuclei_count"]].mean()
    np.testing.assert_allclose(wells.loc[used.index, "disease_score"], used["disease_score"], rtol=1e-6)
    np.testing.assert_allclose(wells.loc[used.index, "nuclei_count"], used["nuclei_count"], rtol=1e-6)
    n_flagged = (~fields["qc_pass"]).groupby([fields[PLATE], fields[WELL]]).sum()
    assert (wells["n_fields_used"] == FIELDS - n_flagged.loc[wells.index]).all()
    assert "qc_sharpness" not in wells  # field-level metrics stay in fields.parquet
    assert res.plate_qc["SCREEN01"]["n_fields_flagged"] == int((~fields["qc_pass"]).sum())


def test_viability_offtarget_and_calls(screen):
    _, _, res, out, _ = screen
    wells = pd.read_csv(out / "wells.csv")
    for col in (
        "viability_pct",
        "pyknotic_pct",
        "on_target_pct",
        "offtarget_z",
        "offtarget",
        "org_rescue_pct",
    ):
        assert col in wells, col
    stauro = wells[wells["compound"] == "staurosporine"].groupby("concentration_uM")["viability_pct"].median()
    assert stauro.iloc[-1] < 30 and stauro.iloc[0] > 70  # killed at the top dose, fine at the bottom
    disease = wells[wells[ROLE] == "disease"]
    assert disease["viability_pct"].mean() == pytest.approx(100.0)

    compounds = pd.read_csv(out / "compounds.csv")
    assert set(compounds["compound"]) == {
        "ruxolitinib",
        "tofacitinib",
        "mannitol",
        "staurosporine",
        "cytochalasinD",
    }
    assert compounds["call"].isin(CALLS).all() and compounds["call_reason"].str.len().gt(0).all()
    calls = compounds.set_index("compound")["call"]
    assert calls["staurosporine"] == "toxic", compounds[["compound", "call", "call_reason"]].to_string()
    assert calls["ruxolitinib"] == "hit" and calls["mannitol"] != "hit" and calls["cytochalasinD"] != "hit"
    assert {"ec50_uM", "ec50_qualifier", "ec50_ci_low_uM", "emax_pct", "hill", "max_offtarget_z"} <= set(
        compounds
    )


def test_plate_qc_report_and_organization(screen):
    _, _, res, out, _ = screen
    qc = json.loads((out / "plate_qc.json").read_text())["plates"]["SCREEN01"]
    # default meter: the logit, gated on p(disease) (qc.z_prime_scale auto); the fitted meters are opt-in columns
    assert qc["z_prime_scale"] == "probability" and qc["readout_meter"] == "logit" and qc["pass"], qc
    assert qc["classification"]["auroc"] > 0.9 and np.isfinite(qc["z_prime_robust"])
    wells = pd.read_csv(out / "wells.csv")
    ctrl = wells[wells[ROLE].isin(["healthy", "disease"])].groupby(ROLE)["rescue_pct"].mean()
    assert ctrl["healthy"] == pytest.approx(100.0) and ctrl["disease"] == pytest.approx(0.0, abs=1e-6)
    for col in ("readout_score", "rescue_pct_logit", "rescue_pct_fused", "rescue_pct_axis"):
        assert col in wells, col
    activity = pd.read_csv(out / "activity.csv")
    assert {"compound", "concentration_uM", "map", "p_value", "q_value", "active"} <= set(activity)
    assert activity["map"].between(0, 1).all() and len(activity) > 5
    assert qc["n_fields_flagged"] == int((~res.fields["qc_pass"]).sum())
    org = qc["organization"]
    assert org["feature"] == "org_coherency" and "org_coherency" in org["rho_disease_score"]

    html = (out / "report.html").read_text()
    for sid in (*SECTIONS, "organization"):
        assert f'id="{sid}"' in html, sid
    assert "fig-montage_gradcam" in html and "fig-organization_agreement" in html
    assert 'id="activity"' in html and "fig-activity" in html
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)  # plotly.js holds src= in its code
    assert not re.search(r'src="(?!data:)', markup)  # self-contained: every image embedded
    assert res.files["report.html"] == out / "report.html"


def relabel(index: pd.DataFrame, how: str) -> pd.DataFrame:
    """The plate map with its healthy/disease control labels swapped, or mixed (alternating by well)."""
    out = index.copy()
    ctrl = index[ROLE].isin(["healthy", "disease"])
    if how == "swapped":
        out.loc[ctrl, ROLE] = index.loc[ctrl, ROLE].map({"healthy": "disease", "disease": "healthy"})
    else:
        wells = sorted(index.loc[ctrl, WELL].unique())
        out.loc[ctrl, ROLE] = index.loc[ctrl, WELL].map(
            {w: ("healthy", "disease")[i % 2] for i, w in enumerate(wells)}
        )
    return out


@pytest.mark.parametrize("how", ["swapped", "mixed"])
def test_swapped_or_mixed_controls_fail_the_plate_and_nothing_is_called(screen, tmp_path, how):
    index, model, _, _, _ = screen
    cfg = ScoreConfig(**{**FAST.__dict__, "report": False})
    res = score_index(relabel(index, how), model, tmp_path, cfg, progress=False)
    q = res.plate_qc["SCREEN01"]
    assert not q["pass"] and q["reasons"]
    if how == "swapped":
        assert any("inverted" in r for r in q["reasons"])
    assert (res.compounds["call"] == "inconclusive").all()
    assert res.compounds["call_reason"].str.startswith("not called: plate(s) SCREEN01 failed QC").all()
    assert res.wells["flags"].str.contains("plate_qc_fail").all()


def test_readout_thresholds_come_from_the_one_score_config(tmp_path):
    cfg = load_score_config(REPO / "configs" / "score" / "default.yaml")
    assert (
        cfg.readout.field_qc.blur_robust_z == 3.5 and cfg.readout.organization.disagree_z == 3.0
    )
    (tmp_path / "readout.yaml").write_text("calls:\n  hit_rescue_pct: 60\nfield_qc:\n  blur_robust_z: 4\n")
    own = tmp_path / "score.yaml"
    own.write_text("include: readout.yaml\nfield_qc:\n  blur_abs_floor: 0.05\nqc:\n  z_prime_scale: score\n")
    cfg = load_score_config(own)
    settings = cfg.readout
    assert settings.calls.hit_rescue_pct == 60
    assert settings.field_qc.blur_robust_z == 4 and settings.field_qc.blur_abs_floor == 0.05
    assert cfg.z_prime_scale == "readout"  # "score", the older name of the scale rescue uses
    own.write_text("field_qc:\n  blur_z: 4\n")
    with pytest.raises(FibroclassError, match=r"score.yaml.*blur_z"):
        load_score_config(own)
    own.write_text("include: missing.yaml\n")
    with pytest.raises(FibroclassError, match="missing.yaml"):
        load_score_config(own)


@pytest.mark.slow
def test_readout_matches_simulated_ground_truth(tmp_path, capsys, monkeypatch):
    """benchmarks/readout_truth.py at its defaults (128 px, 3 fields, default training config): every
    Done-when criterion of the screening readout holds against the simulator's ground truth."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readout_truth", REPO / "benchmarks" / "readout_truth.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.chdir(tmp_path)  # run() points MLflow at its folder: restored after the test
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'bench' / 'mlruns.db'}")
    monkeypatch.setenv("FIBROCLASS_PROGRESS", "0")
    res = bench.run(tmp_path / "bench")
    ok = bench.report(res)
    printed = capsys.readouterr().out
    checks = res["results"]["clean"]["checks"]
    assert ok and all(checks.values()), printed
