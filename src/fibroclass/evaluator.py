"""`fibroclass evaluate` orchestration: leave-one-pair-out CV of the CNN, evaluation of a registered model,
and the temperature calibration that ends every `fibroclass train`.

Like `trainer.py` it sits above `tracking` (it trains through `trainer.build_cli` and logs to MLflow);
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
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader

from fibroclass import schema
from fibroclass.data.datamodule import FibroDataModule
from fibroclass.data.datasets import FieldTileDataset
from fibroclass.data.fields import FieldCache, channel_paths, field_labels
from fibroclass.data.illumination import FieldReader, corrections_for_model
from fibroclass.errors import FibroclassError
from fibroclass.evaluation import lodo
from fibroclass.evaluation import plots as evplots
from fibroclass.evaluation.baseline import MODELS as BASELINE_MODELS
from fibroclass.evaluation.calibration import CalibrationSummary, apply_temperature, calibration_summary
from fibroclass.evaluation.features import BASELINE_FEATURES, organization_features
from fibroclass.models.module import field_level
from fibroclass.tracking.plots import log_figure, log_table
from fibroclass.tracking.runs import end_run, log_folder, log_metrics, set_tags, start_run

EXPERIMENT = "fibroclass-evaluate"
META_COLUMNS = (*schema.FIELD_KEYS, schema.DONOR, schema.ROLE, schema.GENOTYPE)


# -- predictions and calibration ----------------------------------------------------------------------
def _tile_logits(model: nn.Module, dataset: FieldTileDataset, batch_size: int = 256) -> np.ndarray:
    """Mean tile logit per field (field order of `dataset`), before any temperature."""
    if len(dataset) == 0:
        return np.zeros(0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.inference_mode():
            for x, y, f in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                parts.append((model(x.to(device)).float().cpu(), y, f))
    finally:
        model.train(was_training)
    logits, labels, fields = (torch.cat(t) for t in zip(*parts, strict=True))
    table = field_level(logits, labels, fields)
    return table.sort_values("field")["logit"].to_numpy(float)


def module_field_logits(classifier: nn.Module, dm: FibroDataModule, split: str) -> np.ndarray:
    """Field logits of a data module's `split` fields, read and tiled exactly as its test predictions."""
    return _tile_logits(classifier, dm.eval_dataset(split), dm.eval_batch_size)


def field_logits(
    model: nn.Module, frame: pd.DataFrame, context: pd.DataFrame | None = None, batch_size: int = 256
) -> np.ndarray:
    """Mean tile logit per field of `frame` for a logged model, prepared as in training and scoring.

    Fields go through `data.illumination.FieldReader` with the model's illumination settings; the
    per-plate estimates come from `context` (default: `frame`) - pass the split's control fields to
    reproduce training, or the whole plates to reproduce scoring.
    """
    spec = model.spec
    corrections = corrections_for_model(frame if context is None else context, spec)
    reader = FieldReader(frame, spec.channels, corrections)
    cache = FieldCache(channel_paths(frame, spec.channels), spec.downsample, reader)
    return _tile_logits(model, FieldTileDataset(cache, np.zeros(len(frame)), spec.crop_size), batch_size)


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


# -- shared outputs -----------------------------------------------------------------------------------
def _write_plots(oof: pd.DataFrame, out: Path, folds: bool) -> list[Path]:
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


def _prediction_rows(frame: pd.DataFrame, logits: np.ndarray, temperature: float) -> pd.DataFrame:
    rows = frame[[c for c in META_COLUMNS if c in frame.columns]].reset_index(drop=True).copy()
    rows[schema.LABEL] = field_labels(frame)
    rows[lodo.LOGIT] = logits
    rows[lodo.P_RAW] = apply_temperature(logits, 1.0)
    rows[lodo.TEMPERATURE] = temperature
    rows[schema.P_DISEASE] = apply_temperature(logits, temperature)
    return rows


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
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

    from fibroclass.trainer import build_cli, mlflow_logger  # trainer imports this module

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
    rows = _prediction_rows(frame, preds["logit"].to_numpy(float), module.classifier.spec.temperature)
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
        with _progress(progress) as bar, _quiet_lightning():
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
        lodo.write_summary(summary, out)
        _write_plots(oof, out, folds=True)
        shuffled = summary.shuffled
        evplots.save_figure(
            evplots.plot_null(shuffled["auroc_null"], float(shuffled["auroc_observed"])),
            out / "shuffled_null.png",
        )
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
    preds = _prediction_rows(frame, logits, temperature)
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
    lodo.write_summary(summary, out)
    _write_plots(preds, out, folds=False)
    shuffled = summary.shuffled
    evplots.save_figure(
        evplots.plot_null(shuffled["auroc_null"], float(shuffled["auroc_observed"])),
        out / "shuffled_null.png",
    )
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


# -- Grad-CAM explanations ----------------------------------------------------------------------------
@dataclass
class ExplainResult:
    out_dir: Path
    run_id: str | None
    fields: pd.DataFrame  # one row per explained field: keys, donor, role, logit, p_disease, target, png


