"""The temperature calibration that ends every `fibroclass train`: field logits of the validation donors →
temperature stored in the model spec, ECE before/after and reliability plots logged to the MLflow run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn

from fibroclass.data.datamodule import FibroDataModule
from fibroclass.data.fields import field_labels
from fibroclass.evaluation import plots as evplots
from fibroclass.evaluation.calibration import CalibrationSummary, apply_temperature, calibration_summary
from fibroclass.models.predict import module_field_logits
from fibroclass.tracking.plots import log_figure
from fibroclass.tracking.runs import log_metrics


def calibrate_classifier(
    classifier: nn.Module,
    val_labels: np.ndarray,
    val_logits: np.ndarray,
    test_predictions: pd.DataFrame | None = None,
    run_id: str | None = None,
) -> CalibrationSummary:
    """Fit the temperature on validation field logits, store it in `classifier.spec`, log ECE + reliability.

    `test_predictions` (columns `label`, `logit`: per-field test output) gives the held-out-donor ECE
    before/after. With `run_id`, logs ``val/ece_before``, ``val/ece_after``, ``test/ece_*``,
    ``calibration/temperature`` and ``calibration/reliability_{val,test}.png``.
    """
    test_y = test_z = None
    if test_predictions is not None and not test_predictions.empty:
        test_y = test_predictions["label"].to_numpy(int)
        test_z = test_predictions["logit"].to_numpy(float)
    summary = calibration_summary(val_labels, val_logits, test_y, test_z)
    classifier.spec.temperature = summary.temperature
    if run_id:
        log_metrics(run_id, summary.metrics)
        for name, y, z in (("val", val_labels, val_logits), ("test", test_y, test_z)):
            if y is not None and len(y):
                t = summary.temperature
                fig = evplots.plot_reliability(y, apply_temperature(z, 1.0), apply_temperature(z, t))
                fig.suptitle(f"{name} donors, T = {t:.2f}", fontsize=9)
                log_figure(fig, f"calibration/reliability_{name}.png", run_id)
    return summary


def calibrate_after_fit(
    classifier: nn.Module, dm: FibroDataModule, test_predictions: pd.DataFrame | None, run_id: str | None
) -> CalibrationSummary:
    """`calibrate_classifier` on the data module's validation donors (the end of every training run)."""
    val_logits = module_field_logits(classifier, dm, "val")
    return calibrate_classifier(
        classifier, field_labels(dm.frames["val"]), val_logits, test_predictions, run_id
    )
