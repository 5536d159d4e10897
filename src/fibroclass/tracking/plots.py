"""Test-set figures (ROC curve, confusion matrix) and helpers that log figures/tables to a run."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # object API: no pyplot, no GUI backend
from mlflow.tracking import MlflowClient
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve


def roc_figure(labels: Sequence[int], scores: Sequence[float], title: str = "ROC (test fields)") -> Figure:
    """ROC curve of binary `labels` (1 = disease) against `scores` (higher = more disease), with AUROC."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=float)
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=2, label=f"AUROC = {roc_auc_score(y, s):.3f} (n = {len(y)})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(
        xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01)
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def confusion_figure(
    labels: Sequence[int],
    preds: Sequence[int],
    label_names: Sequence[str] = ("healthy", "disease"),
    title: str = "Confusion (test fields)",
) -> Figure:
    """Confusion matrix with counts (rows: true class, columns: predicted class)."""
    cm = confusion_matrix(np.asarray(labels), np.asarray(preds), labels=list(range(len(label_names))))
    fig = Figure(figsize=(4.5, 4), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ticks = range(len(label_names))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=label_names, yticklabels=label_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in ticks:
        for j in ticks:
            color = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color)
    fig.tight_layout()
    return fig


def log_figure(fig: Figure, artifact_file: str, run_id: str, client: MlflowClient | None = None) -> None:
    """Save `fig` as `artifact_file` (e.g. `plots/roc.png`) in run `run_id`."""
    (client or MlflowClient()).log_figure(run_id, fig, artifact_file)


def log_table(df: pd.DataFrame, artifact_file: str, run_id: str, client: MlflowClient | None = None) -> None:
    """Save `df` as CSV `artifact_file` (e.g. `tables/test_fields.csv`) in run `run_id`."""
    path = Path(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / path.name
        df.to_csv(local, index=False)
        (client or MlflowClient()).log_artifact(
            run_id, str(local), str(path.parent) if path.parent.parts else None
        )