def select_fields(index: pd.DataFrame, specs: Sequence[str]) -> pd.DataFrame:
    """Rows of `index` named by ``PLATE:WELL:SITE`` (one field) or ``PLATE:WELL`` (all its sites)."""
    from fibroclass.io.wells import canonical_well

    picked = []
    for text in specs:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise FibroclassError(f"--field {text!r} must be PLATE:WELL:SITE or PLATE:WELL (e.g. P1:B03:2)")
        plate, well = parts[0], canonical_well(parts[1], f"--field {text}")
        sel = (index[schema.PLATE].astype(str) == plate) & (index[schema.WELL] == well)
        if len(parts) == 3:
            if not parts[2].isdigit():
                raise FibroclassError(f"--field {text!r}: site must be a number")
            sel &= index[schema.SITE].astype(int) == int(parts[2])
        if not sel.any():
            raise FibroclassError(f"--field {text}: no such field in the index")
        picked.append(index[sel])
    return pd.concat(picked).drop_duplicates(list(schema.FIELD_KEYS)).reset_index(drop=True)


def representative_fields(
    index: pd.DataFrame, model: nn.Module, per_role: int, candidates: int = 24, seed: int = 0
) -> pd.DataFrame:
    """`per_role` fields of each control role (healthy, disease, reference) spread over the model's p.

    Up to `candidates` random fields per role are scored; the chosen ones sit at evenly spaced
    quantiles of their p (the median for one), so the set shows typical and borderline fields.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for role in (schema.ROLE_HEALTHY, schema.ROLE_DISEASE, schema.ROLE_REFERENCE):
        rows = index[index[schema.ROLE] == role] if schema.ROLE in index.columns else index.iloc[:0]
        if rows.empty:
            continue
        rows = rows.iloc[np.sort(rng.permutation(len(rows))[:candidates])].reset_index(drop=True)
        p = apply_temperature(field_logits(model, rows, context=index), float(model.spec.temperature))
        order = np.argsort(p, kind="stable")
        qs = [0.5] if per_role == 1 else np.linspace(0.1, 0.9, per_role)
        picks = sorted({int(order[round(q * (len(order) - 1))]) for q in qs})
        chosen.append(rows.iloc[picks])
    if not chosen:
        raise FibroclassError("the index has no healthy, disease or reference fields to pick from")
    return pd.concat(chosen, ignore_index=True)


def explain(
    model_uri: str,
    index_path: str | Path,
    fields: Sequence[str] = (),
    pick: int = 0,
    out_dir: str | Path = "explain_out",
    target: str = "predicted",
    experiment: str | None = "fibroclass-explain",
    trust_pickle: bool = False,
) -> ExplainResult:
    """Grad-CAM figures (composite, heatmap, overlay) and field-resolution overlay PNGs for chosen fields."""
    import matplotlib.image as mpimg

    from fibroclass.io.index import read_index
    from fibroclass.models.gradcam import explanation_figure, gradcam_field, overlay
    from fibroclass.tracking.models import load_classifier

    if not fields and pick < 1:
        raise FibroclassError("name fields with --field PLATE:WELL:SITE or pick some with --pick N")
    model = load_classifier(model_uri, trust_pickle=trust_pickle)
    index = read_index(index_path)
    table = select_fields(index, fields) if fields else index.iloc[:0]
    if pick > 0:
        table = pd.concat([table, representative_fields(index, model, pick)], ignore_index=True)
        table = table.drop_duplicates(list(schema.FIELD_KEYS)).reset_index(drop=True)
    plates = index[index[schema.PLATE].isin(set(table[schema.PLATE]))]  # what scoring estimates from
    reader = FieldReader(table, model.spec.channels, corrections_for_model(plates, model.spec))
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    channels = tuple(model.spec.channels)
    rows = []
    for i, row in table.iterrows():
        img = reader(int(i))  # the model's view: bit depth, flat-field, pixel size, normalization
        exp = gradcam_field(model, img, target)  # type: ignore[arg-type]
        stem = f"{row[schema.PLATE]}_{row[schema.WELL]}_s{row[schema.SITE]}"
        who = " ".join(
            str(row[c]) for c in (schema.ROLE, schema.DONOR, schema.COMPOUND) if c in row and pd.notna(row[c])
        )
        evplots.save_figure(explanation_figure(img, exp, f"{stem} ({who})", channels), out / f"{stem}.png")
        mpimg.imsave(out / f"{stem}_overlay.png", overlay(img, exp.heatmap))
        rows.append(
            {
                **{
                    c: row[c]
                    for c in (*schema.FIELD_KEYS, schema.DONOR, schema.ROLE, schema.COMPOUND)
                    if c in row
                },
                "logit": exp.logit,
                schema.P_DISEASE: exp.p_disease,
                "target": exp.target,
                "layer": exp.layer,
                "heat_fraction": float((exp.heatmap > 0.5).mean()),
                "png": f"{stem}.png",
            }
        )
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "fields.csv", index=False)
    run_id = None
    if experiment:
        run_id = start_run(experiment, f"explain {model_uri}", tags={"fibroclass.model_uri": model_uri})
        log_folder(run_id, out, "explain")
        end_run(run_id)
    return ExplainResult(out, run_id, summary)
