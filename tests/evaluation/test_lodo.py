"""Leave-one-pair-out fold design and out-of-fold analysis (no torch, no training)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fibroclass import schema
from fibroclass.data.splits import read_split
from fibroclass.errors import FibroclassError
from fibroclass.evaluation import lodo


def _index(n_healthy: int, n_disease: int, fields: int = 3) -> pd.DataFrame:
    rows = []
    donors = [(f"HD{i}", "healthy") for i in range(1, n_healthy + 1)]
    donors += [(f"GoF{i}", "disease") for i in range(1, n_disease + 1)]
    for w, (donor, role) in enumerate(donors):
        for site in range(1, fields + 1):
            well = f"B{w + 2:02d}"
            rows.append(
                {
                    schema.PLATE: "P1",
                    schema.WELL: well,
                    schema.SITE: site,
                    schema.ROLE: role,
                    schema.DONOR: donor,
                    schema.path_col("actin"): f"/img/P1_{well}_s{site}_w1.tif",
                    schema.path_col("nuclei"): f"/img/P1_{well}_s{site}_w2.tif",
                }
            )
    rows.append({**rows[0], schema.WELL: "H12", schema.ROLE: "treatment", schema.DONOR: "GoF1"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("n_h", "n_d"), [(3, 3), (4, 4), (3, 5), (6, 3)])
def test_pair_folds_hold_out_every_donor_and_never_train_on_it(n_h: int, n_d: int) -> None:
    index = _index(n_h, n_d)
    classes = lodo.donor_classes(index)
    folds = lodo.plan_pair_folds(index, seed=1)
    assert len(folds) == max(n_h, n_d)
    held_out = set()
    for fold in folds:
        assert sorted(classes[list(fold.test)]) == ["disease", "healthy"]  # one donor of each class
        assert sorted(classes[list(fold.val)]) == ["disease", "healthy"]
        assert set(classes[list(fold.train)]) == {"disease", "healthy"}
        assert not set(fold.test) & (set(fold.train) | set(fold.val))
        assert not set(fold.val) & set(fold.train)
        assert set(fold.test) | set(fold.val) | set(fold.train) == set(classes.index)
        held_out |= set(fold.test)
    assert held_out == set(classes.index)  # every donor is predicted by a model that never saw it
    assert folds == lodo.plan_pair_folds(index, seed=1)  # deterministic


def test_too_few_donors_or_mixed_roles_are_user_errors() -> None:
    with pytest.raises(FibroclassError, match=r"needs >= 3 healthy donors.*has 2: \['HD1', 'HD2'\]"):
        lodo.plan_pair_folds(_index(2, 4))
    mixed = _index(3, 3)
    mixed.loc[0, schema.ROLE] = "disease"
    with pytest.raises(FibroclassError, match="donor 'HD1' has control wells of several roles"):
        lodo.plan_pair_folds(mixed)
    with pytest.raises(FibroclassError, match="no 'donor' column"):
        lodo.plan_pair_folds(_index(3, 3).drop(columns=schema.DONOR))


def test_fold_split_is_a_regular_split_manifest(tmp_path) -> None:
    index = _index(3, 4)
    index_path = tmp_path / "index.parquet"
    index.to_parquet(index_path)
    fold = lodo.plan_pair_folds(index)[0]
    manifest = read_split(lodo.write_fold_split(index, index_path, fold, tmp_path / "split"))
    assert {s: set(manifest.donors[s]) for s in schema.SPLITS} == {
        "train": set(fold.train),
        "val": set(fold.val),
        "test": set(fold.test),
    }
    assigned = manifest.assign(index)
    assert set(index.loc[assigned == "test", schema.DONOR]) == set(fold.test)
    assert assigned[index[schema.ROLE] == "treatment"].isna().all()
    assert manifest.params["scheme"] == lodo.SCHEME and manifest.params["fold"] == fold.name


def _oof(rows: list[tuple[str, int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                lodo.FOLD: f,
                schema.DONOR: d,
                schema.LABEL: y,
                schema.P_DISEASE: p,
                schema.PLATE: "P",
                schema.WELL: d,
                schema.SITE: i,
            }
            for i, (f, d, y, p) in enumerate(rows)
        ]
    )


def test_donor_auroc_is_against_every_other_class_field() -> None:
    oof = _oof(
        [
            ("f1", "GoF1", 1, 0.9),
            ("f1", "GoF1", 1, 0.8),
            ("f1", "HD1", 0, 0.1),
            ("f1", "HD1", 0, 0.85),
            ("f2", "GoF2", 1, 0.6),
            ("f2", "GoF2", 1, 0.4),
            ("f2", "HD2", 0, 0.2),
            ("f2", "HD2", 0, 0.3),
        ]
    )
    per = lodo.donor_metrics(oof).set_index(schema.DONOR)
    # GoF1 vs the 4 healthy fields: 0.9 beats all, 0.8 beats 3 of 4 -> 7/8
    assert per.loc["GoF1", "auroc"] == pytest.approx(7 / 8)
    assert per.loc["GoF1", "auroc_pair"] == pytest.approx(3 / 4)  # vs HD1 only, within fold f1
    # HD1 vs the 4 GoF fields (lower p is right): 0.1 below all 4, 0.85 below only 0.9 -> 5/8
    assert per.loc["HD1", "auroc"] == pytest.approx(5 / 8)
    assert per.loc["GoF2", "accuracy"] == pytest.approx(0.5) and per.loc["HD2", "accuracy"] == 1.0
    assert per.loc["HD2", "mean_p"] == pytest.approx(0.25)
    folds = lodo.fold_metrics(oof).set_index(lodo.FOLD)
    assert folds.loc["f2", "auroc"] == pytest.approx(1.0) and folds.loc["f1", "donors"] == "GoF1;HD1"


def test_reused_donor_is_averaged_once_in_pooled_metrics() -> None:
    oof = _oof(
        [
            ("f1", "GoF1", 1, 0.9),
            ("f1", "HD1", 0, 0.2),
            ("f2", "GoF2", 1, 0.7),
            ("f2", "HD1", 0, 0.4),
        ]
    )
    oof.loc[3, schema.WELL] = "HD1"
    oof.loc[3, schema.SITE] = 1  # the same field as row 1, predicted again by fold f2
    table = lodo.collapse_repeats(oof)
    assert len(table) == 3
    assert table.loc[table[schema.DONOR] == "HD1", schema.P_DISEASE].item() == pytest.approx(0.3)
    assert lodo.pooled_metrics(oof)["n"] == 3


def test_shuffled_label_baseline_sits_near_chance() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for d in range(12):  # 6 healthy + 6 GoF donors, perfectly separated predictions
        y = d % 2
        rows += [
            (f"f{d // 2}", f"{'GoF' if y else 'HD'}{d}", y, 0.6 * y + 0.3 * u) for u in rng.uniform(0, 1, 6)
        ]
    oof = _oof(rows)
    null = lodo.shuffled_baseline(oof, n=500, seed=0)
    assert null["level"] == "group"  # whole donors are relabelled
    assert abs(null["auroc_null_mean"] - 0.5) < 0.05
    assert null["auroc_observed"] == pytest.approx(1.0) and null["p_value"] < 0.01
    noise = oof.assign(**{schema.P_DISEASE: rng.uniform(0, 1, len(oof))})
    assert abs(lodo.shuffled_baseline(noise, n=500)["auroc_null_mean"] - 0.5) < 0.05


def test_fold_baseline_never_fits_on_the_held_out_pair() -> None:
    index = _index(3, 3, fields=6)
    folds = lodo.plan_pair_folds(index)
    ctrl = index[index[schema.ROLE].isin(["healthy", "disease"])].reset_index(drop=True)
    meta = ctrl[[*schema.FIELD_KEYS, schema.DONOR]].assign(
        **{schema.LABEL: (ctrl[schema.ROLE] == "disease").astype(int)}
    )
    rng = np.random.default_rng(0)
    features = pd.DataFrame(
        {"org_coherency": 0.7 - 0.4 * meta[schema.LABEL] + rng.normal(0, 0.05, len(meta))}
    )
    oof = lodo.fold_baseline(features, meta, folds)
    assert len(oof) == sum(meta[schema.DONOR].isin(f.test).sum() for f in folds)
    for fold in folds:
        assert set(oof.loc[oof[lodo.FOLD] == fold.name, schema.DONOR]) == set(fold.test)
    assert lodo.pooled_metrics(oof)["auroc"] > 0.95
    # wildly changing the held-out pair's training labels cannot change its own predictions
    fold = folds[0]
    flipped = meta.copy()
    sel = flipped[schema.DONOR].isin(fold.test)
    flipped.loc[sel, schema.LABEL] = 1 - flipped.loc[sel, schema.LABEL]
    again = lodo.fold_baseline(features, flipped, [fold])
    first = oof[oof[lodo.FOLD] == fold.name]
    assert again[schema.P_DISEASE].to_numpy() == pytest.approx(first[schema.P_DISEASE].to_numpy())


def test_compare_table_and_written_summary(tmp_path) -> None:
    cnn = _oof([("f1", "GoF1", 1, 0.9), ("f1", "HD1", 0, 0.2), ("f2", "GoF2", 1, 0.6), ("f2", "HD2", 0, 0.7)])
    base = cnn.assign(**{schema.P_DISEASE: [0.6, 0.4, 0.55, 0.45]})
    table = lodo.compare_lodo({"cnn": cnn, "logreg": base})
    assert list(table[schema.DONOR]) == ["GoF1", "GoF2", "HD1", "HD2", lodo.POOLED]
    assert {"cnn_auroc", "cnn_mean_p", "logreg_auroc", "logreg_accuracy", schema.LABEL} <= set(table.columns)
    pooled = table.set_index(schema.DONOR).loc[lodo.POOLED]
    assert pooled["cnn_auroc"] == pytest.approx(0.75) and pooled["logreg_auroc"] == pytest.approx(1.0)
    summary = lodo.summarize(cnn, n_permutations=50)
    summary.comparison = table
    paths = lodo.write_summary(summary, tmp_path)
    assert {"per_donor", "per_fold", "comparison", "shuffled_null", "summary"} <= set(paths)
    doc = json.loads(paths["summary"].read_text())
    assert (
        doc["pooled"]["auroc"] == pytest.approx(0.75)
        and doc["shuffled_label_baseline"]["n_permutations"] == 50
    )
    metrics = summary.metrics("cnn")
    assert metrics["cnn/donor/GoF1/mean_p"] == pytest.approx(0.9) and "shuffled/auroc_null_mean" in metrics


def test_lodo_features_and_modelcard_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import fibroclass.evaluation.lodo, fibroclass.evaluation.features, fibroclass.evaluation.modelcard\n"
        "bad = [m for m in ('torch', 'lightning', 'mlflow', 'albumentations') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
