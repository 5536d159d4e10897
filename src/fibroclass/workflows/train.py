"""`fibroclass train` orchestration: LightningCLI config → fit → test on held-out donors → MLflow + registry.

One MLflow run per fit holds the hyperparameters and data parameters, the resolved config YAML, the
split manifest, the curves, the best checkpoint, test-set ROC/confusion plots, per-field test
predictions and the logged model, which is registered (default `fibroclass`, alias `@challenger`).
"""

from __future__ import annotations

import warnings
from argparse import ArgumentError
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from fibroclass.configs import resolve_config
from fibroclass.data.datamodule import FibroDataModule, donors_of
from fibroclass.errors import FibroclassError
from fibroclass.models.checkpoint import AUROCCheckpoint
from fibroclass.models.classifier import FibroClassifier
from fibroclass.models.module import FibroModule
from fibroclass.progress import progress_default
from fibroclass.schema import LABEL_NAMES
from fibroclass.tracking.cards import write_card
from fibroclass.tracking.models import LoggedClassifier, log_classifier
from fibroclass.tracking.plots import confusion_figure, log_figure, log_table, roc_figure
from fibroclass.tracking.resume import RunIdInCheckpoint, resolve_resume
from fibroclass.tracking.runs import log_dict, log_folder, log_text, make_logger, set_tags
from fibroclass.tracking.store import DEFAULT_EXPERIMENT, resolve_tracking_uri
from fibroclass.workflows.calibrate import calibrate_after_fit

DESCRIPTION = """Train the healthy-vs-GoF classifier on a donor split, test it on the held-out test donors,
log everything to MLflow and register the model.

Example: fibroclass train --config configs/train/default.yaml --data.split data/splits/demo
"""


