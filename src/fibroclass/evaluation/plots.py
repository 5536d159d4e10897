"""Evaluation figures (matplotlib, Agg, object-oriented API: no pyplot state, safe in workers).

Each function returns a `Figure`; `save_figure` writes it as PNG. Inputs are arrays/DataFrames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from fibroclass import schema
from fibroclass.errors import FibroclassError
from fibroclass.evaluation.metrics import (
    auroc,
    check_binary,
    confusion,
    expected_calibration_error,
    reliability_curve,
    roc_points,
)

if TYPE_CHECKING:
    import pandas as pd

ArrayLike = Sequence[float] | np.ndarray


def _figure(width: float = 4.8, height: float = 4.2) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG (parent folders created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def plot_roc(y: ArrayLike, p: ArrayLike, folds: Sequence[object] | np.ndarray | None = None) -> Figure:
    """ROC of the pooled predictions (bold) and of each fold that holds both classes (thin).

    Folds with a single class (e.g. one held-out donor) have no ROC curve and are listed as skipped.
    """
    y_arr, p_arr = check_binary(y, p)
    fig = _figure()
    ax = fig.add_subplot()
    skipped: list[str] = []
    if folds is not None:
        f_arr = np.asarray(folds, dtype=object).ravel()
        if f_arr.size != y_arr.size:
            raise FibroclassError(f"folds ({f_arr.size}) and labels ({y_arr.size}) differ in length")
        for fold in sorted(set(f_arr.tolist()), key=str):
            sel = f_arr == fold
            if np.unique(y_arr[sel]).size < 2:
                skipped.append(str(fold))
                continue
            pts = roc_points(y_arr[sel], p_arr[sel])
            ax.plot(
                pts["fpr"],
                pts["tpr"],
                lw=1,
                alpha=0.6,
                label=f"fold {fold} ({auroc(y_arr[sel], p_arr[sel]):.2f})",
            )
    pts = roc_points(y_arr, p_arr)
    ax.plot(pts["fpr"], pts["tpr"], lw=2.5, color="black", label=f"pooled (AUROC {auroc(y_arr, p_arr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    title = "ROC"
    if skipped:
        title += f"\n(single-class folds skipped: {', '.join(skipped[:6])}{'…' if len(skipped) > 6 else ''})"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    return fig


def plot_confusion(y: ArrayLike, p: ArrayLike, threshold: float = 0.5) -> Figure:
    """Confusion matrix at `threshold` with counts and row percentages."""
    table = confusion(y, p, threshold)
    counts = table.to_numpy()
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)
    fig = _figure(4.2, 3.8)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            color = "white" if frac[i, j] > 0.6 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{100 * frac[i, j]:.0f}%", ha="center", va="center", color=color)
    names = list(schema.LABEL_NAMES)
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion at p ≥ {threshold:g}")
    fig.colorbar(im, ax=ax, fraction=0.046, label="row fraction")
    return fig


def plot_reliability(
    y: ArrayLike, p_before: ArrayLike, p_after: ArrayLike | None = None, n_bins: int = 10
) -> Figure:
    """Reliability diagram (fraction GoF vs mean predicted p per bin) before and, if given, after calibration."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    series = [("before", p_before, "tab:red")]
    if p_after is not None:
        series.append(("after", p_after, "tab:blue"))
    for name, p, color in series:
        curve = reliability_curve(y, p, n_bins)
        ece = expected_calibration_error(y, p, n_bins)
        ax.plot(
            curve["mean_p"], curve["frac_positive"], marker="o", color=color, label=f"{name} (ECE {ece:.3f})"
        )
    ax.set(xlabel="mean predicted p(disease)", ylabel="fraction disease", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("reliability", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    return fig


def plot_score_vs_coherency(
    coherency: ArrayLike,
    score: ArrayLike,
    groups: Sequence[object] | np.ndarray | None = None,
    score_label: str = "CNN disease score",
) -> Figure:
    """Scatter of the organization co-readout (coherency) against the CNN score, coloured by group.

    The title gives Spearman's rho over finite pairs (expected negative: less aligned, more disease).
    """
    c = np.asarray(coherency, dtype=float).ravel()
    s = np.asarray(score, dtype=float).ravel()
    if c.size != s.size:
        raise FibroclassError(f"coherency ({c.size}) and score ({s.size}) differ in length")
    ok = np.isfinite(c) & np.isfinite(s)
    fig = _figure()
    ax = fig.add_subplot()
    if groups is None:
        ax.scatter(c[ok], s[ok], s=10, alpha=0.7)
    else:
        g = np.asarray(groups, dtype=object).ravel()
        if g.size != c.size:
            raise FibroclassError(f"groups ({g.size}) and coherency ({c.size}) differ in length")
        for name in sorted(set(g[ok].tolist()), key=str):
            sel = ok & (g == name)
            ax.scatter(c[sel], s[sel], s=10, alpha=0.7, label=str(name))
        ax.legend(fontsize=7, markerscale=1.5)
    rho = spearmanr(c[ok], s[ok]).statistic if ok.sum() >= 3 else float("nan")
    ax.set(xlabel="actin coherency (energy-weighted mean)", ylabel=score_label)
    ax.set_title(f"score vs coherency (Spearman ρ = {rho:.2f}, n = {int(ok.sum())})", fontsize=9)
    return fig


def plot_null(null: ArrayLike, observed: float, title: str = "shuffled-label baseline") -> Figure:
    """Histogram of the permutation-null AUROCs with the observed AUROC marked."""
    values = np.asarray(null, dtype=float).ravel()
    fig = _figure(4.8, 3.4)
    ax = fig.add_subplot()
    ax.hist(values, bins=min(30, max(5, np.unique(values).size)), color="lightgrey", edgecolor="grey")
    ax.axvline(0.5, ls="--", color="grey", lw=1)
    ax.axvline(observed, color="tab:red", lw=2, label=f"observed {observed:.3f}")
    ax.set(xlabel="AUROC with shuffled donor labels", ylabel="permutations", xlim=(0, 1))
    ax.set_title(f"{title}: null mean {values.mean():.3f}", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def plot_donor_comparison(
    comparison: pd.DataFrame, models: Sequence[str], group_col: str = schema.DONOR
) -> Figure:
    """Per held-out donor, each model's mean p(disease) (bars) against the donor's class (0 or 1, dots)."""
    rows = comparison[comparison[group_col].astype(str) != "(pooled)"].reset_index(drop=True)
    fig = _figure(max(4.8, 0.7 * len(rows) + 2), 3.8)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(models))
    for i, name in enumerate(models):
        col = f"{name}_mean_p"
        if col in rows.columns:
            auroc_col = f"{name}_auroc"
            ax.bar(x + (i - (len(models) - 1) / 2) * width, rows[col], width, label=name)
            if auroc_col in rows.columns:
                for xi, (mp, au) in enumerate(zip(rows[col], rows[auroc_col], strict=True)):
                    if np.isfinite(au):
                        ax.text(
                            xi + (i - (len(models) - 1) / 2) * width,
                            mp + 0.02,
                            f"{au:.2f}",
                            ha="center",
                            fontsize=6,
                            rotation=90,
                        )
    if "label" in rows.columns:
        ax.scatter(x, rows["label"], marker="_", s=400, color="black", label="true class", zorder=3)
    ax.set_xticks(x, rows[group_col].astype(str), rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="mean p(disease) of held-out fields", ylim=(-0.03, 1.15))
    ax.set_title("per held-out donor (numbers: donor AUROC vs other-class fields)", fontsize=9)
    ax.legend(fontsize=7, ncol=len(models) + 1, loc="upper center")
    return fig
