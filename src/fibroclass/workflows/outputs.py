"""Files shared by `fibroclass evaluate lodo` and `evaluate model`: prediction rows, ROC/confusion/reliability
plots, the summary JSON and the shuffled-label null plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fibroclass import schema
from fibroclass.data.fields import field_labels
from fibroclass.evaluation import lodo
from fibroclass.evaluation import plots as evplots
from fibroclass.evaluation.calibration import apply_temperature

EXPERIMENT = "fibroclass-evaluate"
META_COLUMNS = (*schema.FIELD_KEYS, schema.DONOR, schema.ROLE, schema.GENOTYPE)


# -- shared outputs -----------------------------------------------------------------------------------
def write_plots(oof: pd.DataFrame, out: Path, folds: bool) -> list[Path]:
    table = lodo.collapse_repeats(oof)
    y, p = table[schema.LABEL].to_numpy(int), table[schema.P_DISEASE].to_numpy(float)
    paths = []
    if np.unique(y).size == 2:
        fold_ids = oof[lodo.FOLD] if folds else None
        roc_y = oof[schema.LABEL] if folds else y
        roc_p = oof[schema.P_DISEASE] if folds else p
        paths.append(evplots.save_figure(evplots.plot_roc(roc_y, roc_p, fold_ids), out / "roc.png"))
    paths.append(evplots.save_figure(evplots.plot_confusion(y, p), out / "confusion.png"))
    if lodo.P_RAW in table.columns:
        fig = evplots.plot_reliability(y, table[lodo.P_RAW], p)
        paths.append(evplots.save_figure(fig, out / "reliability.png"))
    return paths


def prediction_rows(frame: pd.DataFrame, logits: np.ndarray, temperature: float) -> pd.DataFrame:
    rows = frame[[c for c in META_COLUMNS if c in frame.columns]].reset_index(drop=True).copy()
    rows[schema.LABEL] = field_labels(frame)
    rows[lodo.LOGIT] = logits
    rows[lodo.P_RAW] = apply_temperature(logits, 1.0)
    rows[lodo.TEMPERATURE] = temperature
    rows[schema.P_DISEASE] = apply_temperature(logits, temperature)
    return rows


def write_evaluation(summary: lodo.CVSummary, predictions: pd.DataFrame, out: Path, folds: bool) -> None:
    """summary.json, the ROC/confusion/reliability plots and the shuffled-label null plot into `out`."""
    lodo.write_summary(summary, out)
    write_plots(predictions, out, folds=folds)
    shuffled = summary.shuffled
    evplots.save_figure(
        evplots.plot_null(shuffled["auroc_null"], float(shuffled["auroc_observed"])),
        out / "shuffled_null.png",
    )