class LogConfigToMLflow(SaveConfigCallback):
    """Stores the resolved config, the split manifest and the data summary in the MLflow run (rank 0)."""

    def __init__(self, parser: LightningArgumentParser, config, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(parser, config, **kwargs)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        logger = mlflow_logger(trainer)
        if logger is None:
            return
        run_id = logger.run_id
        log_text(run_id, self.parser.dump(self.config, skip_none=False), "config/train.yaml")
        dm = trainer.datamodule
        if isinstance(dm, FibroDataModule):
            log_folder(run_id, dm.split_dir, "split")
            log_dict(
                run_id, {"fields": dm.split_summary(), "donors": donors_of(dm.frames)}, "split/used.json"
            )
            set_tags(
                run_id,
                {"fibroclass.split": dm.split_dir.name, "fibroclass.split_path": str(dm.split_dir.resolve())},
            )


def mlflow_logger(trainer: Trainer) -> MLFlowLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


class FibroCLI(LightningCLI):
    """LightningCLI with an `mlflow` section; the MLflow logger and checkpointing are set up here."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--mlflow.experiment", type=str, default=DEFAULT_EXPERIMENT, help="MLflow experiment name."
        )
        parser.add_argument(
            "--mlflow.tracking_uri",
            type=str | None,
            default=None,
            help="Tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlruns.db).",
        )
        parser.add_argument(
            "--mlflow.run_name", type=str | None, default=None, help="Run name (default: backbone-split)."
        )
        parser.add_argument(
            "--mlflow.registered_name", type=str, default="fibroclass", help="Registered model name."
        )
        parser.add_argument(
            "--mlflow.alias", type=str, default="challenger", help="Registry alias set on the new version."
        )
        parser.add_argument("--mlflow.register", type=bool, default=True, help="Register the tested model.")
        parser.add_argument(
            "--mlflow.log_checkpoints", type=bool, default=True, help="Upload the best checkpoint."
        )
        parser.add_argument(
            "--mlflow.model_card_dir",
            type=str | None,
            default="models",
            help="Where registered versions' model cards go (null: none).",
        )
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Resume an interrupted fit in its MLflow run: 'last' (newest last.ckpt of the experiment) "
            "or a checkpoint file. Stops when that run cannot be found (see --resume.new_run).",
        )
        parser.add_argument(
            "--resume.new_run",
            type=bool,
            default=False,
            help="With --ckpt_path: continue the checkpoint (weights, optimizer, counters) in a NEW MLflow run "
            "on purpose, e.g. when its run is in another tracking store.",
        )

    def instantiate_trainer(self, **kwargs) -> Trainer:
        cfg = self.config_init
        ml = cfg["mlflow"]
        configured = cfg["trainer"].get("logger")
        if configured is False:
            raise FibroclassError("fibroclass train logs to MLflow: trainer.logger must not be false")
        run_name = ml["run_name"] or f"{self.model.hparams.backbone}-{self.datamodule.split_dir.name}"
        self.resume = None
        new_run = bool((cfg.get("resume") or {}).get("new_run"))
        if cfg.get("ckpt_path"):
            root = cfg["trainer"].get("default_root_dir") or "lightning_logs"
            self.resume = resolve_resume(
                cfg["ckpt_path"], root, ml["experiment"], ml["tracking_uri"], new_run
            )
            rank_zero_info(self.resume.message)
        elif new_run:
            raise FibroclassError("--resume.new_run needs --ckpt_path (last or a checkpoint file)")
        logger = make_logger(
            ml["experiment"],
            ml["tracking_uri"],
            run_name,
            log_checkpoints=ml["log_checkpoints"],
            create_experiment=rank_zero_only.rank == 0,
            run_id=self.resume.run_id if self.resume else None,
        )
        others: list[Logger] = (
            []
            if configured in (None, True)
            else list(configured)
            if isinstance(configured, list)
            else [configured]
        )
        kwargs["logger"] = [logger, *[lg for lg in others if not isinstance(lg, MLFlowLogger)]]
        callbacks = list(cfg["trainer"].get("callbacks") or [])
        if not any(isinstance(cb, ModelCheckpoint) for cb in callbacks):
            callbacks.append(AUROCCheckpoint(save_last=True))  # last.ckpt: what --ckpt_path last resumes
        kwargs["callbacks"] = [*callbacks, RunIdInCheckpoint()]
        return super().instantiate_trainer(**kwargs)


@dataclass
class TrainResult:
    run_id: str | None
    tracking_uri: str
    test_metrics: dict[str, float] = field(default_factory=dict)
    model: LoggedClassifier | None = None
    best_checkpoint: str | None = None
    classifier: FibroClassifier | None = None  # the tested weights (best checkpoint)
    note: str = ""  # why nothing was logged (non-zero rank, fast_dev_run)
    resumed: str = ""  # what --ckpt_path did: which checkpoint, continued in which MLflow run


def resolve_config_args(args: list[str]) -> list[str]:
    """`--config NAME` (or `-c`, `--config=NAME`) with a shipped config's name becomes its packaged path."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in ("--config", "-c") and i + 1 < len(out):
            out[i + 1] = str(resolve_config("train", out[i + 1]))
        elif arg.startswith("--config="):
            out[i] = "--config=" + str(resolve_config("train", arg.split("=", 1)[1]))
    return out


def build_cli(args: list[str]) -> FibroCLI:
    """Parse `args` (YAML via --config plus dotted overrides) and instantiate model, data and trainer.

    Invalid arguments or config values raise FibroclassError with jsonargparse's message on one line.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            return _make_cli(resolve_config_args(args))
    except ArgumentError as exc:
        message = " ".join(str(exc).split())
        if len(message) > 400:
            message = message[:400] + " ..."
        raise FibroclassError(f"{message} (see fibroclass train --help)") from exc


def _make_cli(args: list[str]) -> FibroCLI:
    return FibroCLI(
        FibroModule,
        FibroDataModule,
        run=False,
        args=args,
        save_config_callback=LogConfigToMLflow,
        seed_everything_default=0,
        auto_configure_optimizers=False,  # FibroModule.configure_optimizers: AdamW + cosine
        load_from_checkpoint_support=False,  # plain hyperparameters; keeps the run's params clean
        trainer_defaults={"default_root_dir": "lightning_logs", "enable_progress_bar": progress_default()},
        parser_kwargs={"prog": "fibroclass train", "description": DESCRIPTION, "exit_on_error": False},
    )


def _log_test_outputs(run_id: str, module: FibroModule, dm: FibroDataModule) -> None:
    preds = module.test_predictions
    if preds is None or preds.empty:
        return
    frame = dm.frames["test"].reset_index(drop=True)
    table = frame.iloc[preds["field"].to_numpy()].reset_index(drop=True)
    table = table.assign(
        label=preds["label"].to_numpy(), logit=preds["logit"].to_numpy(), n_tiles=preds["n_tiles"].to_numpy()
    )
    log_table(table, "test/fields.csv", run_id)
    labels, logits = table["label"].to_numpy(), table["logit"].to_numpy()
    log_figure(roc_figure(labels, logits), "test/roc.png", run_id)
    log_figure(confusion_figure(labels, (logits > 0).astype(int), LABEL_NAMES), "test/confusion.png", run_id)


def run_training(args: list[str]) -> TrainResult:
    """Fit, test on the held-out test donors (best checkpoint), then on rank 0 log plots and the model."""
    cli = build_cli(args)
    trainer, module, dm = cli.trainer, cli.model, cli.datamodule
    ml = cli.config_init["mlflow"]
    dm.setup("fit")  # split/index mistakes surface before any training
    resume = getattr(cli, "resume", None)
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume.checkpoint) if resume else None)
    checkpoint = trainer.checkpoint_callback
    best = (
        checkpoint.best_model_path
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path
        else None
    )
    trainer.test(module, datamodule=dm, ckpt_path="best" if best else None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    logger = mlflow_logger(trainer)
    result = TrainResult(
        run_id=None,
        tracking_uri=resolve_tracking_uri(ml["tracking_uri"]),
        test_metrics=metrics,
        best_checkpoint=best,
        classifier=module.classifier,
        resumed=resume.message if resume else "",
    )
    if not trainer.is_global_zero:
        result.note = f"rank {trainer.global_rank}: rank 0 logs to MLflow"
        return result
    if logger is None:  # fast_dev_run swaps loggers for a dummy
        result.note = "no MLflow logger active (fast_dev_run?): nothing logged or registered"
        return result
    result.run_id = logger.run_id
    _log_test_outputs(result.run_id, module, dm)
    if dm.corrections is not None:  # per-plate flat-fields/levels applied to the training fields
        folder = Path(trainer.default_root_dir) / "illumination" / result.run_id
        dm.corrections.save(folder / "illumination.npz")
        log_folder(result.run_id, folder, "illumination")
    # temperature scaling on the validation donors: stored in the spec that is logged below
    calibrate_after_fit(module.classifier, dm, module.test_predictions, result.run_id)
    tags = {"split": dm.split_dir.name, "run_id": result.run_id}
    tags.update({k.replace("/", "_"): f"{v:.4f}" for k, v in metrics.items()})
    result.model = log_classifier(
        module.classifier,
        module.spec,
        run_id=result.run_id,
        registered_name=ml["registered_name"] if ml["register"] else None,
        alias=ml["alias"],
        tags=tags,
    )
    set_tags(result.run_id, {"fibroclass.model_uri": result.model.registry_uri or result.model.model_uri})
    if result.model.version and ml["model_card_dir"]:
        write_card(result.model.registered_name, result.model.version, ml["model_card_dir"])
    return result
