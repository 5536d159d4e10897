"""Classical baseline: leave-one-donor-out CV of a simple classifier on hand-crafted organization features.

It answers "does the CNN beat a physical alignment measure on donors it never saw?" with the
same out-of-fold (OOF) table layout as the CNN's, so `compare_table` can put both side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from fibroclass import schema
from fibroclass.errors import FibroclassError
from fibroclass.evaluation.metrics import binary_metrics, per_group_metrics

MODELS = ("logreg", "rf")
FOLD = "fold"
MODEL = "model"
POOLED = "(pooled)"


@dataclass
class BaselineResult:
    """Out-of-fold predictions (one row per field, the features' index), per-donor and pooled metrics."""

    oof: pd.DataFrame
    per_donor: pd.DataFrame
    pooled: dict[str, float]


def make_model(model: str = "logreg", seed: int = 0) -> Pipeline:
    """Median-impute + standardize + classifier (`logreg`: L2 logistic regression; `rf`: random forest)."""
    if model == "logreg":
        clf = LogisticRegression(C=1.0, max_iter=2000)
    elif model == "rf":
        clf = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    else:
        raise FibroclassError(f"unknown baseline model {model!r}; choose one of {list(MODELS)}")
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), clf)


def _check_features(features: pd.DataFrame) -> pd.DataFrame:
    if features.shape[1] == 0:
        raise FibroclassError("feature table has no columns")
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise FibroclassError(f"feature column(s) {bad} are not numeric")
    x = features.astype(float)
    if np.isinf(x.to_numpy()).any():
        cols = [c for c in x.columns if np.isinf(x[c].to_numpy()).any()]
        raise FibroclassError(f"feature column(s) {cols} contain infinite values")
    return x


def donor_cv_baseline(
    features: pd.DataFrame,
    y: Sequence[float] | np.ndarray | pd.Series,
    donors: Sequence[object] | np.ndarray | pd.Series,
    model: str = "logreg",
    seed: int = 0,
    threshold: float = 0.5,
) -> BaselineResult:
    """Leave-one-donor-out CV: each donor's fields are predicted by a model fit on all other donors.

    `features`: one row per field, numeric columns (e.g. ``org_*`` from `organization`; NaN is
    median-imputed within each training fold). `y` (1 = GoF) and `donors` align with its rows.
    The OOF table keeps the features' index and has columns donor, label, p_disease, fold (the
    held-out donor) and model. Needs >= 3 donors and both classes in every training fold.
    """
    x = _check_features(features)
    y_arr = np.asarray(y, dtype=float).ravel()
    d_arr = np.asarray(donors, dtype=object).ravel()
    if not (len(x) == y_arr.size == d_arr.size):
        raise FibroclassError(
            f"features ({len(x)}), labels ({y_arr.size}) and donors ({d_arr.size}) differ in length"
        )
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise FibroclassError("labels must be 0 (healthy) or 1 (disease)")
    if pd.isna(pd.Series(d_arr)).any():
        raise FibroclassError(f"column {schema.DONOR!r} has missing values")
    uniq = pd.unique(pd.Series(d_arr))
    if len(uniq) < 3:
        raise FibroclassError(f"leave-one-donor-out needs >= 3 donors, got {len(uniq)}: {list(uniq)}")
    p = np.full(y_arr.size, np.nan)
    for donor in uniq:
        test = d_arr == donor
        if np.unique(y_arr[~test]).size < 2:
            raise FibroclassError(f"holding out donor {donor!r} leaves a single class to train on")
        est = make_model(model, seed).fit(x.to_numpy()[~test], y_arr[~test].astype(int))
        p[test] = est.predict_proba(x.to_numpy()[test])[:, 1]
    oof = pd.DataFrame(
        {
            schema.DONOR: d_arr,
            schema.LABEL: y_arr.astype(int),
            schema.P_DISEASE: p,
            FOLD: d_arr,
            MODEL: model,
        },
        index=features.index,
    )
    per_donor = per_group_metrics(oof, schema.DONOR, schema.LABEL, schema.P_DISEASE, threshold)
    pooled = binary_metrics(oof[schema.LABEL], oof[schema.P_DISEASE], threshold)
    return BaselineResult(oof=oof, per_donor=per_donor, pooled=pooled)


def compare_table(
    cnn_oof: pd.DataFrame,
    baseline_oof: pd.DataFrame,
    names: tuple[str, str] = ("cnn", "baseline"),
    group_col: str = schema.DONOR,
    y_col: str = schema.LABEL,
    p_col: str = schema.P_DISEASE,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """One table, one row per donor plus a ``(pooled)`` row, with each model's metrics side by side.

    Columns: group_col, label (the donor's class; NaN if mixed or for the pooled row), then per
    model ``{name}_n``, ``{name}_auroc``, ``{name}_balanced_accuracy``, ``{name}_accuracy``,
    ``{name}_mean_p``. Per-donor AUROC is NaN when a donor has one class; the pooled row carries the
    AUROC that matters. Donors scored by only one model get NaN for the other.
    """
    return compare_models(
        dict(zip(names, (cnn_oof, baseline_oof), strict=True)), group_col, y_col, p_col, threshold
    )


def compare_models(
    oofs: Mapping[str, pd.DataFrame],
    group_col: str = schema.DONOR,
    y_col: str = schema.LABEL,
    p_col: str = schema.P_DISEASE,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """`compare_table` for any number of named OOF tables."""
    if not oofs:
        raise FibroclassError("no out-of-fold tables to compare")
    metric_cols = ["n", "auroc", "balanced_accuracy", "accuracy", "mean_p"]
    labels: dict[object, float] = {}
    tables = []
    for name, oof in oofs.items():
        table = per_group_metrics(oof, group_col, y_col, p_col, threshold)
        for group, ys in oof.groupby(group_col)[y_col]:
            labels.setdefault(group, float(ys.iloc[0]) if ys.nunique() == 1 else np.nan)
        pooled = binary_metrics(oof[y_col], oof[p_col], threshold)
        pooled_row = {group_col: POOLED, **pooled, "mean_p": float(oof[p_col].mean())}
        table = pd.concat([table, pd.DataFrame([pooled_row])], ignore_index=True)
        table = table[[group_col, *metric_cols]].rename(columns={m: f"{name}_{m}" for m in metric_cols})
        tables.append(table.set_index(group_col))
    merged = pd.concat(tables, axis=1, join="outer")
    order = [g for g in merged.index if g != POOLED] + [POOLED]
    merged = merged.loc[order].rename_axis(group_col).reset_index()
    merged.insert(1, "label", merged[group_col].map(labels))
    return merged
