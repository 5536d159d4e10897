"""`fibroclass evaluate lodo`: leave-one-pair-out cross-validation of the CNN (one fit per fold) beside the
classical baselines.

Like `workflows.train` it sits above `tracking` (it trains through `workflows.train.build_cli` and logs to MLflow);
the analysis itself (folds, per-donor metrics, null, baseline, plots) is in `fibroclass.evaluation`,
which stays torch-free.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fibroclass import schema
from fibroclass.data.fields import field_labels
from fibroclass.errors import FibroclassError
from fibroclass.evaluation import lodo
from fibroclass.evaluation import plots as evplots
from fibroclass.evaluation.baseline import MODELS as BASELINE_MODELS
from fibroclass.evaluation.features import BASELINE_FEATURES, organization_features
from fibroclass.progress import progress_bar
from fibroclass.tracking.plots import log_table
from fibroclass.tracking.runs import end_run, log_folder, log_metrics, set_tags, start_run
from fibroclass.workflows.calibrate import calibrate_after_fit
from fibroclass.workflows.outputs import (
    EXPERIMENT,
    META_COLUMNS,
    prediction_rows,
    write_evaluation,
)

# Lightning notices that repeat for every fold and say nothing about the user's data or settings.
_FOLD_NOISE = (r".*isinstance\(treespec, LeafSpec\)", r"The number of training batches .* logging interval")


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit info lines (GPU available, seed set...) and repeated notices during folds."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _FOLD_NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# -- leave-one-pair-out CV ----------------------------------------------------------------------------
@dataclass
class LodoResult:
    out_dir: Path
    run_id: str
    folds: list[lodo.Fold]
    oof: pd.DataFrame  # CNN: one row per (fold, held-out field)
    summary: lodo.CVSummary
    baselines: dict[str, pd.DataFrame] = field(default_factory=dict)
    fold_runs: dict[str, str] = field(default_factory=dict)


def _fold_args(
    config: Path | None,
    overrides: Sequence[str],
    split_dir: Path,
    index_path: Path,
    root: Path,
    experiment: str,
    fold: lodo.Fold,
    max_epochs: int | None,
) -> list[str]:
    args = ["--config", str(config)] if config else []
    args += [*overrides]  # user overrides first: the fold's own settings below win
    args += [
        "--data.split", str(split_dir),
        "--data.index", str(index_path),
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--mlflow.experiment", experiment,
        "--mlflow.run_name", f"fold {fold.name}",
        "--mlflow.log_checkpoints", "false",
    ]  # fmt: skip
    if max_epochs:
        args += ["--trainer.max_epochs", str(max_epochs)]
    return args


def _train_fold(args: list[str], parent_run: str, fold: lodo.Fold) -> tuple[pd.DataFrame, str | None]:
    """Fit one fold, test its held-out pair with the best checkpoint, calibrate on its validation donors."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from fibroclass.workflows.train import build_cli, mlflow_logger  # trainer imports this module

    cli = build_cli(args)
    trainer, module, dm = cli.trainer, cli.model, cli.datamodule
    dm.setup("fit")
    trainer.fit(module, datamodule=dm)
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path else None
    trainer.test(module, datamodule=dm, ckpt_path="best" if best else None, verbose=False)
    logger = mlflow_logger(trainer)
    run_id = logger.run_id if logger is not None else None
    preds = module.test_predictions
    calibrate_after_fit(module.classifier, dm, preds, run_id)
    frame = dm.frames["test"].iloc[preds["field"].to_numpy()]
    rows = prediction_rows(frame, preds["logit"].to_numpy(float), module.classifier.spec.temperature)
    rows.insert(0, lodo.FOLD, fold.name)
    if run_id:
        set_tags(
            run_id,
            {
                "mlflow.parentRunId": parent_run,
                "fibroclass.fold": fold.name,
                "fibroclass.held_out": ";".join(fold.test),
                "fibroclass.val_donors": ";".join(fold.val),
            },
        )
        log_table(rows, "test/fold_fields.csv", run_id)
    return rows, run_id


