"""Binary metrics, per-donor tables, shuffled-label baseline and calibration error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fibroclass import schema
from fibroclass.errors import FibroclassError
from fibroclass.evaluation import metrics as m


def test_binary_metrics_hand_computed() -> None:
    y = [0, 0, 1, 1]
    p = [0.1, 0.6, 0.4, 0.9]
    out = m.binary_metrics(y, p)
    assert out["auroc"] == pytest.approx(0.75)  # 3 of 4 (GoF, healthy) pairs ranked right
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["balanced_accuracy"] == pytest.approx(0.5)
    assert out["n"] == 4 and out["n_positive"] == 2


def test_balanced_accuracy_is_not_fooled_by_class_imbalance() -> None:
    y = [0] * 8 + [1] * 2
    p = [0.1] * 10  # always "healthy"
    out = m.binary_metrics(y, p)
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["balanced_accuracy"] == pytest.approx(0.5)
    assert m.binary_metrics(y, p, threshold=0.05)["balanced_accuracy"] == pytest.approx(0.5)


def test_single_class_gives_undefined_auroc() -> None:
    out = m.binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert np.isnan(out["auroc"])
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["balanced_accuracy"] == pytest.approx(2 / 3)


def test_per_group_metrics_one_row_per_donor() -> None:
    df = pd.DataFrame(
        {
            schema.DONOR: ["h1"] * 4 + ["g1"] * 4 + ["mix"] * 4,
            schema.LABEL: [0] * 4 + [1] * 4 + [0, 0, 1, 1],
            schema.P_DISEASE: [0.1, 0.2, 0.7, 0.1] + [0.9, 0.8, 0.6, 0.3] + [0.2, 0.3, 0.8, 0.9],
        }
    )
    table = m.per_group_metrics(df).set_index(schema.DONOR)
    assert list(table.index) == ["g1", "h1", "mix"]
    assert np.isnan(table.loc["h1", "auroc"]) and np.isnan(table.loc["g1", "auroc"])
    assert table.loc["mix", "auroc"] == pytest.approx(1.0)
    assert table.loc["h1", "accuracy"] == pytest.approx(0.75)
    assert table.loc["g1", "accuracy"] == pytest.approx(0.75)
    assert table.loc["h1", "mean_p"] == pytest.approx(0.275)
    assert table.loc["g1", "n"] == 4 and table.loc["g1", "n_positive"] == 4


def test_per_group_metrics_names_missing_column() -> None:
    df = pd.DataFrame({"donor_id": ["a"], schema.LABEL: [0], schema.P_DISEASE: [0.2]})
    with pytest.raises(FibroclassError, match="donor"):
        m.per_group_metrics(df)


def test_roc_points_and_confusion() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.2, 0.7, 0.4, 0.8, 0.9])
    pts = m.roc_points(y, p)
    assert pts[["fpr", "tpr"]].iloc[0].tolist() == [0.0, 0.0]
    assert pts[["fpr", "tpr"]].iloc[-1].tolist() == [1.0, 1.0]
    assert pts["fpr"].is_monotonic_increasing and pts["tpr"].is_monotonic_increasing
    assert np.trapezoid(pts["tpr"], pts["fpr"]) == pytest.approx(m.auroc(y, p))
    with pytest.raises(FibroclassError, match="both"):
        m.roc_points([1, 1], [0.2, 0.3])

    cm = m.confusion(y, p)
    assert cm.loc["true_healthy"].tolist() == [1, 1]
    assert cm.loc["true_disease"].tolist() == [1, 2]
    assert cm.to_numpy().sum() == len(y)


def test_shuffled_labels_give_chance_auroc() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.1, y.size), 0, 1)
    out = m.shuffled_label_baseline(y, p, n=200, seed=1)
    assert out["level"] == "field"
    assert out["auroc_observed"] > 0.9
    assert out["auroc_null_mean"] == pytest.approx(0.5, abs=0.02)
    assert out["p_value"] == pytest.approx(1 / 201)
    assert len(out["auroc_null"]) == 200


def test_shuffling_whole_donors_gives_a_wider_honest_null() -> None:
    """Scores clustered by donor: permuting donors (not fields) keeps that clustering in the null."""
    rng = np.random.default_rng(2)
    donors = np.repeat([f"d{i}" for i in range(10)], 30)
    y = np.repeat([0, 1] * 5, 30)
    donor_effect = np.repeat(rng.normal(0, 0.15, 10), 30)
    p = np.clip(0.5 + donor_effect + rng.normal(0, 0.02, y.size), 0, 1)  # no disease signal at all
    grouped = m.shuffled_label_baseline(y, p, groups=donors, n=300, seed=0)
    fields = m.shuffled_label_baseline(y, p, n=300, seed=0)
    assert grouped["level"] == "group"
    assert grouped["auroc_null_mean"] == pytest.approx(0.5, abs=0.05)
    assert grouped["auroc_null_std"] > 3 * fields["auroc_null_std"]
    assert grouped["p_value"] > 0.05  # a donor effect alone is not significant once donors are permuted


def test_mixed_donors_fall_back_to_field_permutation() -> None:
    y = [0, 1, 0, 1]
    out = m.shuffled_label_baseline(y, [0.1, 0.9, 0.2, 0.8], groups=["a", "a", "b", "b"], n=10)
    assert out["level"] == "field"


def test_ece_hand_computed_and_reliability_bins() -> None:
    assert m.expected_calibration_error([0, 1], [0.2, 0.2], n_bins=10) == pytest.approx(0.3)
    curve = m.reliability_curve([0, 1, 1, 1], [0.05, 0.55, 0.95, 1.0], n_bins=10)
    assert curve["n"].tolist() == [1, 1, 2]  # p = 1.0 falls in the last bin
    assert curve["bin_low"].tolist() == pytest.approx([0.0, 0.5, 0.9])
    assert curve["frac_positive"].tolist() == [0.0, 1.0, 1.0]


def test_ece_is_small_when_calibrated_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert m.expected_calibration_error(y, p) < 0.02
    overconfident = np.where(p > 0.5, 0.99, 0.01)
    assert m.expected_calibration_error(y, overconfident) > 0.2


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 1], [0.5], "differ in length"),
        ([0, 2], [0.5, 0.5], "labels"),
        ([0, 1], [0.5, 1.5], r"\[0, 1\]"),
        ([0, 1], [np.nan, 0.5], r"\[0, 1\]"),
        ([], [], "no labelled"),
    ],
)
def test_bad_inputs_raise(y: list, p: list, match: str) -> None:
    with pytest.raises(FibroclassError, match=match):
        m.binary_metrics(y, p)
