"""`fibroclass evaluate model`: a registered model on a split's held-out donors (field logits as in scoring),
with metrics, plots and a shuffled-label null, logged to MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fibroclass import schema
from fibroclass.data.datamodule import FibroDataModule
from fibroclass.errors import FibroclassError
from fibroclass.evaluation import lodo
from fibroclass.models.predict import field_logits
from fibroclass.tracking.runs import end_run, log_folder, log_metrics, start_run
from fibroclass.workflows.outputs import EXPERIMENT, prediction_rows, write_evaluation


# -- a registered model on a split --------------------------------------------------------------------
@dataclass
class ModelEvalResult:
    out_dir: Path
    run_id: str
    predictions: pd.DataFrame
    summary: lodo.CVSummary


def split_frames(
    split: str | Path, subsets: Sequence[str], index: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(control fields of the `subsets` donors, control fields of all the split's donors), with ``split``.

    The second frame is what training estimated the illumination corrections from.
    """
    from fibroclass.io.index import read_index

    bad = [s for s in subsets if s not in schema.SPLITS]
    if bad or not subsets:
        raise FibroclassError(f"unknown split subset(s) {bad or subsets}; choose from {list(schema.SPLITS)}")
    dm = FibroDataModule(split=str(split), index=str(index) if index else None)
    index_path = dm.resolve_index_path()
    table = read_index(index_path)
    table = table.assign(**{schema.SPLIT: dm.manifest.assign(table).to_numpy()})
    controls = table[table[schema.SPLIT].isin(list(schema.SPLITS))].reset_index(drop=True)
    frame = controls[controls[schema.SPLIT].isin(list(subsets))].reset_index(drop=True)
    if frame.empty:
        raise FibroclassError(f"split {split} has no control fields in {', '.join(subsets)}")
    return frame, controls


def evaluate_model(
    model_uri: str,
    split: str | Path,
    subsets: Sequence[str] = ("test",),
    index: str | Path | None = None,
    out_dir: str | Path = "eval_out",
    n_permutations: int = 1000,
    experiment: str = EXPERIMENT,
    trust_pickle: bool = False,
) -> ModelEvalResult:
    """Score the `subsets` donors of a split with a registered model: per-donor/pooled metrics, ECE
    before/after its temperature, donor-permutation null, ROC/confusion/reliability plots, MLflow run."""
    from fibroclass.tracking.models import load_classifier

    model = load_classifier(model_uri, trust_pickle=trust_pickle)
    frame, controls = split_frames(split, subsets, index)
    temperature = float(model.spec.temperature)
    logits = field_logits(model, frame, context=controls)
    preds = prediction_rows(frame, logits, temperature)
    preds[schema.SPLIT] = frame[schema.SPLIT].to_numpy()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = lodo.summarize(preds, n_permutations)
    summary.extra = {
        "model": model_uri,
        "split": str(split),
        "subsets": list(subsets),
        "temperature": temperature,
    }
    preds.to_csv(out / "fields.csv", index=False)
    write_evaluation(summary, preds, out, folds=False)
    run = start_run(
        experiment,
        f"eval {model_uri} on {Path(split).name}:{'+'.join(subsets)}",
        tags={"fibroclass.model_uri": model_uri, "fibroclass.split": str(split), "fibroclass.kind": "model"},
    )
    failed = True
    try:
        log_metrics(run, {**summary.metrics("eval"), "eval/temperature": temperature})
        log_folder(run, out, "eval")
        failed = False
    finally:
        end_run(run, failed=failed)
    return ModelEvalResult(out, run, preds, summary)