def run_lodo(
    index_path: str | Path,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    out_dir: str | Path = "lodo_out",
    max_epochs: int | None = None,
    seed: int = 0,
    baselines: Sequence[str] = BASELINE_MODELS,
    n_permutations: int = 1000,
    experiment: str = EXPERIMENT,
    progress: bool = True,
) -> LodoResult:
    """Leave-one-pair-out CV of the CNN configured by `config` + `overrides` (LightningCLI style) on the
    control fields of `index_path`, with the classical baselines on the same folds.

    Writes to `out_dir`: ``oof_fields.csv`` (CNN, one row per fold and held-out field),
    ``baseline_<model>_oof.csv``, ``features.parquet``, ``per_donor.csv``, ``per_fold.csv``,
    ``comparison.csv`` (CNN vs baselines, one row per donor + pooled), ``shuffled_null.csv``,
    ``summary.json``, ``roc.png``, ``confusion.png``, ``reliability.png``, ``shuffled_null.png``,
    ``donors.png``, ``score_vs_coherency.png`` and the fold split manifests; all logged to one parent
    MLflow run in `experiment` with one nested run per fold.
    """
    from fibroclass.io.index import read_index

    index_path = Path(index_path).resolve()
    config_path = Path(config) if config else None
    if config_path is not None and not config_path.is_file():
        raise FibroclassError(f"training config {config_path} not found")
    for name in baselines:
        if name not in BASELINE_MODELS:
            raise FibroclassError(f"unknown baseline model {name!r}; choose from {list(BASELINE_MODELS)}")
    index = read_index(index_path)
    folds = lodo.plan_pair_folds(index, seed)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    parent = start_run(
        experiment,
        f"lodo {index_path.stem}",
        tags={
            "fibroclass.index": str(index_path),
            "fibroclass.scheme": lodo.SCHEME,
            "fibroclass.kind": "lodo",
        },
    )
    failed = True
    try:
        parts, fold_runs = [], {}
        with progress_bar(progress, transient=False) as bar, _quiet_lightning():
            task = bar.add_task("leave-one-pair-out folds", total=len(folds))
            for fold in folds:
                bar.update(task, description=f"fold {fold.name} (train {len(fold.train)} donors)")
                fold_dir = out / "folds" / fold.name.replace("/", "_")
                split_dir = lodo.write_fold_split(index, index_path, fold, fold_dir / "split", seed)
                root = fold_dir / "lightning"
                args = _fold_args(
                    config_path, overrides, split_dir, index_path, root, experiment, fold, max_epochs
                )
                rows, run_id = _train_fold(args, parent, fold)
                parts.append(rows)
                if run_id:
                    fold_runs[fold.name] = run_id
                shutil.rmtree(root, ignore_errors=True)  # fold checkpoints: only the predictions are kept
                bar.advance(task)
        oof = pd.concat(parts, ignore_index=True)
        oof.to_csv(out / "oof_fields.csv", index=False)

        ctrl = index[index[schema.ROLE].isin(list(schema.ROLE_TO_LABEL))].reset_index(drop=True)
        meta = ctrl[[c for c in META_COLUMNS if c in ctrl.columns]].copy()
        meta[schema.LABEL] = field_labels(ctrl)
        features = organization_features(ctrl)
        pd.concat([meta, features], axis=1).to_parquet(out / "features.parquet", index=False)
        baseline_oofs = {
            name: lodo.fold_baseline(features[list(BASELINE_FEATURES)], meta, folds, name, seed)
            for name in baselines
        }
        for name, table in baseline_oofs.items():
            table.to_csv(out / f"baseline_{name}_oof.csv", index=False)

        summary = lodo.summarize(oof, n_permutations, seed)
        summary.comparison = lodo.compare_lodo({"cnn": oof, **baseline_oofs})
        summary.extra = {
            "scheme": lodo.SCHEME,
            "folds": folds,
            "index": str(index_path),
            "config": str(config_path or ""),
            "overrides": list(overrides),
            "baselines": {name: lodo.pooled_metrics(t) for name, t in baseline_oofs.items()},
            "fold_runs": fold_runs,
        }
        write_evaluation(summary, oof, out, folds=True)
        evplots.save_figure(
            evplots.plot_donor_comparison(summary.comparison, ["cnn", *baselines]), out / "donors.png"
        )
        cnn_fields = lodo.collapse_repeats(oof).merge(
            pd.concat([meta, features], axis=1)[[*schema.FIELD_KEYS, "org_coherency"]],
            on=list(schema.FIELD_KEYS),
        )
        fig = evplots.plot_score_vs_coherency(
            cnn_fields["org_coherency"],
            cnn_fields[schema.P_DISEASE],
            cnn_fields[schema.DONOR],
            "CNN p(disease)",
        )
        evplots.save_figure(fig, out / "score_vs_coherency.png")

        metrics = summary.metrics("cnn")
        for name, table in baseline_oofs.items():
            metrics.update(
                {f"{name}/{k}": v for k, v in lodo.pooled_metrics(table).items() if np.isfinite(v)}
            )
        metrics["n_folds"] = len(folds)
        log_metrics(parent, metrics)
        log_folder(parent, out, "lodo")
        failed = False
    finally:
        end_run(parent, failed=failed)
    return LodoResult(out, parent, folds, oof, summary, baseline_oofs, fold_runs)
