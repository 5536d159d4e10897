"""Classification and calibration metrics on arrays/DataFrames (numpy + scikit-learn, no torch).

Labels are 1 = disease (GoF), 0 = healthy; `p` is the predicted probability of disease.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

from fibroclass import schema
from fibroclass.errors import FibroclassError


def check_binary(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels in {0, 1} and probabilities in [0, 1] of equal length; return them as arrays."""
    y_arr = np.asarray(y, dtype=float).ravel()
    p_arr = np.asarray(p, dtype=float).ravel()
    if y_arr.shape != p_arr.shape:
        raise FibroclassError(f"labels ({y_arr.size}) and probabilities ({p_arr.size}) differ in length")
    if y_arr.size == 0:
        raise FibroclassError("no labelled predictions to evaluate")
    if np.isnan(y_arr).any() or not np.isin(y_arr, (0.0, 1.0)).all():
        raise FibroclassError(
            f"labels must be 0 (healthy) or 1 (disease), got {sorted(set(y_arr.tolist()))[:5]}"
        )
    if np.isnan(p_arr).any() or (p_arr < 0).any() or (p_arr > 1).any():
        raise FibroclassError("probabilities must be finite and in [0, 1]")
    return y_arr.astype(int), p_arr


def auroc(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present (undefined)."""
    y_arr, p_arr = check_binary(y, p)
    if np.unique(y_arr).size < 2:
        return float("nan")
    return float(roc_auc_score(y_arr, p_arr))


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y` (equals accuracy when only one class is present)."""
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def binary_metrics(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """AUROC (NaN with one class), balanced accuracy, accuracy at `threshold`, n and n_positive."""
    y_arr, p_arr = check_binary(y, p)
    pred = (p_arr >= threshold).astype(int)
    return {
        "auroc": auroc(y_arr, p_arr),
        "balanced_accuracy": _balanced_accuracy(y_arr, pred),
        "accuracy": float(np.mean(pred == y_arr)),
        "n": int(y_arr.size),
        "n_positive": int(y_arr.sum()),
    }


def _require_columns(df: pd.DataFrame, cols: Sequence[str], what: str = "table") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise FibroclassError(f"{what} lacks column(s) {missing}; has {list(df.columns)}")


def per_group_metrics(
    df: pd.DataFrame,
    group_col: str = schema.DONOR,
    y_col: str = schema.LABEL,
    p_col: str = schema.P_DISEASE,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """One row per group (e.g. donor): n, n_positive, auroc, balanced_accuracy, accuracy, mean_p.

    A donor is usually all healthy or all GoF, so its AUROC is undefined (NaN); what says how well
    the model generalizes to that donor is the accuracy (= balanced accuracy for one class) and the
    mean predicted p (near 0 for a healthy donor, near 1 for a GoF donor).
    """
    _require_columns(df, [group_col, y_col, p_col])
    if df[group_col].isna().any():
        raise FibroclassError(f"column {group_col!r} has missing values")
    rows = []
    for group, sub in df.groupby(group_col, sort=True):
        m = binary_metrics(sub[y_col].to_numpy(), sub[p_col].to_numpy(), threshold)
        rows.append({group_col: group, **m, "mean_p": float(sub[p_col].mean())})
    cols = [group_col, "n", "n_positive", "auroc", "balanced_accuracy", "accuracy", "mean_p"]
    return pd.DataFrame(rows, columns=cols)


def roc_points(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray) -> pd.DataFrame:
    """ROC curve as a table with columns fpr, tpr, threshold (needs both classes)."""
    y_arr, p_arr = check_binary(y, p)
    if np.unique(y_arr).size < 2:
        raise FibroclassError("ROC curve needs both healthy (0) and disease (1) labels")
    fpr, tpr, thr = roc_curve(y_arr, p_arr, drop_intermediate=False)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


def confusion(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> pd.DataFrame:
    """2x2 counts: rows are the true class, columns the predicted class (``p >= threshold`` = disease)."""
    y_arr, p_arr = check_binary(y, p)
    pred = (p_arr >= threshold).astype(int)
    counts = np.array([[np.sum((y_arr == t) & (pred == q)) for q in (0, 1)] for t in (0, 1)], dtype=int)
    names = list(schema.LABEL_NAMES)
    return pd.DataFrame(
        counts,
        index=pd.Index([f"true_{n}" for n in names], name="true"),
        columns=pd.Index([f"pred_{n}" for n in names], name="predicted"),
    )


def shuffled_label_baseline(
    y: Sequence[float] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    groups: Sequence[object] | np.ndarray | None = None,
    n: int = 100,
    seed: int = 0,
) -> dict[str, object]:
    """AUROC of the predictions against permuted labels: the chance level a real AUROC must beat.

    With `groups` (donors) whose fields all share one label, whole donors' labels are permuted
    (``level="group"``), which keeps the donor structure a confounded model could exploit; otherwise
    field labels are permuted (``level="field"``). Returns the observed AUROC, the null mean/std, all
    null values and a one-sided permutation p-value ``(1 + #null >= observed) / (n + 1)``.
    """
    y_arr, p_arr = check_binary(y, p)
    if np.unique(y_arr).size < 2:
        raise FibroclassError("shuffled-label baseline needs both healthy (0) and disease (1) labels")
    if n < 1:
        raise FibroclassError(f"number of permutations must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    level = "field"
    codes = None
    if groups is not None:
        g = pd.Series(np.asarray(groups, dtype=object).ravel())
        if len(g) != y_arr.size:
            raise FibroclassError(f"groups ({len(g)}) and labels ({y_arr.size}) differ in length")
        codes, uniques = pd.factorize(g)
        per_group = pd.Series(y_arr).groupby(codes).nunique()
        if (per_group == 1).all() and len(uniques) >= 2:
            level = "group"
            group_label = pd.Series(y_arr).groupby(codes).first().to_numpy()
    ranks = rankdata(p_arr)  # AUROC = Mann-Whitney U / (n1 * n0) from ranks fixed across permutations
    null = np.empty(n)
    for i in range(n):
        y_perm = rng.permutation(group_label)[codes] if level == "group" else rng.permutation(y_arr)
        n1 = int(y_perm.sum())
        n0 = y_perm.size - n1
        null[i] = (ranks[y_perm == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0) if n1 and n0 else 0.5
    observed = float(roc_auc_score(y_arr, p_arr))
    return {
        "auroc_observed": observed,
        "auroc_null_mean": float(null.mean()),
        "auroc_null_std": float(null.std()),
        "auroc_null": null,
        "p_value": float((1 + np.sum(null >= observed)) / (n + 1)),
        "n_permutations": int(n),
        "level": level,
    }


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    if n_bins < 1:
        raise FibroclassError(f"n_bins must be >= 1, got {n_bins}")
    return np.minimum((p * n_bins).astype(int), n_bins - 1)  # equal-width bins, p = 1 in the last


def reliability_curve(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray, n_bins: int = 10
) -> pd.DataFrame:
    """Per non-empty equal-width bin of p: bin_low, bin_high, n, mean_p, frac_positive."""
    y_arr, p_arr = check_binary(y, p)
    idx = _bin_index(p_arr, n_bins)
    rows = []
    for b in np.unique(idx):
        sel = idx == b
        rows.append(
            {
                "bin_low": b / n_bins,
                "bin_high": (b + 1) / n_bins,
                "n": int(sel.sum()),
                "mean_p": float(p_arr[sel].mean()),
                "frac_positive": float(y_arr[sel].mean()),
            }
        )
    return pd.DataFrame(rows, columns=["bin_low", "bin_high", "n", "mean_p", "frac_positive"])


def expected_calibration_error(
    y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray, n_bins: int = 10
) -> float:
    """ECE: sum over equal-width bins of (n_bin / n) * |fraction positive - mean p|."""
    curve = reliability_curve(y, p, n_bins)
    weights = curve["n"] / curve["n"].sum()
    return float(np.sum(weights * (curve["frac_positive"] - curve["mean_p"]).abs()))
