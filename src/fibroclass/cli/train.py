"""`fibroclass train`: LightningCLI-configured training, held-out-donor test, MLflow run and registry."""

from __future__ import annotations

import typer

from fibroclass.errors import FibroclassError

HELP = """Train on a donor split, test on held-out donors, log to MLflow and register the model.

All arguments go to LightningCLI (--config YAML, dotted overrides such as --trainer.max_epochs 5);
`fibroclass train --help` lists them.

Example: fibroclass train --config configs/train/default.yaml --data.split data/splits/demo
"""


def register(app: typer.Typer) -> None:
    @app.command(
        "train",
        help=HELP,
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def train(ctx: typer.Context) -> None:
        from fibroclass.workflows.train import run_training

        try:
            result = run_training(list(ctx.args))
        except SystemExit as exc:  # jsonargparse exits after printing --help / --print_config
            if exc.code not in (0, None):
                raise FibroclassError(f"fibroclass train stopped with exit code {exc.code}") from None
            return
        if result.run_id is None:  # non-zero DDP rank, or fast_dev_run
            if result.note and not result.note.startswith("rank"):
                typer.echo(result.note)
            return
        metrics = ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(result.test_metrics.items()) if k != "test/n_fields"
        )
        if result.resumed:
            typer.echo(result.resumed)
        typer.echo(f"test (held-out donors): {metrics}")
        typer.echo(f"MLflow run {result.run_id} in {result.tracking_uri}")
        if result.model is None:
            raise FibroclassError("training finished but no model was logged")
        if result.model.version:
            typer.echo(
                f"registered {result.model.registry_uri} "
                f"(alias: models:/{result.model.registered_name}@{result.model.alias})"
            )
        else:
            typer.echo(f"logged model {result.model.model_uri} (not registered)")
